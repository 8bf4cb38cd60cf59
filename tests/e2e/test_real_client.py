"""End to end: the real Claude Code CLI -> recording OTLP tee -> ccmetrics server.

One module-scoped scenario runs several real sessions (print mode and one interactive session in tmux)
against scripted fakes of the Anthropic API, all exporting into ONE ccmetrics server through the tee.
Then the server's answers are checked against two independent sources of truth:

* the tee's recordings, decoded by ``ground_truth`` (what the CLI sent and ccmetrics acknowledged);
* the fakes' own records of what they served (tokens, successful and failed API requests, per model).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from claude_cli import (
    InteractiveResult,
    RunResult,
    Telemetry,
    make_home,
    make_repo,
    run_interactive,
    run_print,
)
from fake_anthropic import FakeAnthropic, edit, git_commit, read, reply, write
from ground_truth import TOKEN_TYPES, Event, Point, Totals, by_attr, event_counts_by_attr, flatten, totals
from otlp_tee import OtlpTee, Recorded

from tests.conftest import ServerProcess

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 90  # seconds, per CLI run
PRINT_FLAGS_ACCEPT = ["--permission-mode", "acceptEdits", "--allowedTools", "Bash(git:*)"]
MISSING_MODEL = "claude-e2e-missing-model"


@dataclass
class Run:
    name: str
    user: str  # which simulated user (HOME) ran it
    fake: FakeAnthropic
    expect_rc: int
    result: RunResult | InteractiveResult | None = None
    repo: Path | None = None


@dataclass
class Scenario:
    runs: list[Run]
    records: list[Recorded]
    points: list[Point]
    events: list[Event]
    truth: Totals
    user_ids: dict[str, str]  # simulated user name -> the user.id the CLI derived
    server: ServerProcess
    wall_s: float
    summaries: dict[str, Any] = field(default_factory=dict)

    def fakes(self) -> list[FakeAnthropic]:
        return [r.fake for r in self.runs]

    def where_user(self, name: str):  # noqa: ANN201
        uid = self.user_ids[name]
        return lambda a: a.get("user.id") == uid


@pytest.fixture(scope="module")
def scenario(
    claude_binary: Path,
    otlp_tee: OtlpTee,
    ccmetrics_server: ServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scenario]:
    t0 = time.monotonic()
    root = tmp_path_factory.mktemp("e2e-users")
    repos = {u: make_repo(root / f"repo-{u}", {"README.md": f"# project {u}\n\nline two\n"}) for u in "abcde"}
    homes = {u: make_home(root, u, [repos[u]]) for u in "abcde"}
    http, grpc_ep = otlp_tee.http_endpoint, otlp_tee.grpc_endpoint
    runs: list[Run] = []

    def fake(seed: int, script: list, **kw: Any) -> FakeAnthropic:
        return FakeAnthropic(script, seed=seed, **kw).start()

    try:
        # A: team platform, gRPC, delta; Write + Edit accepted by config, then a git commit.
        a_file = str(repos["a"] / "hello.py")
        run = Run(
            "A-grpc-delta-edits-commit",
            "a",
            fake(
                1,
                [
                    write(a_file, "def hello():\n    return 'hi'\n"),
                    edit(a_file, "return 'hi'", "return 'hello'\n    # greeting"),
                    git_commit("add hello"),
                    reply("Wrote hello.py and committed it."),
                ],
            ),
            expect_rc=0,
            repo=repos["a"],
        )
        run.result = run_print(
            claude_binary,
            home=homes["a"],
            cwd=repos["a"],
            prompt="write hello.py and commit it",
            api_base_url=run.fake.base_url,
            extra_args=PRINT_FLAGS_ACCEPT,
            timeout=RUN_TIMEOUT,
            telemetry=Telemetry(
                grpc_ep, protocol="grpc", temporality="delta", resource_attributes={"team.id": "platform"}
            ),
        )
        runs.append(run)

        # B: team web, http/protobuf, cumulative, gzip; a Write rejected (no permission flags), then a Read.
        # The fake answers slowly so the run spans several 500 ms export intervals (several cumulative
        # points).
        run = Run(
            "B-protobuf-cumulative-gzip-reject",
            "b",
            fake(
                2,
                [
                    write(str(repos["b"] / "notes.md"), "# notes\n"),
                    read(str(repos["b"] / "README.md")),
                    reply("Could not write notes.md."),
                ],
                latency_s=0.45,
            ),
            expect_rc=0,
            repo=repos["b"],
        )
        run.result = run_print(
            claude_binary,
            home=homes["b"],
            cwd=repos["b"],
            prompt="add notes",
            api_base_url=run.fake.base_url,
            timeout=RUN_TIMEOUT,
            telemetry=Telemetry(
                http,
                protocol="http/protobuf",
                temporality="cumulative",
                gzip=True,
                interval_ms=500,
                resource_attributes={"team.id": "web"},
            ),
        )
        runs.append(run)

        # C: http/json, delta, another model; a Read.
        run = Run(
            "C-json-delta-read",
            "c",
            fake(
                3,
                [
                    read(str(repos["c"] / "README.md")),
                    reply("The README has two lines."),
                ],
            ),
            expect_rc=0,
            repo=repos["c"],
        )
        run.result = run_print(
            claude_binary,
            home=homes["c"],
            cwd=repos["c"],
            prompt="what does the README say?",
            api_base_url=run.fake.base_url,
            extra_args=["--model", "sonnet"],
            timeout=RUN_TIMEOUT,
            telemetry=Telemetry(
                http, protocol="http/json", temporality="delta", resource_attributes={"department": "eng"}
            ),
        )
        runs.append(run)

        # C again, second session, gRPC + gzip, cumulative: the first API attempt is answered 529 overloaded,
        # the retry succeeds.
        run = Run(
            "C2-grpc-gzip-cumulative-529-retried",
            "c",
            fake(4, [reply("Answered after a retry.")], overload_first=1),
            expect_rc=0,
            repo=repos["c"],
        )
        run.result = run_print(
            claude_binary,
            home=homes["c"],
            cwd=repos["c"],
            prompt="hello again",
            api_base_url=run.fake.base_url,
            timeout=RUN_TIMEOUT,
            telemetry=Telemetry(
                grpc_ep,
                protocol="grpc",
                temporality="cumulative",
                gzip=True,
                resource_attributes={"department": "eng"},
            ),
        )
        runs.append(run)

        # E: a model the API does not know -> 404 not_found_error; the CLI exits 1 and reports one api_error.
        run = Run(
            "E-404-unknown-model",
            "e",
            fake(5, [reply("never played")], not_found_models={MISSING_MODEL}),
            expect_rc=1,
            repo=repos["e"],
        )
        run.result = run_print(
            claude_binary,
            home=homes["e"],
            cwd=repos["e"],
            prompt="this will fail",
            api_base_url=run.fake.base_url,
            extra_args=["--model", MISSING_MODEL],
            timeout=RUN_TIMEOUT,
            telemetry=Telemetry(http, protocol="http/protobuf"),
        )
        runs.append(run)

        # D: an interactive session in tmux (the only way to get active_time{type="user"}).
        run = Run(
            "D-interactive-tmux",
            "d",
            fake(6, [reply("Interactive answer 4711.")]),
            expect_rc=0,
            repo=repos["d"],
        )
        run.result = run_interactive(
            claude_binary,
            home=homes["d"],
            cwd=repos["d"],
            prompt="say something nice",
            answer_marker="Interactive answer 4711",
            api_base_url=run.fake.base_url,
            timeout=RUN_TIMEOUT,
            telemetry=Telemetry(
                http, protocol="http/protobuf", temporality="delta", resource_attributes={"team.id": "mobile"}
            ),
        )
        runs.append(run)
    finally:
        for r in runs:
            r.fake.stop()

    records = otlp_tee.wait_until_quiet()
    points, events = flatten(records)
    # user.id is derived by the CLI from its HOME; learn it from the session.count points of each run's user.
    user_ids: dict[str, str] = {}
    by_session_user = {
        p.attrs.get("session.id"): p.attrs.get("user.id")
        for p in points
        if p.metric == "claude_code.session.count"
    }
    team_of = {"a": "platform", "b": "web", "d": "mobile"}
    for u, team in team_of.items():
        ids = {p.attrs["user.id"] for p in points if p.attrs.get("team.id") == team}
        assert len(ids) == 1, f"expected one user.id for team {team}, got {ids}"
        user_ids[u] = ids.pop()
    rest = set(by_session_user.values()) - set(user_ids.values())
    c_ids = {p.attrs["user.id"] for p in points if p.attrs.get("department") == "eng"}
    assert len(c_ids) == 1, c_ids
    user_ids["c"] = next(iter(c_ids))
    e_ids = rest - {user_ids["c"]}
    assert len(e_ids) == 1, e_ids
    user_ids["e"] = e_ids.pop()

    sc = Scenario(
        runs=runs,
        records=records,
        points=points,
        events=events,
        truth=totals(points, events),
        user_ids=user_ids,
        server=ccmetrics_server,
        wall_s=time.monotonic() - t0,
    )
    yield sc
    _dump_artifacts(sc)


def _dump_artifacts(sc: Scenario) -> None:
    """Keep what is needed to judge a failure: raw exports, what the fakes served, the server's answers.

    Written to $CCMETRICS_E2E_ARTIFACTS (default: test-artifacts/e2e in the working directory)."""
    out = Path(os.environ.get("CCMETRICS_E2E_ARTIFACTS") or "test-artifacts/e2e").resolve()
    shutil.rmtree(out / "otlp", ignore_errors=True)
    (out / "otlp").mkdir(parents=True, exist_ok=True)
    for r in sc.records:
        (out / "otlp" / f"{r.seq:05d}.bin").write_bytes(r.body)
        (out / "otlp" / f"{r.seq:05d}.json").write_text(
            json.dumps(
                {
                    "transport": r.transport,
                    "path": r.path,
                    "content_type": r.content_type,
                    "content_encoding": r.content_encoding,
                    "status": r.status,
                }
            )
        )
    runs = []
    for r in sc.runs:
        res = r.result
        runs.append(
            {
                "name": r.name,
                "user": r.user,
                "user_id": sc.user_ids.get(r.user),
                "returncode": getattr(res, "returncode", None),
                "exited": getattr(res, "exited", None),
                "duration_s": getattr(res, "duration_s", None),
                "stdout": getattr(res, "stdout", None),
                "stderr": getattr(res, "stderr", None),
                "screens": getattr(res, "screens", None),
                "served": [asdict(s) for s in r.fake.served],
            }
        )
    try:
        summaries = {
            "all": get_summary(sc.server),
            "team.id=platform": get_summary(sc.server, {"filter": "team.id=platform"}),
        }
    except Exception as err:  # noqa: BLE001 - best effort
        summaries = {"error": repr(err)}
    (out / "scenario.json").write_text(
        json.dumps(
            {
                "wall_s": sc.wall_s,
                "runs": runs,
                "ground_truth": sc.truth.as_summary(),
                "events_by_name": sc.truth.events_by_name,
                "metric_names": sorted(sc.truth.metric_names),
                "by_model": {str(k): v for k, v in by_attr(sc.points, "model").items()},
                "server_summaries": summaries,
            },
            indent=2,
            default=str,
        )
    )
    (out / "server.log").write_text(sc.server.log_path.read_text(errors="replace"))


# ----------------------------------------------------------------------------------------- helpers


def get_summary(server: ServerProcess, params: dict[str, str] | None = None) -> dict[str, Any]:
    resp = httpx.get(f"{server.url}/api/summary", params=params, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def settled_summary(
    sc: Scenario, expected: Totals, params: dict[str, str] | None = None, timeout: float = 15
) -> dict[str, Any]:
    """Fetch /api/summary; if ingestion is asynchronous, wait (bounded) until the counters caught up."""
    deadline = time.monotonic() + timeout
    while True:
        got = get_summary(sc.server, params)
        caught_up = (
            got.get("sessions") == expected.sessions
            and got.get("api_requests") == expected.api_requests
            and got.get("prompts") == expected.prompts
        )
        if caught_up or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def approx_tree(expected: Any) -> Any:
    """pytest.approx on every float in a nested structure (exact comparison for everything else)."""
    if isinstance(expected, dict):
        return {k: approx_tree(v) for k, v in expected.items()}
    if isinstance(expected, list):
        return [approx_tree(v) for v in expected]
    if isinstance(expected, float):
        return pytest.approx(expected, rel=1e-9, abs=1e-9)
    return expected


def expected_summary(t: Totals) -> dict[str, Any]:
    s = t.as_summary()
    if s["avg_prompt_length"] is not None:
        s["avg_prompt_length"] = pytest.approx(s["avg_prompt_length"], abs=5e-4)  # server rounds to 3 places
    return {k: (v if k == "avg_prompt_length" else approx_tree(v)) for k, v in s.items()}


def served_by_model(fakes: list[FakeAnthropic]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in fakes:
        for s in f.served:
            if s.path != "/v1/messages":
                continue
            row = out.setdefault(
                s.model, {"requests": 0, "errors": 0, "tokens": {k: 0 for k in TOKEN_TYPES.values()}}
            )
            if s.status == 200:
                row["requests"] += 1
                row["tokens"]["input"] += s.input_tokens
                row["tokens"]["output"] += s.output_tokens
                row["tokens"]["cache_read"] += s.cache_read_input_tokens
                row["tokens"]["cache_creation"] += s.cache_creation_input_tokens
            else:
                row["errors"] += 1
    return out


# ------------------------------------------------------------------------------------------- tests


def test_every_run_behaved(scenario: Scenario) -> None:
    for run in scenario.runs:
        res = run.result
        if isinstance(res, RunResult):
            assert res.returncode == run.expect_rc, (run.name, res.returncode, res.stdout, res.stderr)
        else:
            assert isinstance(res, InteractiveResult)
            assert res.exited, (run.name, res.screens[-1] if res.screens else "")
    a = next(r for r in scenario.runs if r.user == "a")
    log = subprocess.run(
        ["git", "log", "--oneline"], cwd=a.repo, capture_output=True, text=True, check=True
    ).stdout
    assert "add hello" in log
    b = next(r for r in scenario.runs if r.user == "b")
    assert not (b.repo / "notes.md").exists(), "the Write without permission must have been rejected"


def test_all_transports_used_and_acknowledged(scenario: Scenario) -> None:
    kinds = {(r.transport, r.content_type, r.content_encoding) for r in scenario.records}
    assert ("grpc", "application/grpc", None) in kinds
    assert ("grpc", "application/grpc", "gzip") in kinds
    assert ("http", "application/x-protobuf", "gzip") in kinds
    assert ("http", "application/json", None) in kinds
    assert ("http", "application/x-protobuf", None) in kinds
    refused = [(r.path, r.status, r.response_body[:200]) for r in scenario.records if not r.acknowledged]
    assert refused == [], f"ccmetrics refused exports: {refused}"
    temporality = {p.temporality for p in scenario.points}
    assert temporality == {1, 2}, temporality  # both delta and cumulative reached the server
    # the cumulative runs really did export the same series several times
    cumulative_series = [(p.series, p.start) for p in scenario.points if p.temporality == 2]
    assert len(cumulative_series) > len(set(cumulative_series))


def test_interactive_session_has_user_active_time(scenario: Scenario) -> None:
    d = totals(scenario.points, scenario.events, scenario.where_user("d"))
    assert d.active_time_seconds["user"] > 0
    assert scenario.truth.active_time_seconds["user"] == pytest.approx(d.active_time_seconds["user"])


def test_metrics_tokens_and_requests_match_what_the_fake_api_served(scenario: Scenario) -> None:
    """Independent of ccmetrics: the CLI's own telemetry against what the fakes actually served."""
    served = served_by_model(scenario.fakes())
    tokens = by_attr(scenario.points, "model")
    requests = event_counts_by_attr(scenario.events, "api_request", "model")
    errors = event_counts_by_attr(scenario.events, "api_error", "model")
    ok_models = {m for m, row in served.items() if row["requests"]}
    assert set(tokens) == ok_models
    for model in ok_models:
        assert tokens[model]["tokens"] == approx_tree(
            {k: float(v) for k, v in served[model]["tokens"].items()}
        ), model
        assert requests.get(model, 0) == served[model]["requests"], model
    # Errors: every api_error names a model the fake answered with an error.  The CLI retries a 404 once
    # without streaming, so it reports ONE api_error for TWO error answers; a 529 that a retry fixed
    # leaves no api_error at all.
    for model, n in errors.items():
        assert 1 <= n <= served[model]["errors"], (model, n, served[model])
    assert sum(errors.values()) == sum(1 for r in scenario.runs if r.expect_rc != 0)


def test_summary_matches_ground_truth(scenario: Scenario) -> None:
    got = settled_summary(scenario, scenario.truth)
    scenario.summaries["all"] = got
    expected = expected_summary(scenario.truth)
    assert {k: got.get(k) for k in expected} == expected


def test_summary_by_model_matches_ground_truth_and_fake_api(scenario: Scenario) -> None:
    got = settled_summary(scenario, scenario.truth)
    truth = by_attr(scenario.points, "model")
    requests = event_counts_by_attr(scenario.events, "api_request", "model")
    rows = {row["model"]: row for row in got["by_model"]}
    assert set(rows) == set(truth) | set(requests)
    for model, t in truth.items():
        assert rows[model]["cost_usd"] == pytest.approx(t["cost_usd"], rel=1e-9, abs=1e-9), model
        assert rows[model]["tokens"] == approx_tree(t["tokens"]), model
        assert rows[model]["api_requests"] == requests.get(model, 0), model
    served = served_by_model(scenario.fakes())
    for model, row in rows.items():
        assert row["tokens"] == approx_tree({k: float(v) for k, v in served[model]["tokens"].items()}), model
        assert row["api_requests"] == served[model]["requests"], model


def test_summary_by_user_matches_ground_truth(scenario: Scenario) -> None:
    got = settled_summary(scenario, scenario.truth)
    rows = {row["user_id"]: row for row in got["by_user"]}
    assert set(rows) == set(scenario.user_ids.values())
    for name, uid in scenario.user_ids.items():
        t = totals(scenario.points, scenario.events, scenario.where_user(name))
        emails = {e.attrs.get("user.email") for e in scenario.events if e.attrs.get("user.id") == uid} - {
            None
        }
        expected = {
            "sessions": t.sessions,
            "cost_usd": t.cost_usd,
            "tokens": t.tokens,
            "lines_of_code": t.lines_of_code,
            "commits": t.commits,
            "pull_requests": t.pull_requests,
            "prompts": t.prompts,
            "user_email": max(emails) if emails else None,
        }
        assert {k: rows[uid].get(k) for k in expected} == approx_tree(expected), name
    c = totals(scenario.points, scenario.events, scenario.where_user("c"))
    assert c.sessions == 2  # user C ran two sessions


def test_summary_filtered_by_team_matches_ground_truth_of_user_a(scenario: Scenario) -> None:
    truth_a = totals(scenario.points, scenario.events, lambda a: a.get("team.id") == "platform")
    only_a = totals(scenario.points, scenario.events, scenario.where_user("a"))
    assert truth_a.as_summary() == only_a.as_summary()  # team.id=platform is user A alone
    got = settled_summary(scenario, truth_a, params={"filter": "team.id=platform"})
    expected = expected_summary(truth_a)
    assert {k: got.get(k) for k in expected} == expected
    assert [row["user_id"] for row in got["by_user"]] == [scenario.user_ids["a"]]


def test_report_cli_json_equals_api(scenario: Scenario) -> None:
    api = settled_summary(scenario, scenario.truth)
    assert json.loads(scenario.server.report_json()) == approx_tree(api)
    platform = scenario.server.report_json("--filter", "team.id=platform")
    assert json.loads(platform) == approx_tree(get_summary(scenario.server, {"filter": "team.id=platform"}))


def test_every_dashboard_panel_matches_ground_truth(scenario: Scenario) -> None:
    """The built-in dashboard over real-client data: every catalogue panel equals the raw exports."""
    from tests.panel_truth import check_panels, expected_panels

    settled_summary(scenario, scenario.truth)
    panels = httpx.get(f"{scenario.server.url}/api/panels", timeout=10).json()["panels"]
    dashboard = httpx.get(f"{scenario.server.url}/api/dashboard", timeout=30).json()
    check_panels(dashboard, expected_panels(scenario.points, scenario.events), panels)
    team = lambda a: a.get("team.id") == "platform"  # noqa: E731
    filtered = httpx.get(
        f"{scenario.server.url}/api/dashboard", params={"filter": "team.id=platform"}, timeout=30
    ).json()
    check_panels(
        filtered,
        expected_panels(
            [p for p in scenario.points if team(p.attrs)], [e for e in scenario.events if team(e.attrs)]
        ),
        panels,
    )


def _canonical(attributes: dict[str, Any]) -> str:
    """Attributes as comparable text, numbers as numbers and lists as lists: the CLI sends some numbers as
    text (``duration_ms: "11"``), which ccmetrics keeps as the numbers they are, and ccmetrics keeps an array
    or a key-value list as its JSON text."""

    def number(value: Any) -> Any:
        if isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                return json.loads(value)
            except ValueError:
                return value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return value
        try:
            return float(value)
        except ValueError:
            return value

    return json.dumps({key: number(value) for key, value in attributes.items()}, sort_keys=True)


def test_every_event_comes_back_from_the_api_with_the_attributes_it_was_sent_with(scenario: Scenario) -> None:
    """Each event the CLI sent, resource attributes included, as /api/events gives back its session's events:
    the same attributes, the same values (each stored once: in its family, its row or strings)."""
    sent_by_session: dict[str, set[str]] = defaultdict(set)
    for event in scenario.events:
        sent_by_session[event.attrs["session.id"]].add(_canonical(event.attrs))
    assert len(sent_by_session) >= 3 and sum(map(len, sent_by_session.values())) > 20
    for session_id, sent in sent_by_session.items():
        url = f"{scenario.server.url}/api/events"
        answer = httpx.get(url, params={"session": session_id}, timeout=30).json()
        assert not answer["truncated"]
        assert {_canonical(event["attributes"]) for event in answer["events"]} == sent, session_id
