#!/usr/bin/env python
"""Import benchmark: ``ccmetrics import`` against ccusage, plain Python and grep, side by side on one corpus.

    .venv/bin/python benchmarks/import.py [--corpus DIR] [--ccusage PATH] [--rounds 2]

1. Makes the corpus (benchmarks/transcript_corpus.py: ~6.7 GB, 1,500 sessions, 176,000 messages in the real
   format, from the real CLI's transcripts in tests/fixtures) in a temporary folder, unless ``--corpus`` names
   one made before. It is read once first, so every contender finds it in the page cache.
2. Runs each contender in turn, ``--rounds`` times, interleaved (a machine busy with something else slows
   them all alike), each as its own process, timing its wall clock and its peak RSS (the largest of its
   processes: getrusage of the children):
   - ``grep -c '"usage":' -r``: the floor, reading every byte;
   - plain Python: every line read and decoded with json, messages counted by message.id + requestId;
   - ccusage (``ccusage claude daily --json --offline``, the Rust build from npm; ``--ccusage`` or
     ``npx ccusage@20``);
   - ``ccmetrics import`` into a new database (the first import), then again (the re-import, nothing new).
3. Prints the figures, and the token totals of ccmetrics, of the plain Python count (independent of
   ccmetrics' code) and of ccusage, and says where they differ and why.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

PLAIN_PYTHON = r"""
import json, os, sys
seen = {}
skipped = 0
for folder, _, names in os.walk(sys.argv[1]):
    for name in names:
        if not name.endswith(".jsonl"):
            continue
        with open(os.path.join(folder, name), "rb") as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("type") != "assistant":
                    continue
                m = r.get("message") or {}
                u = m.get("usage")
                if u is None:
                    continue
                if m.get("model") == "<synthetic>" or r.get("isApiErrorMessage"):
                    skipped += 1
                    continue
                key = (m.get("id"), r.get("requestId"))
                counts = (u.get("input_tokens") or 0, u.get("output_tokens") or 0,
                          u.get("cache_read_input_tokens") or 0, u.get("cache_creation_input_tokens") or 0)
                if key not in seen or seen[key][1] < counts[1]:
                    seen[key] = counts
totals = [sum(c[i] for c in seen.values()) for i in range(4)]
print(json.dumps({"messages": len(seen), "skipped": skipped, "input": totals[0], "output": totals[1],
                  "cacheRead": totals[2], "cacheCreation": totals[3]}))
"""


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB of the largest of its processes, stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of the children is the largest any of them reached so far: a new peak only if it grew
    return seconds, (peak if peak > before else 0) // 1024, done.stdout


def rss_of(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Like run, but peak RSS of the process tree measured by /usr/bin/time when there is one."""
    time_bin = shutil.which("time") or "/usr/bin/time"
    if Path(time_bin).exists():
        with tempfile.NamedTemporaryFile("r") as out:
            seconds, _, stdout = run([time_bin, "-f", "%M", "-o", out.name, *cmd], env)
            return seconds, int(out.read().strip().splitlines()[-1]) / 1024, stdout
    seconds, peak, stdout = run(cmd, env)
    return seconds, float(peak), stdout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, help="A corpus made before (its folder holds projects/).")
    parser.add_argument("--ccusage", help="ccusage's executable [default: npx -y ccusage@20].")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, help="ccmetrics import --workers")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ccmetrics-import-bench-"))
    try:
        corpus = args.corpus
        if corpus is None:
            corpus = work / "corpus"
            print(f"making the corpus in {corpus} ...", flush=True)
            subprocess.run([sys.executable, str(HERE / "transcript_corpus.py"), str(corpus)], check=True)
        projects = corpus / "projects"
        files = [os.path.join(d, n) for d, _, ns in os.walk(projects) for n in ns if n.endswith(".jsonl")]
        size = sum(os.path.getsize(f) for f in files)
        print(f"corpus: {size / 1e9:.2f} GB in {len(files)} files", flush=True)
        subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)  # into the page cache

        ccusage = args.ccusage.split() if args.ccusage else ["npx", "-y", "ccusage@20"]
        env_ccusage = {**os.environ, "CLAUDE_CONFIG_DIR": str(corpus), "HOME": str(work / "home")}
        # Compiled, as pip installs a package: a hook's re-import should not be timed compiling ccmetrics.
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
        env_ccm = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        env_ccm.pop("PYTHONDONTWRITEBYTECODE", None)
        ccm = [sys.executable, "-m", "ccmetrics", "import", "--json", str(projects)]
        if args.workers:
            ccm += ["--workers", str(args.workers)]

        figures: dict[str, list[tuple[float, float]]] = {}
        outputs: dict[str, str] = {}

        def note(name: str, seconds: float, peak: float, stdout: str) -> None:
            figures.setdefault(name, []).append((seconds, peak))
            outputs[name] = stdout
            print(f"  {name:<24} {seconds:7.2f} s  {peak:7.0f} MB", flush=True)

        for round_ in range(args.rounds):
            print(f"round {round_ + 1}", flush=True)
            note("grep", *rss_of(["grep", "-c", '"usage":', "-r", str(projects)]))
            note("plain Python", *rss_of([sys.executable, "-c", PLAIN_PYTHON, str(projects)]))
            note(
                "ccusage",
                *rss_of([*ccusage, "claude", "daily", "--json", "--offline"], env_ccusage),
            )
            data_dir = work / f"data-{round_}"
            note("ccmetrics import", *rss_of([*ccm, "--data-dir", str(data_dir)], env_ccm))
            note("ccmetrics re-import", *rss_of([*ccm, "--data-dir", str(data_dir)], env_ccm))
            sys.path.insert(0, str(ROOT / "src"))
            from ccmetrics.transcripts.importer import import_transcripts

            started = time.perf_counter()
            again = import_transcripts(data_dir / "ccmetrics.db", [projects])
            note("re-import (in process)", time.perf_counter() - started, 0, "")
            assert again.files_read == 0

        print("\nbest of each (wall seconds, peak RSS MB):")
        for name, runs in figures.items():
            best = min(runs)
            print(f"  {name:<24} {best[0]:7.2f} s  {max(p for _, p in runs):7.0f} MB")

        mine = json.loads(outputs["ccmetrics import"])
        plain = json.loads(outputs["plain Python"])
        theirs = json.loads(outputs["ccusage"])["totals"]
        print("\ntokens            ccmetrics      plain Python   ccusage")
        names = (("input", "inputTokens"), ("output", "outputTokens"), ("cacheRead", "cacheReadTokens"))
        for kind, their_name in (*names, ("cacheCreation", "cacheCreationTokens")):
            print(f"  {kind:<14} {mine['tokens'][kind]:>14,} {plain[kind]:>14,} {theirs[their_name]:>14,}")
        print(f"  messages       {mine['messages']:>14,} {plain['messages']:>14,}")
        print(f"  cost (USD)     {mine['cost_usd']:>14,.2f} {'':>14} {theirs['totalCost']:>14,.2f}")
        print(f"  price table: {mine['price_table']}; no price: {mine['unpriced_models']}")
        same = all(mine["tokens"][k] == plain[k] for k in ("input", "output", "cacheRead", "cacheCreation"))
        print(f"\nccmetrics equals the independent count: {same}")
        if not same:
            raise SystemExit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
