"""What the read side keeps between requests: answers from the rollups, reused only while their hours are
unchanged, and families' names and group keys; both bounded."""

from __future__ import annotations

import asyncio

from ccmetrics.otlp.decode import Signal
from ccmetrics.otlp.normalize import to_batch
from ccmetrics.store import Store
from ccmetrics.store.caches import AnswerCache, FamilyCache
from ccmetrics.store.queries import MetricFilter, metric_sums
from ccmetrics.store.ranges import RangePart

from .otlp_builders import SECOND, T0, sum_request

COST = "claude_code.cost.usage"
HOUR = 3600 * SECOND
START = T0 // HOUR * HOUR


def write(store: Store, *points: tuple[int, float, str]) -> None:
    """Cost points (time, value, user), each user a family of its own."""

    async def go() -> None:
        for at, value, user in points:
            request = sum_request(COST, [(at - SECOND, at, value, {"user.id": user, "session.id": "s"})])
            await store.write(to_batch(Signal.METRICS, request, store_prompts=False))

    asyncio.run(go())


def test_an_answer_is_reused_until_one_of_its_hours_changes(store):
    write(store, *((START + h * HOUR + 60 * SECOND, 1.0, "u1") for h in range(6)))
    conn, answers = store.reader(), AnswerCache()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    first_hours, last_hours = (
        RangePart("hour", START, START + 3 * HOUR),
        RangePart("hour", START + 3 * HOUR, None),
    )

    def total(part: RangePart) -> float:
        rows = answers.rows(conn, metric_sums(part, MetricFilter()), part.since_ns, part.until_ns)
        return sum(value for _, value in rows)

    def rollups_read() -> int:
        read = sum("FROM rollup_hour" in s for s in statements)
        statements.clear()
        return read

    try:
        assert (total(first_hours), total(last_hours), rollups_read()) == (3.0, 3.0, 2)
        assert (total(first_hours), total(last_hours), rollups_read()) == (3.0, 3.0, 0)
        write(store, (START + 4 * HOUR + 120 * SECOND, 0.5, "u1"))  # into the later hours only
        assert (total(first_hours), rollups_read()) == (3.0, 0)
        assert (total(last_hours), rollups_read()) == (3.5, 1)
        write(store, (START + HOUR + 120 * SECOND, 0.25, "u1"))  # late, into the first hours
        assert (total(first_hours), rollups_read()) == (3.25, 1)
    finally:
        conn.set_trace_callback(None)
    assert answers.rows_kept == 2  # one row (one family) per answer


def test_answers_are_bounded_by_the_rows_they_hold(store):
    write(store, *((START + h * HOUR + 60 * SECOND, 1.0, f"u{h}") for h in range(12)))
    conn, answers = store.reader(), AnswerCache(max_rows=8)
    for h in range(12):
        part = RangePart("hour", START, START + (h + 1) * HOUR)  # h + 1 families, a row each
        rows = answers.rows(conn, metric_sums(part, MetricFilter()), part.since_ns, part.until_ns)
        assert len(rows) == h + 1  # answered in full, whether kept or not
        assert answers.rows_kept <= 8
    assert answers.rows_kept > 0


def test_family_names_and_group_keys(store):
    write(store, (START + 60 * SECOND, 1.0, "u1"), (START + 120 * SECOND, 1.0, "u2"))
    conn, cache = store.reader(), FamilyCache()
    ids = [family_id for (family_id,) in conn.execute("SELECT id FROM families ORDER BY id")]
    assert cache.names(conn, "families", ids) == dict.fromkeys(ids, COST)
    keys = cache.keys(conn, "families", ids, ("user.id", "service.name", "absent"))
    assert sorted(keys.values()) == [("u1", "claude-code", None), ("u2", "claude-code", None)]
    assert cache.keys(conn, "families", ids, ()) == dict.fromkeys(ids, ())
    assert cache.entries == 4 * len(ids)  # the names, and the values of three attributes
    again = cache.keys(conn, "families", ids, ("service.name", "user.id"))  # from what is kept
    assert sorted(again.values()) == [("claude-code", "u1"), ("claude-code", "u2")]
    assert cache.entries == 4 * len(ids)


def test_the_family_cache_is_bounded_and_still_answers_what_does_not_fit(store):
    write(store, *((START + i * SECOND, 1.0, f"u{i}") for i in range(1, 11)))
    conn = store.reader()
    ids = [family_id for (family_id,) in conn.execute("SELECT id FROM families")]
    cache = FamilyCache(max_entries=4)
    keys = cache.keys(conn, "families", ids, ("user.id",))
    assert sorted(keys.values()) == sorted((f"u{i}",) for i in range(1, 11))
    assert cache.entries == 0  # ten do not fit in four: answered, not kept
    assert cache.keys(conn, "families", ids[:3], ("user.id",)) == {i: keys[i] for i in ids[:3]}
    assert cache.entries == 3
