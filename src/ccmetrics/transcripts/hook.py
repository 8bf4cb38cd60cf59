"""``ccmetrics setup --push``: a Claude Code SessionEnd hook that runs ``ccmetrics push`` when a session ends.

The hook goes into the ``hooks`` of Claude Code's settings file, beside whatever hooks are there; setting it
up again replaces it (never a second one), and ``--undo`` takes out only it.
"""

from __future__ import annotations

import difflib
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from ..setup import backup_path, detect_indent, dump_settings

EVENT = "SessionEnd"
MARK = "-m ccmetrics push"  # how our hook's command is told from others


def command(server: str, token: str | None, python: str | None = None) -> str:
    """The hook's command: this Python, so it runs whatever virtualenv is active in the session."""
    parts = [python or sys.executable, "-m", "ccmetrics", "push", "--server", server]
    if token:
        parts += ["--token", token]
    return shlex.join(parts)


def _without_ours(entries: list[Any]) -> list[Any]:
    kept = []
    for entry in entries:
        hooks = [h for h in entry.get("hooks", []) if MARK not in str(h.get("command", ""))]
        if hooks or not entry.get("hooks"):
            kept.append({**entry, "hooks": hooks} if "hooks" in entry else entry)
    return kept


def updated(text: str | None, hook_command: str | None) -> str:
    """The settings with our hook set to ``hook_command`` (None: taken out)."""
    document: dict[str, Any] = json.loads(text) if text and text.strip() else {}
    hooks = document.setdefault("hooks", {})
    entries = _without_ours(list(hooks.get(EVENT, [])))
    if hook_command is not None:
        entries.append({"hooks": [{"type": "command", "command": hook_command}]})
    if entries:
        hooks[EVENT] = entries
    else:
        hooks.pop(EVENT, None)
    if not hooks:
        document.pop("hooks")
    return dump_settings(document, detect_indent(text or ""))


def plan(path: Path, hook_command: str | None) -> tuple[str | None, str, str]:
    """The file's text now, its text with the change, and the diff between them."""
    before = path.read_text() if path.exists() else None
    after = updated(before, hook_command)
    diff = "".join(
        difflib.unified_diff(
            (before or "").splitlines(keepends=True), after.splitlines(keepends=True), str(path), str(path)
        )
    )
    return before, after, diff


def write(path: Path, before: str | None, after: str) -> Path | None:
    """Write ``after``, keeping a copy of what was there; the copy's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if before is not None:
        backup = backup_path(path)
        shutil.copy2(path, backup)
    tmp = path.with_name(f".{path.name}.ccmetrics-tmp")
    tmp.write_text(after)
    tmp.replace(path)
    return backup
