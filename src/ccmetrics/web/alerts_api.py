"""``/api/alerts`` and the alerts page: what fires now, what fired before, the silences, the notifications
and how their delivery went, and the budgets. Everyone who reads the dashboard reads them (a member only the
alerts and budgets of their own email); only an admin adds or ends a silence, and the web gate has checked
the CSRF token of those changes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..access.people import WebRole
from ..access.readers import EMAIL_KEY, Reader
from ..alerts.engine import AlertEngine
from ..alerts.state import AlertState
from ..store.filters import parse_iso, parse_span
from .auth import reader_of

NO_STORE = {"Cache-Control": "no-store"}
MAX_COMMENT = 1000


def _visible(reader: Reader, labels: dict[str, str]) -> bool:
    email = reader.only_email
    return email is None or labels.get(EMAIL_KEY) == email


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=NO_STORE)


def routes(alerts: AlertEngine | None, page: Callable[[str], Any]) -> list[Route]:
    async def api_alerts(request: Request) -> Response:
        reader = reader_of(request)
        if alerts is None:
            body: dict[str, Any] = {
                "enabled": False,
                "firing": [],
                "pending": [],
                "history": [],
                "silences": [],
                "notifications": [],
                "budgets": [],
            }
            return JSONResponse(body, headers=NO_STORE)
        now = time.time_ns()
        overview = await alerts.in_thread(lambda state: state.overview(now))
        attrs = () if reader.only_email is None else ((EMAIL_KEY, reader.only_email),)
        budgets = await alerts.store.read(lambda: alerts.budgets(attrs, now))
        shown = [a for a in overview["alerts"] if _visible(reader, a["labels"])]
        body = {
            **alerts.status(),
            "now_ns": now,
            "firing": [a for a in shown if a["state"] == "firing"],
            "pending": [a for a in shown if a["state"] == "pending"],
            "history": [h for h in overview["history"] if _visible(reader, h["labels"])],
            "silences": overview["silences"],
            # what notifications said, who they went to and how delivery went: for those who see everything
            "notifications": overview["notifications"] if reader.only_email is None else [],
            "budgets": budgets,
            "can_silence": reader.role is WebRole.ADMIN,
        }
        return JSONResponse(body, headers=NO_STORE)

    async def add_silence(request: Request) -> Response:
        if reader_of(request).role is not WebRole.ADMIN:
            return _error(403, "only an admin adds silences")
        if alerts is None:
            return _error(404, "no alerts: serve was started without --alerts")
        try:
            fields = json.loads(await request.body() or b"{}")
        except ValueError:
            return _error(400, 'send JSON: {"matchers": {...}, "duration": "2h", "comment": "..."}')
        if not isinstance(fields, dict):
            return _error(400, "send a JSON object")
        matchers = fields.get("matchers")
        if (
            not isinstance(matchers, dict)
            or not matchers
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in matchers.items())
        ):
            return _error(400, "matchers: a non-empty object of label names and values (alertname included)")
        now = time.time_ns()
        duration, expires = fields.get("duration"), fields.get("expires")
        if isinstance(duration, str) and (span := parse_span(duration)) is not None:
            expires_ns = now + int(min(span.total_seconds(), 10 * 365 * 86400) * 1e9)
        elif isinstance(expires, str) and (moment := parse_iso(expires)) is not None:
            expires_ns = int(moment.timestamp() * 1e9)
        else:
            return _error(400, "duration (2h, 1d) or expires (an ISO 8601 time) is required")
        if expires_ns <= now:
            return _error(400, "a silence must end in the future")
        comment = fields.get("comment", "")
        if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
            return _error(400, f"comment: text of at most {MAX_COMMENT} characters")
        by = reader_of(request).name

        def add(state: AlertState) -> dict[str, Any]:
            return state.add_silence(matchers, comment, by, now, expires_ns).as_dict()

        return JSONResponse(await alerts.in_thread(add), status_code=201, headers=NO_STORE)

    async def expire_silence(request: Request) -> Response:
        if reader_of(request).role is not WebRole.ADMIN:
            return _error(403, "only an admin ends silences")
        if alerts is None:
            return _error(404, "no alerts: serve was started without --alerts")
        try:
            silence_id = int(request.path_params["silence_id"])
        except ValueError:
            return _error(404, "no such silence")
        now = time.time_ns()
        if not await alerts.in_thread(lambda state: state.expire_silence(silence_id, now)):
            return _error(404, "no such silence, or it has already ended")
        return JSONResponse({"expired": silence_id}, headers=NO_STORE)

    return [
        Route("/alerts", page("alerts.html")),
        Route("/api/alerts", api_alerts),
        Route("/api/alerts/silences", add_silence, methods=["POST"]),
        Route("/api/alerts/silences/{silence_id}", expire_silence, methods=["DELETE"]),
    ]
