"""The alert engine inside ``ccmetrics serve``: every ``evaluation_interval`` it measures every rule on the
store's reader threads (never on the event loop), moves the alerts on in ``alerts.db`` on a thread of its
own, and wakes the delivery threads. Nothing of it runs on the writer, so ingest never waits for it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..store import Store, StoreUpgrading
from . import budgets
from .evaluate import Observations, Reading, budget_statuses, measure
from .notify import Deliverer
from .rules import Kind, Rules
from .state import AlertState

log = logging.getLogger("ccmetrics")
T = TypeVar("T")


class AlertEngine:
    def __init__(self, store: Store, rules: Rules, path: Path) -> None:
        self.store = store
        self.rules = rules
        self.path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ccmetrics-alerts")
        self.state: AlertState = self._thread.submit(AlertState, path).result()
        budgets.use(rules)
        self.deliverer = Deliverer(path, rules.targets, rules.backoff_s, rules.attempts)
        self.last_round_ns: int | None = None
        self.last_round_ms: float | None = None
        self.last_error: str | None = None
        self.rounds = 0
        self.busy_s = 0.0  # evaluation time, all rounds together

    async def in_thread(self, work: Callable[[AlertState], T]) -> T:
        """Run ``work`` on the engine's thread, the only one that writes alerts and silences."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, self.state)

    async def run(self) -> None:
        """Evaluate every interval until cancelled."""
        self.deliverer.start()
        loop = asyncio.get_running_loop()
        interval = self.rules.evaluation_interval_s
        log.info(
            "alerts: %d rules from %s, evaluated every %gs, notifying %s",
            len(self.rules.rules),
            self.rules.source,
            interval,
            ", ".join(self.rules.targets) or "nobody",
        )
        while True:
            started = loop.time()
            await self.evaluate_once()
            await asyncio.sleep(max(0.0, started + interval - loop.time()))

    async def evaluate_once(self, now_ns: int | None = None) -> None:
        now = now_ns if now_ns is not None else time.time_ns()
        started = time.perf_counter()
        try:
            observed = await self.store.read(lambda: self.measure(now))
            queued = await self.in_thread(lambda state: state.step(self.rules, observed, now))
        except StoreUpgrading:
            return  # no exact numbers until the store is upgraded
        except Exception as exc:  # a bad round is logged; the next one tries again
            if str(exc) != self.last_error:
                log.exception("alerts: could not evaluate the rules")
            self.last_error = str(exc)
            return
        self.last_error = None
        elapsed = time.perf_counter() - started
        self.rounds += 1
        self.busy_s += elapsed
        self.last_round_ns, self.last_round_ms = now, elapsed * 1000
        if queued:
            self.deliverer.wake()

    def measure(self, now_ns: int) -> Observations:
        """On a reader thread, in one read transaction."""
        self.store.check_upgraded()
        reading = Reading(self.store.reader(), now_ns, self.store.family_cache, self.store.answers)
        return measure(reading, self.rules.rules)

    def budgets(
        self, attrs: tuple[tuple[str, str], ...] = (), now_ns: int | None = None
    ) -> list[dict[str, Any]]:
        """Every budget's spend and projection now (on a reader thread)."""
        now = now_ns if now_ns is not None else time.time_ns()
        reading = Reading(self.store.reader(), now, self.store.family_cache, self.store.answers)
        return budget_rows(self.rules, reading, attrs)

    def status(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "source": self.rules.source,
            "evaluation_interval_s": self.rules.evaluation_interval_s,
            "repeat_interval_s": self.rules.repeat_interval_s,
            "last_evaluation_ns": self.last_round_ns,
            "last_evaluation_ms": self.last_round_ms,
            "last_error": self.last_error,
            "targets": sorted(self.rules.targets),
            "rules": [
                {
                    "name": rule.name,
                    "kind": rule.kind.value,
                    "group_by": rule.group_by,
                    "for_s": rule.for_s,
                    "labels": dict(rule.labels),
                }
                for rule in self.rules.rules
            ],
        }

    def close(self) -> None:
        self.deliverer.stop()
        self._thread.submit(self.state.close).result()
        self._thread.shutdown(wait=True)


def budget_rows(rules: Rules, reading: Reading, attrs: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    """Each budget group's spend, budget, share and projection, under extra attribute filters ``attrs``
    (a member's own email, a dashboard's filters)."""
    rows = []
    for rule in rules.rules:
        if rule.kind is not Kind.BUDGET:
            continue
        scoped = dataclasses.replace(rule, filters=(*rule.filters, *attrs))
        for status in budget_statuses(reading, scoped):
            rows.append(
                {
                    "rule": status.rule,
                    "group": status.group,
                    "period": status.period.value,
                    "period_start_ns": status.period_start_ns,
                    "period_end_ns": status.period_end_ns,
                    "spend_usd": status.spend,
                    "budget_usd": status.amount,
                    "percent": status.percent,
                    "projected_usd": status.projected,
                }
            )
    return rows
