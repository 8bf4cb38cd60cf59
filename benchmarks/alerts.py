"""What evaluating alert rules costs ``ccmetrics serve``: 100 rules of every kind on a team's month.

Needs nothing but a checkout: it generates (into a temporary folder it removes afterwards, or with --keep DIR
into DIR, reused by the next run) the dashboard benchmark's store of DEVELOPERS developers x DAYS days,
then runs the alert engine of ``serve`` on it, in this process, for ROUNDS evaluation rounds: each round
measures every rule on the store's reader threads and moves the alerts on in ``alerts.db``, exactly as
``serve --alerts`` does every evaluation interval, at the time of the store's newest data (a minute after
it), so that the short windows hold data too. Prints the CPU time of a round (all threads) and what
that is as a share of one core at the rules file's interval. The budget: under 5% of one core.

    .venv/bin/python benchmarks/alerts.py                  # 100 developers x 30 days, 100 rules, every 5 s
    .venv/bin/python benchmarks/alerts.py --keep /tmp/store --interval 10
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ccmetrics.alerts.engine import AlertEngine  # noqa: E402
from ccmetrics.alerts.rules import Rules, parse  # noqa: E402
from ccmetrics.store import Store  # noqa: E402
from tests.team_month import generate  # noqa: E402

BUDGET_SHARE = 0.05  # of one core


def hundred_rules(interval_s: float) -> Rules:
    """100 rules, of every kind, grouped by nothing, user, team and organisation, over windows from
    minutes to a month; thresholds low enough that many of them fire."""
    kinds = [
        ('kind = "spend"\nwindow = "{w}"\nabove = {a}', ["15m", "1h", "6h", "24h", "7d"], [5, 50]),
        ('kind = "tokens_per_minute"\nwindow = "{w}"\nabove = {a}', ["5m", "15m", "1h"], [1000, 100000]),
        ('kind = "error_rate"\nwindow = "{w}"\nabove = 0.{a}', ["10m", "1h"], [1, 5]),
        ('kind = "spike"\nwindow = "{w}"\nfactor = {a}\nbaseline = "7d"', ["15m", "1h"], [2, 3]),
        ('kind = "silence"\nquiet_for = "{w}"\nseen_within = "7d"', ["30m", "2h"], [0]),
        ('kind = "budget"\nperiod = "{w}"\namount = {a}', ["day", "week", "month"], [20, 500]),
    ]
    groups = [None, "user", "team", "organization"]
    blocks = []
    i = 0
    while len(blocks) < 100:
        for template, windows, amounts in kinds:
            for window in windows:
                for amount in amounts:
                    if len(blocks) == 100:
                        break
                    group = groups[i % len(groups)]
                    if "silence" in template and group is None:
                        group = "email"
                    body = template.format(w=window, a=amount)
                    grouping = f'\ngroup_by = "{group}"' if group else ""
                    blocks.append(f'[[rules]]\nname = "R{i}"\n{body}{grouping}\n')
                    i += 1
    text = f'evaluation_interval = "{interval_s}s"\n[targets]\nnowhere = "json://127.0.0.1:9/hook"\n'
    return parse(text + "\n".join(blocks), "benchmark rules")


def newest_point_ns(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT MAX(time_ns) FROM points").fetchone()[0])
    finally:
        conn.close()


async def run(
    store: Store, rules: Rules, state_path: Path, rounds: int, interval_s: float, at_ns: int
) -> tuple[list[float], list[float]]:
    """Rounds as serve runs them, at the clock of a server ``at_ns`` - now behind (the store's newest data
    is then minutes old, as it is on a team's working day), ``interval_s`` apart."""
    engine = AlertEngine(store, rules, state_path)
    cpu, wall = [], []
    try:
        for i in range(rounds):
            cpu_before, wall_before = time.process_time(), time.perf_counter()
            await engine.evaluate_once(at_ns + int(i * interval_s * 1e9))
            cpu.append(time.process_time() - cpu_before)
            wall.append(time.perf_counter() - wall_before)
            assert engine.last_error is None, engine.last_error
        alerts = engine.state.overview(at_ns)["alerts"]
        firing = sum(a["state"] == "firing" for a in alerts)
        print(f"after {rounds} rounds: {firing} alerts firing, {len(alerts) - firing} pending")
    finally:
        engine.close()
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--developers", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between evaluations")
    parser.add_argument("--keep", type=Path, help="reuse or keep the store in this directory")
    args = parser.parse_args()

    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="ccmetrics-bench-"))
    try:
        measure(args, data_dir / "ccmetrics.db")
    finally:
        if args.keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)


def measure(args: argparse.Namespace, db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    if not db.exists():
        print(f"generating {args.developers} developers x {args.days} days into {db}")
        asyncio.run(generate(db, args.developers, args.days, args.seed))
    rules = hundred_rules(args.interval)
    kinds: dict[str, int] = {}
    for rule in rules.rules:
        kinds[rule.kind.value] = kinds.get(rule.kind.value, 0) + 1
    print(f"{len(rules.rules)} rules: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))
    with tempfile.TemporaryDirectory() as state_dir:
        store = Store(db)
        try:
            at_ns = min(time.time_ns(), newest_point_ns(db) + 60 * 1_000_000_000)
            cpu, wall = asyncio.run(
                run(store, rules, Path(state_dir) / "alerts.db", args.rounds, args.interval, at_ns)
            )
        finally:
            store.close()
    warm_cpu = cpu[1:]
    share = statistics.mean(warm_cpu) / args.interval
    print(f"first round (cold caches): {cpu[0] * 1000:.0f} ms CPU, {wall[0] * 1000:.0f} ms wall")
    print(
        f"next {len(warm_cpu)} rounds: CPU per round p50 {statistics.median(warm_cpu) * 1000:.1f} ms, "
        f"max {max(warm_cpu) * 1000:.1f} ms; wall p50 {statistics.median(wall[1:]) * 1000:.1f} ms"
    )
    print(
        f"evaluating {len(rules.rules)} rules every {args.interval:g} s: {100 * share:.2f}% of one core "
        f"(budget {100 * BUDGET_SHARE:.0f}%): {'OK' if share < BUDGET_SHARE else 'OVER BUDGET'}"
    )


if __name__ == "__main__":
    main()
