"""Where alerts stand, kept in ``alerts.db`` beside the telemetry store, so that a restart picks up where
the server left: an alert already notified is not notified again, and a notification not yet delivered
still is.

Each alert (a rule and the labels of one group) goes inactive -> pending -> firing -> resolved, as in
Prometheus: pending while its condition has held for less than the rule's ``for``, firing once it has held
that long, resolved when it no longer holds. Notifications follow Alertmanager: the alerts of one rule that
start firing (or resolve) in a round go out together, one notification per target; a firing alert is notified
again every ``repeat_interval``; a silenced alert is not notified at all. A notification is queued in the same
transaction that records the change, and the delivery threads (``notify.py``) send what is queued.

The file is written by the alert engine's own thread and by the delivery threads, each through its own
connection: none of it ever waits on the telemetry store's writer, nor the writer on it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store.schema import apply_migrations
from .evaluate import Labels, Observations
from .rules import Rule, Rules

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE alerts (
        rule TEXT NOT NULL,
        labels TEXT NOT NULL,              -- JSON object, keys sorted
        state TEXT NOT NULL,               -- pending | firing
        active_since_ns INTEGER NOT NULL,  -- when its condition started to hold
        fired_ns INTEGER,                  -- when it started firing
        notified_ns INTEGER,               -- when a firing notification of it was last queued
        value REAL NOT NULL,
        annotations TEXT NOT NULL,         -- JSON object
        PRIMARY KEY (rule, labels)
    );
    CREATE TABLE history (
        id INTEGER PRIMARY KEY,
        rule TEXT NOT NULL,
        labels TEXT NOT NULL,
        state TEXT NOT NULL,               -- firing | resolved
        at_ns INTEGER NOT NULL,
        value REAL NOT NULL,
        annotations TEXT NOT NULL
    );
    CREATE INDEX history_at ON history (at_ns);
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY,
        matchers TEXT NOT NULL,            -- JSON object: label -> value, alertname included
        comment TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        expires_ns INTEGER NOT NULL
    );
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,              -- a name of the rules file's [targets]
        rule TEXT,                         -- none: a test notification
        status TEXT NOT NULL,              -- firing | resolved | test
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        state TEXT NOT NULL,               -- queued | sent | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_ns INTEGER NOT NULL,          -- the next attempt, while queued
        error TEXT,                        -- why the last attempt failed
        done_ns INTEGER
    );
    CREATE INDEX notifications_queued ON notifications (target, id) WHERE state = 'queued';
    """,
)
HISTORY_KEPT = 1000  # transitions listed by the API
NOTIFICATIONS_KEPT = 200


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    path.chmod(0o600)  # its notifications may quote who spent what
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    (current,) = conn.execute("PRAGMA user_version").fetchone()
    apply_migrations(conn, MIGRATIONS, current)


# Rows that name someone: a label (or a silence's matcher) equal to one of :who (a JSON list), or, in text
# made from labels (annotations, a notification's title and body), one of them quoted.
_LABELLED = "EXISTS (SELECT 1 FROM json_each({column}) WHERE value IN (SELECT value FROM json_each(:who)))"
_QUOTED = "EXISTS (SELECT 1 FROM json_each(:who) w WHERE instr({column}, w.value) > 0)"
_NAMING = {
    "alerts": f"{_LABELLED.format(column='labels')} OR {_QUOTED.format(column='annotations')}",
    "history": f"{_LABELLED.format(column='labels')} OR {_QUOTED.format(column='annotations')}",
    "silences": f"{_LABELLED.format(column='matchers')} OR {_QUOTED.format(column='comment')}",
    "notifications": f"{_QUOTED.format(column='title')} OR {_QUOTED.format(column='body')}",
}


def forget(path: Path, who: set[str]) -> int:
    """Delete every alert, transition, silence and notification that names one of ``who`` (a person's ids,
    emails and names, or a session's id), leaving no copy in the file; returns how many rows went. Run once
    the telemetry store has forgotten them: an alert of theirs then finds nothing to hold on, and resolves
    unsaid, its row gone."""
    if not path.exists() or not who:
        return 0
    conn = connect(path)
    try:
        migrate(conn)
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("BEGIN IMMEDIATE")
        try:
            params = {"who": json.dumps(sorted(who))}
            removed = sum(
                conn.execute(f"DELETE FROM {table} WHERE {naming}", params).rowcount
                for table, naming in _NAMING.items()
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no copy of a deleted page left in the log
        return removed
    finally:
        conn.close()


def labels_json(labels: Labels | Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(dict(labels).items())), separators=(",", ":"))


@dataclass(frozen=True)
class Silence:
    id: int
    matchers: Mapping[str, str]
    comment: str
    created_by: str
    created_ns: int
    expires_ns: int

    def matches(self, rule: str, labels: Mapping[str, str]) -> bool:
        every = {**labels, "alertname": rule}
        return all(every.get(key) == value for key, value in self.matchers.items())

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": dict(self.matchers),
            "comment": self.comment,
            "created_by": self.created_by,
            "created_ns": self.created_ns,
            "expires_ns": self.expires_ns,
        }


@dataclass(frozen=True)
class Queued:
    """A notification to queue: one rule's alerts that changed together, for one target."""

    target: str
    rule: str | None
    status: str
    title: str
    body: str


class AlertState:
    """``alerts.db``: the alerts, their history, silences, and the notifications' queue."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = connect(path)
        migrate(self.conn)

    def close(self) -> None:
        self.conn.close()

    # --- the state machine ------------------------------------------------------------------------------

    def step(self, rules: Rules, observed: Observations, now_ns: int) -> list[Queued]:
        """Move every alert on by what holds now; record the changes and queue their notifications, all in
        one transaction. Returns what was queued."""
        conn = self.conn
        queued: list[Queued] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            silences = self._silences(now_ns)
            known = {rule.name for rule in rules.rules}
            for (name,) in conn.execute("SELECT DISTINCT rule FROM alerts").fetchall():
                if name not in known:  # a rule taken out of the file: its alerts go with it, unsaid
                    conn.execute("DELETE FROM alerts WHERE rule = ?", (name,))
            for rule in rules.rules:
                queued += self._step_rule(rules, rule, observed.get(rule.name, {}), now_ns, silences)
            for item in queued:
                conn.execute(
                    "INSERT INTO notifications "
                    "(target, rule, status, title, body, created_ns, state, next_ns) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)",
                    (item.target, item.rule, item.status, item.title, item.body, now_ns, now_ns),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return queued

    def _step_rule(
        self,
        rules: Rules,
        rule: Rule,
        holding: Mapping[Labels, Any],
        now_ns: int,
        silences: list[Silence],
    ) -> list[Queued]:
        conn = self.conn
        rows = {
            labels: (state, since, fired, notified)
            for labels, state, since, fired, notified in conn.execute(
                "SELECT labels, state, active_since_ns, fired_ns, notified_ns FROM alerts WHERE rule = ?",
                (rule.name,),
            )
        }
        for_ns = int(rule.for_s * 1e9)
        repeat_ns = int(rules.repeat_interval_s * 1e9)
        firing: list[str] = []
        resolved: list[str] = []

        def silenced(labels: Mapping[str, str]) -> bool:
            return any(s.matches(rule.name, labels) for s in silences)

        for labels, observation in holding.items():
            key = labels_json(labels)
            state, since, fired, notified = rows.pop(key, ("new", now_ns, None, None))
            if state != "firing" and now_ns - since >= for_ns:
                state, fired = "firing", now_ns
                self._history(rule.name, key, "firing", now_ns, observation.value, observation.annotations)
            elif state == "new":
                state = "pending"
            if (
                state == "firing"
                and not silenced(dict(labels))
                and (notified is None or (rule.repeats and now_ns - notified >= repeat_ns))
            ):
                notified = now_ns
                firing.append(_line(rule, dict(labels), observation.value, observation.annotations))
            conn.execute(
                "INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rule.name,
                    key,
                    state,
                    since,
                    fired,
                    notified,
                    observation.value,
                    json.dumps(dict(observation.annotations)),
                ),
            )
        for key, (state, _, _, notified) in rows.items():  # no longer holding
            conn.execute("DELETE FROM alerts WHERE rule = ? AND labels = ?", (rule.name, key))
            if state != "firing":
                continue
            labels = json.loads(key)
            self._history(rule.name, key, "resolved", now_ns, 0.0, {})
            if rule.send_resolved and notified is not None and not silenced(labels):
                resolved.append(_line(rule, labels, None, {}))
        out = []
        for status, lines in (("firing", firing), ("resolved", resolved)):
            if not lines:
                continue
            title = f"[{status.upper()}:{len(lines)}] {rule.name}"
            body = "\n".join(lines)
            out += [Queued(target, rule.name, status, title, body) for target in rules.targets_of(rule)]
        return out

    def _history(
        self, rule: str, labels: str, state: str, at_ns: int, value: float, annotations: Mapping[str, str]
    ) -> None:
        self.conn.execute(
            "INSERT INTO history (rule, labels, state, at_ns, value, annotations) VALUES (?, ?, ?, ?, ?, ?)",
            (rule, labels, state, at_ns, value, json.dumps(dict(annotations))),
        )

    # --- silences --------------------------------------------------------------------------------------

    def _silences(self, now_ns: int) -> list[Silence]:
        return [
            Silence(i, json.loads(m), c, b, cr, ex)
            for i, m, c, b, cr, ex in self.conn.execute(
                "SELECT id, matchers, comment, created_by, created_ns, expires_ns FROM silences "
                "WHERE expires_ns > ? ORDER BY id",
                (now_ns,),
            )
        ]

    def add_silence(
        self, matchers: Mapping[str, str], comment: str, created_by: str, now_ns: int, expires_ns: int
    ) -> Silence:
        cursor = self.conn.execute(
            "INSERT INTO silences (matchers, comment, created_by, created_ns, expires_ns) "
            "VALUES (?, ?, ?, ?, ?)",
            (json.dumps(dict(sorted(matchers.items()))), comment, created_by, now_ns, expires_ns),
        )
        assert cursor.lastrowid is not None
        return Silence(cursor.lastrowid, dict(matchers), comment, created_by, now_ns, expires_ns)

    def expire_silence(self, silence_id: int, now_ns: int) -> bool:
        cursor = self.conn.execute(
            "UPDATE silences SET expires_ns = ? WHERE id = ? AND expires_ns > ?", (now_ns, silence_id, now_ns)
        )
        return cursor.rowcount > 0

    # --- what the API shows ----------------------------------------------------------------------------

    def overview(self, now_ns: int) -> dict[str, Any]:
        conn = self.conn
        alerts = []
        for rule, labels, state, since, fired, notified, value, notes in conn.execute(
            "SELECT rule, labels, state, active_since_ns, fired_ns, notified_ns, value, annotations "
            "FROM alerts ORDER BY state, rule, labels"
        ):
            parsed = json.loads(labels)
            alerts.append(
                {
                    "rule": rule,
                    "labels": parsed,
                    "state": state,
                    "active_since_ns": since,
                    "fired_ns": fired,
                    "notified_ns": notified,
                    "value": value,
                    "annotations": json.loads(notes),
                }
            )
        history = [
            {
                "rule": rule,
                "labels": json.loads(labels),
                "state": state,
                "at_ns": at_ns,
                "value": value,
                "annotations": json.loads(annotations),
            }
            for rule, labels, state, at_ns, value, annotations in conn.execute(
                "SELECT rule, labels, state, at_ns, value, annotations FROM history ORDER BY id DESC LIMIT ?",
                (HISTORY_KEPT,),
            )
        ]
        rows = conn.execute(
            "SELECT id, target, rule, status, title, created_ns, state, attempts, next_ns, error, done_ns "
            "FROM notifications ORDER BY id DESC LIMIT ?",
            (NOTIFICATIONS_KEPT,),
        )
        notifications = [
            {
                "id": i,
                "target": target,
                "rule": rule,
                "status": status,
                "title": title,
                "created_ns": created,
                "state": state,
                "attempts": attempts,
                "next_ns": next_ns if state == "queued" else None,
                "error": error,
                "done_ns": done,
            }
            for i, target, rule, status, title, created, state, attempts, next_ns, error, done in rows
        ]
        silences = [
            {**s.as_dict(), "active": s.expires_ns > now_ns}
            for s in (
                Silence(i, json.loads(m), c, b, cr, ex)
                for i, m, c, b, cr, ex in conn.execute(
                    "SELECT id, matchers, comment, created_by, created_ns, expires_ns FROM silences "
                    "ORDER BY expires_ns > ? DESC, id DESC LIMIT 200",
                    (now_ns,),
                )
            )
        ]
        return {"alerts": alerts, "history": history, "notifications": notifications, "silences": silences}


def _line(rule: Rule, labels: Mapping[str, str], value: float | None, annotations: Mapping[str, str]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    text = f"{rule.name}{' {' + shown + '}' if shown else ''}"
    if value is not None:
        details = ", ".join(f"{k} {v}" for k, v in annotations.items() if v)
        text += f": {details}" if details else f": {value:g}"
    if rule.summary:
        text += f" ({rule.summary})"
    return text
