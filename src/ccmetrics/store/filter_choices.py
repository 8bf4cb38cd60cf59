"""What there is to filter on: users, models, attribute keys, and the values of a key."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from . import queries
from .people import People

USER_ID = "user.id"
FILTER_CHOICES = 100  # users, models, keys, and values of a key that /api/filters lists at most


OWN_KEYS = 8  # room for ccmetrics' own attribute keys, left out of the keys offered


def _most_common(
    conn: sqlite3.Connection, sql: str, q: str | None, limit: int, **params: Any
) -> tuple[list[tuple[Any, ...]], bool]:
    """Up to ``limit`` rows of a query ordered by how common they are, and whether there were more."""
    rows = conn.execute(sql, {"text": q.lower() if q else None, "limit": limit + 1, **params}).fetchall()
    return rows[:limit], len(rows) > limit


def filter_options(
    conn: sqlite3.Connection,
    q: str | None = None,
    limit: int = FILTER_CHOICES,
    people: People | None = None,
    *,
    email: str | None = None,
) -> dict[str, Any]:
    """Users, models and attribute keys to filter on: at most ``limit`` of each, the most common first (in
    the most families), only those containing ``q`` when given (a user's id, email, user.name or alias).
    Each user comes with the name shown for it (``people``); the filter takes its id. ``*_truncated`` says
    that a list was cut (``truncated``: any of them): search with ``q`` for the rest. With ``email``, only
    what the data of that user.email holds (what a member may see)."""
    people = people or People(conn)
    aliased = json.dumps(people.aliased_matching(q) if q else [])
    users, users_cut = _most_common(conn, queries.USERS_TO_FILTER, q, limit, aliased=aliased, email=email)
    models, models_cut = _most_common(conn, queries.MODELS_TO_FILTER, q, limit, email=email)
    # ccmetrics' own labels (the doctor's test export's ccmetrics.probe_id and ccmetrics.test, an import's
    # ccmetrics.source) are not offered: left out here, as a condition in SQL costs more than the query
    rows, more = _most_common(conn, queries.KEYS_TO_FILTER, q, limit + OWN_KEYS, email=email)
    rows = [row for row in rows if not str(row[0]).startswith("ccmetrics.")]
    # Where sessions ran: offered once a transcript told of one, whichever source counts its usage
    places = [
        (key,)
        for key, column in queries.SESSION_PLACES.items()
        if (not q or q.lower() in key)
        and (key,) not in rows
        and conn.execute(f"SELECT 1 FROM transcript_sessions WHERE {column} IS NOT NULL LIMIT 1").fetchone()
    ]
    rows = places + rows
    keys, keys_cut = rows[:limit], more or len(rows) > limit
    names = people.names(user for user, _ in users)
    return {
        "users": [{"id": user, "email": email, "name": names[user]} for user, email in users],
        "models": [row[0] for row in models],
        "keys": [row[0] for row in keys],
        "truncated": users_cut or models_cut or keys_cut,
        "users_truncated": users_cut,
        "models_truncated": models_cut,
        "keys_truncated": keys_cut,
    }


def models_in_order_seen(conn: sqlite3.Connection, *, email: str | None = None) -> list[str]:
    """Models in the order the store first saw them (with ``email``, that user.email's): the page colours
    them in this order, so that a model has one colour in every chart and every view."""
    return [row[0] for row in conn.execute(queries.MODELS_IN_ORDER_SEEN, {"email": email})]


def attribute_values(
    conn: sqlite3.Connection,
    key: str,
    q: str | None = None,
    limit: int = FILTER_CHOICES,
    people: People | None = None,
    *,
    email: str | None = None,
) -> dict[str, Any]:
    """Values of an attribute key: at most ``limit``, the most common first, only those containing ``q``
    when given; ``truncated`` says there were more. The values of ``user.id`` come with their names
    (``names``, by id). With ``email``, only those of that user.email's data."""
    if key in queries.SESSION_PLACES:  # from what transcripts told of every session, not only their own usage
        sql = queries.PLACE_VALUES_TO_FILTER.format(column=queries.SESSION_PLACES[key])
        rows, cut = _most_common(conn, sql, q, limit, email=email)
    else:
        rows, cut = _most_common(conn, queries.VALUES_TO_FILTER, q, limit, key=key, email=email)
    values = [row[0] for row in rows]
    answer: dict[str, Any] = {"key": key, "values": values, "truncated": cut}
    if key == USER_ID:
        answer["names"] = (people or People(conn)).names(values)
    return answer
