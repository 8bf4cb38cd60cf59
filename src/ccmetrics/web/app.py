"""The web side of ``ccmetrics serve``: the dashboard pages, the JSON API and the live update stream.

Pages are static files: everything that came from a client reaches the browser as JSON and is put on the
page as text, never as HTML, so an attribute value cannot inject markup.
"""

from __future__ import annotations

import asyncio
import csv
import io
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import __version__, jsontext
from ..access.aliases import AliasBook
from ..access.gate import Gate
from ..alerts.engine import AlertEngine
from ..config import Config
from ..hosts import HostCheck, allowed_names
from ..panels import DEFAULT_GROUP_KEY, PANELS, PANELS_BY_ID, Panel, PanelRequest, dashboard_data
from ..setup import telemetry_env
from ..spreadsheet import inert
from ..store import Store, StoreUpgrading, queries
from ..store.filter_choices import attribute_values, filter_options, models_in_order_seen
from ..store.filters import Filters, QueryError
from ..store.people import NO_ALIASES, People
from ..store.schema import DAY_NS
from ..store.selection import Selection
from ..store.summary import summary
from ..store.timeline import session_timeline, session_traces, stored_events
from .admin import Admin
from .alerts_api import routes as alert_routes
from .auth import WebAccess, WebGate, WebGateMiddleware, reader_of
from .signin import SignIn
from .status_api import routes as status_routes

STATIC = resources.files("ccmetrics.web") / "static"
LIVE_HEARTBEAT_S = 15  # a live stream without news sends a "ping" this often
LIVE_MIN_INTERVAL_S = 0.25  # and a "data" event at most this often, however often data is committed
# The dashboard's range presets: a span back from now, or all the data. Which one it shows first is the
# dashboard_range setting.
RANGES = (
    ("1h", "Last hour"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
    ("all", "All time"),
)
log = logging.getLogger("ccmetrics")


class FiniteJSONResponse(JSONResponse):
    """Valid JSON whatever the store answers: a number that is not finite is written as null."""

    def render(self, content: Any) -> bytes:
        return jsontext.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


MAX_EVENTS = 5000  # events /api/events answers with at most


def filters_from(request: Request) -> Filters:
    """The filters a request asks for, narrowed to what its reader may see (a member: their own data)."""
    params = request.query_params
    asked = Filters.parse(params.get("since"), params.get("until"), params.getlist("filter"))
    return reader_of(request).scoped(asked)


def view_from(
    request: Request, store: Store, group_key: str, aliases: Mapping[str, str] = NO_ALIASES
) -> PanelRequest:
    """The view a request asks for, grouped by ``group_key`` when it names no ``group_by``."""
    return view_for(store, filters_from(request), request.query_params.get("group_by") or group_key, aliases)


def view_for(
    store: Store,
    filters: Filters,
    group_key: str = DEFAULT_GROUP_KEY,
    aliases: Mapping[str, str] = NO_ALIASES,
) -> PanelRequest:
    selection = Selection(store.reader(), filters, store.family_cache, store.answers)
    end = filters.until_ns or time.time_ns()
    start = filters.since_ns or _first_data_ns(selection, end)
    return PanelRequest(selection, start, end, group_key, aliases)


def check_dashboard_settings(config: Config) -> None:
    """Raises ValueError, naming the setting, when the dashboard could not show its default view."""
    try:
        Filters.parse(since=_since(config.dashboard_range))
    except QueryError as exc:
        raise ValueError(f"--dashboard-range {config.dashboard_range!r}: {exc}") from None
    try:
        Filters.parse(filters=[f"{config.dashboard_group_by}=x"])
    except QueryError as exc:
        raise ValueError(f"--dashboard-group-by {config.dashboard_group_by!r}: {exc}") from None


def _since(range_: str) -> str | None:
    return None if range_ == "all" else range_


def dashboard_config(config: Config, otlp_host: str, token_needed: bool = False) -> dict[str, Any]:
    """What the dashboard page needs before its first request: its defaults and choices of range, how often
    the live stream pings, the panel catalogue, and the settings that send Claude Code's data here (with a
    place for an ingest token when exports need one)."""
    ranges = [{"value": value, "label": label} for value, label in RANGES]
    if config.dashboard_range not in dict(RANGES):
        ranges.insert(-1, {"value": config.dashboard_range, "label": config.dashboard_range})
    host = f"[{otlp_host}]" if ":" in otlp_host else otlp_host
    scheme = "https" if config.tls else "http"
    token = INGEST_TOKEN_PLACEHOLDER if token_needed else None
    http = telemetry_env(
        protocol="http/protobuf", endpoint=f"{scheme}://{host}:{config.otlp_http_port}", token=token
    )
    grpc_host = _grpc_tls_host(otlp_host) if config.tls else host
    return {
        "defaults": {"range": config.dashboard_range, "group_by": config.dashboard_group_by},
        "ranges": ranges,
        "live": {"heartbeat_s": LIVE_HEARTBEAT_S, "min_interval_s": LIVE_MIN_INTERVAL_S},
        "panels": [panel_meta(p) for p in PANELS],
        "setup": {
            # Claude Code's gRPC client takes no IP address over TLS: HTTP is shown for both then.
            "grpc": telemetry_env(
                protocol="grpc", endpoint=f"{scheme}://{grpc_host}:{config.otlp_grpc_port}", token=token
            )
            if grpc_host
            else http,
            "http": http,
        },
    }


# Shown where a token goes: `ccmetrics token create NAME --role ingest` (or an admin, on /admin) makes one.
INGEST_TOKEN_PLACEHOLDER = "<ingest-token>"


def _grpc_tls_host(host: str) -> str | None:
    """The host name a gRPC client can verify over TLS: a name as it is, loopback as localhost, else none."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    return "localhost" if address.is_loopback else None


async def warm_up(store: Store, config: Config) -> None:
    """Read what the dashboard's first view needs once, as the server starts, so that its first visitor does
    not wait for a cold store (families to load, history to read into the answer cache)."""

    def work() -> None:
        since = _since(config.dashboard_range)
        view = view_for(store, Filters.parse(since=since), config.dashboard_group_by)
        dashboard_data(view, compare=True)

    started = time.perf_counter()
    try:
        await store.read(work)
    except Exception as exc:  # a head start, never a reason to fail
        log.warning("could not warm up the dashboard: %s", exc)
        return
    log.info("dashboard warmed up in %.0f ms", (time.perf_counter() - started) * 1000)


def _first_data_ns(selection: Selection, end: int) -> int:
    first = selection.first_point_ns()
    return min(first, end) if first else end - DAY_NS


def _event(name: str, version: int) -> str:
    """One server-sent event of the live stream."""
    return f"event: {name}\ndata: {json.dumps({'version': version})}\n\n"


def panel_meta(panel: Panel) -> dict[str, Any]:
    return {
        "id": panel.id,
        "title": panel.title,
        "description": panel.description,
        "row": panel.row,
        "kind": panel.kind,
        "unit": panel.unit,
        "width": panel.width,
        "height": panel.height,
        "options": panel.options,
        "empty": panel.empty,
        "hide_empty": panel.hide_empty,
    }


def to_csv(data: dict[str, Any]) -> str:
    """A panel's data as a CSV table, whatever its kind. Every text is quoted and no number is, so that a
    spreadsheet reads each as what it is; no text can be a formula."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC)

    def write(row: list[Any]) -> None:
        writer.writerow([inert(value) for value in row])

    if "rows" in data:
        keys = [c["key"] for c in data["columns"]]
        write([c["label"] for c in data["columns"]])
        for row in data["rows"]:
            write([row.get(k) for k in keys])
    elif "items" in data:
        write(["label", "value"])
        for item in data["items"]:
            write([item["label"], item["value"]])
    elif "series" in data:
        write(["time", *(s["label"] for s in data["series"])])
        for i, t in enumerate(data["times"]):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t / 1e9))
            write([stamp, *(s["values"][i] for s in data["series"])])
    else:
        write(["value"])
        write([data.get("value")])
    return out.getvalue()


def create_app(
    store: Store,
    config: Config,
    gate: Gate | None = None,
    aliases: AliasBook | None = None,
    alerts: AlertEngine | None = None,
) -> Starlette:
    """The dashboard's app. With ``gate`` (``serve`` always gives its own), readers are checked as the
    settings say (``auth.py``) with the gate's tokens, people and sessions; without one, nothing is. Users
    are named with ``aliases`` (by default, the data directory's)."""
    check_dashboard_settings(config)
    book = aliases or AliasBook(config.access_path)

    def view_of(request: Request) -> PanelRequest:
        return view_from(request, store, config.dashboard_group_by, book.current())

    async def query(request: Request, work: Any) -> Response:
        """Answer a request's work as JSON; ``store.read`` runs all of it in one read transaction."""

        def timed() -> tuple[Any, float]:
            started = time.perf_counter()
            store.check_upgraded()
            return work(), (time.perf_counter() - started) * 1000

        try:
            result, ms = await store.read(timed)
        except (QueryError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except StoreUpgrading as exc:
            body = {"error": str(exc), "upgrading": True, "events_left": exc.events_left}
            return JSONResponse(body, status_code=503, headers={"Retry-After": "10"})
        # Server-Timing: how long the store took, for browsers' developer tools and the benchmarks.
        return FiniteJSONResponse(result, headers={"Server-Timing": f"store;dur={ms:.1f}"})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "host": config.host,
                "otlp": {"grpc_port": config.otlp_grpc_port, "http_port": config.otlp_http_port},
            }
        )

    async def api_summary(request: Request) -> Response:
        return await query(
            request,
            lambda: summary(
                store.reader(), filters_from(request), store.family_cache, store.answers, book.current()
            ),
        )

    async def api_panels(request: Request) -> JSONResponse:
        return JSONResponse({"panels": [panel_meta(p) for p in PANELS]})

    async def api_config(request: Request) -> JSONResponse:
        # Bound to every address, the settings shown name the host this page was reached by.
        host = config.host if config.host not in ("0.0.0.0", "::", "") else request.url.hostname
        token_needed = gate is not None and gate.required
        return JSONResponse(dashboard_config(config, host or "127.0.0.1", token_needed))

    async def api_dashboard(request: Request) -> Response:
        # Read before the data: the answer holds at least this version's data, so a page that has it and
        # hears of a later one never misses a commit.
        version = store.version
        only_email = reader_of(request).only_email

        def work() -> dict[str, Any]:
            view = view_of(request)
            has_data = view.selection.has_claude_code_data()
            conn = view.selection.conn
            return {
                "start_ns": view.start_ns,
                "end_ns": view.end_ns,
                "version": version,
                "has_data": bool(has_data),
                "raw_since_ns": view.selection.raw_since_ns(),
                "panels": dashboard_data(view, request.query_params.get("compare") == "previous"),
                # What the page's filters offer, as /api/filters and /api/filters?key=<group_by> answer.
                "choices": {
                    "filters": filter_options(conn, people=view.people, email=only_email),
                    "group": attribute_values(conn, view.group_key, people=view.people, email=only_email),
                },
                "models": models_in_order_seen(conn, email=only_email),
            }

        return await query(request, work)

    async def api_panel(request: Request) -> Response:
        panel = PANELS_BY_ID.get(request.path_params["panel_id"])
        if panel is None:
            return JSONResponse({"error": "no such panel"}, status_code=404)
        if request.query_params.get("format") == "csv":
            try:
                text = await store.read(lambda: to_csv(panel.data(view_of(request))))
            except (QueryError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return Response(
                text,
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{panel.id}.csv"'},
            )
        return await query(
            request,
            lambda: {
                **panel_meta(panel),
                "data": panel.data(view_of(request)),
            },
        )

    async def api_filters(request: Request) -> Response:
        # At most FILTER_CHOICES of each list, the most common first; ?q= finds the others.
        key, q = request.query_params.get("key"), request.query_params.get("q")
        email = reader_of(request).only_email

        def people() -> People:
            return People(store.reader(), book.current())

        if key:
            return await query(
                request, lambda: attribute_values(store.reader(), key, q, people=people(), email=email)
            )
        return await query(request, lambda: filter_options(store.reader(), q, people=people(), email=email))

    async def api_session(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        reader = reader_of(request)

        def work() -> dict[str, Any]:
            conn = store.reader()
            only = reader.scoped(Filters(attrs=(("session.id", session_id),)))
            aliases = book.current()
            totals = summary(conn, only, store.family_cache, aliases=aliases)
            selection = Selection(conn, only, store.family_cache)
            sessions = selection.sessions(limit=1)
            session = sessions[0] if sessions else None
            if session is not None:  # who, by name (people.py); user_id stays the id
                session["user_name"] = People(conn, aliases).name(session["user_id"])
                # its team, or whatever the dashboard groups by
                group_key = config.dashboard_group_by
                session["group_key"] = group_key
                session["group_values"] = [
                    row[0]
                    for row in conn.execute(
                        queries.SESSION_ATTRIBUTE_VALUES, (queries.json_path(group_key), session_id)
                    )
                ]
            raw_since = selection.raw_since_ns()
            span = conn.execute(queries.SESSION_SPAN, (session_id,)).fetchone()
            traces, traces_cut = session_traces(conn, session_id, email=reader.only_email)
            return {
                "session_id": session_id,
                "summary": totals,
                "session": session,
                "timeline": session_timeline(conn, session_id, email=reader.only_email),
                # Its spans, trace by trace (each prompt is one), each span after its parent.
                "traces": traces,
                "traces_truncated": traces_cut,
                # Its raw points and events from raw_since_ns on only: its timeline and numbers miss the rest.
                "raw_since_ns": raw_since,
                "pruned": bool(raw_since and span and span[0] < raw_since),
            }

        return await query(request, work)

    async def api_events(request: Request) -> Response:
        # Events whole, as they arrived: one session's (?session=), or a range's; at most ?limit= of them.
        params = request.query_params
        session_id = params.get("session")
        try:
            limit = max(1, min(int(params.get("limit", "1000")), MAX_EVENTS))
        except ValueError:
            return JSONResponse({"error": "limit must be a whole number"}, status_code=400)

        def work() -> dict[str, Any]:
            filters = filters_from(request)
            found = stored_events(
                store.reader(),
                session_id,
                filters.since_ns,
                filters.until_ns,
                limit,
                email=reader_of(request).only_email,
            )
            return {
                "events": [
                    {"time_ns": e.time_ns, "name": e.name, "attributes": e.attributes, "body": e.body}
                    for e in found
                ],
                "truncated": len(found) == limit,
            }

        return await query(request, work)

    async def live(request: Request) -> StreamingResponse:
        # Each stream waits on the store (no polling): a commit wakes them all. Starlette ends the stream
        # when its client goes away (or, under an ASGI server that does not say so, at its next heartbeat);
        # a server that stops ends it after its grace period, and the page connects again when it is back.
        async def stream() -> AsyncIterator[str]:
            loop = asyncio.get_running_loop()
            seen = store.version
            yield _event("hello", seen)
            sent_at = float("-inf")
            while True:
                version = await store.changed(seen, LIVE_HEARTBEAT_S)
                if version == seen:
                    yield _event("ping", seen)  # keeps proxies from closing it; the page sees it is alive
                    continue
                # Commits within LIVE_MIN_INTERVAL_S of the last event are announced as one, after it.
                await asyncio.sleep(sent_at + LIVE_MIN_INTERVAL_S - loop.time())
                seen = store.version
                yield _event("data", seen)
                sent_at = loop.time()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def metrics(request: Request) -> Response:
        from ..prometheus import CONTENT_TYPE_LATEST, exposition

        body = await store.read(
            lambda: exposition(
                store.reader(),
                config.metrics_labels,
                config.metrics_session_labels,
                people=People(store.reader(), book.current()),
            )
        )
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def page(name: str):  # noqa: ANN202 - a Starlette endpoint
        async def endpoint(request: Request) -> FileResponse:
            return FileResponse(str(STATIC / name), headers=_SECURITY_HEADERS)

        return endpoint

    middleware = [Middleware(HostCheck, allowed=allowed_names(config.host, config.allowed_hosts))]
    extra_routes: list[Route] = []
    sign_in = None
    if gate is not None:
        web_gate = WebGate(gate, WebAccess.from_config(config))
        sign_in = SignIn(web_gate)
        middleware.append(Middleware(WebGateMiddleware, web_gate=web_gate))
        extra_routes = [*sign_in.routes(page), *Admin(sign_in).routes(page)]
    app = Starlette(
        routes=[
            *extra_routes,
            Route("/", page("index.html")),
            Route("/favicon.ico", lambda request: Response(status_code=204)),
            Route("/session/{session_id:path}", page("session.html")),
            Route("/api/health", health),
            Route("/api/summary", api_summary),
            Route("/api/config", api_config),
            Route("/api/panels", api_panels),
            Route("/api/panels/{panel_id}", api_panel),
            Route("/api/dashboard", api_dashboard),
            Route("/api/filters", api_filters),
            Route("/api/sessions/{session_id:path}", api_session),
            Route("/api/events", api_events),
            Route("/api/live", live),
            Route("/metrics", metrics),
            *status_routes(store, query),
            *alert_routes(alerts, page),
            Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
        ],
        # Only this server's own Host names are answered (DNS rebinding); /api/health included. Then, with a
        # gate, only readers it admits.
        middleware=middleware,
    )
    app.state.sign_in = sign_in  # closed by whoever serves the app
    app.state.web_gate = sign_in.web_gate if sign_in else None
    return app


# The pages load only their own scripts and styles; nothing inline, nothing from elsewhere.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
