"""The ingest path's caches keep a team's working set however often it cycles, and stay bounded."""

from __future__ import annotations

from ccmetrics.recent import Recent


def hits_over_rounds(recent: Recent[int, int], keys: int, rounds: int) -> int:
    """Look every key up in turn, round after round (as series come back every export), storing misses."""
    hits = 0
    for _ in range(rounds):
        for key in range(keys):
            if recent.get(key) == key * 10:
                hits += 1
            else:
                recent[key] = key * 10
    return hits


def test_a_working_set_up_to_its_size_stays_whole() -> None:
    recent: Recent[int, int] = Recent(1_000)
    # The first round only fills it; after that every lookup hits, round after round.
    assert hits_over_rounds(recent, 1_000, rounds=10) == 9 * 1_000


def test_a_larger_working_set_keeps_part_of_its_hits() -> None:
    # 1,500 series cycling through a memory of 1,000 per generation: forgetting everything at once when full
    # would hit nothing, as each key comes back only after a clear.
    recent: Recent[int, int] = Recent(1_000)
    hits = hits_over_rounds(recent, 1_500, rounds=10)
    assert hits >= 9 * 1_500 // 2


def test_it_stays_bounded_and_keeps_the_newest() -> None:
    recent: Recent[int, int] = Recent(100)
    for key in range(10_000):
        recent[key] = key
        assert len(recent) <= 200
    assert all(recent.get(key) == key for key in range(9_999, 9_899, -1))
    assert recent.get(0) is None


def test_a_key_found_in_the_old_generation_outlives_a_turnover() -> None:
    recent: Recent[str, int] = Recent(2)
    recent["a"] = 1
    recent["b"] = 2
    recent["c"] = 3  # the new generation was full: a and b are now old
    assert recent.get("a") == 1  # found, and moved to the new generation
    recent["d"] = 4  # full again: the generation with c and a becomes old, b is forgotten
    assert recent.get("b") is None
    assert recent.get("a") == 1 and recent.get("c") == 3
