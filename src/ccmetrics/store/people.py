"""Who a user is, in words a person can read: the name shown wherever a ``user.id`` appears.

Claude Code names a user by a 64-character hex hash. The name shown for it is, in this order:

1. the ``user.email`` its data carries: sent by Claude Code, or set by the ingest token it was sent with;
2. a ``user.name`` resource attribute (``ccmetrics setup`` adds one, from ``git config user.email``);
3. an alias an admin set (``ccmetrics user alias``, kept in ``access.db``);
4. the id's first characters, as ``a1b2c3d4e5…``.

Only what is shown changes: filters, keys and ``/metrics`` labels keep the id itself, so a name that changes
(an alias set later) never splits anything in two.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from . import queries

SHORT_ID_CHARS = 10
NO_ALIASES: Mapping[str, str] = MappingProxyType({})


class NameSource(StrEnum):
    """Where a name shown for a user came from."""

    EMAIL = "user.email"
    USER_NAME = "user.name"
    ALIAS = "alias"
    SHORT_ID = "user.id"


@dataclass(frozen=True, slots=True)
class Sent:
    """What a user's own data says of them."""

    email: str | None = None
    user_name: str | None = None


@dataclass(frozen=True, slots=True)
class Name:
    text: str
    source: NameSource


def short_id(user_id: str) -> str:
    """The first characters of an id, marked as cut; an id hardly longer is shown whole."""
    return user_id if len(user_id) <= SHORT_ID_CHARS + 2 else user_id[:SHORT_ID_CHARS] + "…"


def resolve(user_id: str, sent: Sent, alias: str | None) -> Name:
    """The name shown for ``user_id``: its email, else its user.name, else its alias, else its short id."""
    if sent.email:
        return Name(sent.email, NameSource.EMAIL)
    if sent.user_name:
        return Name(sent.user_name, NameSource.USER_NAME)
    if alias:
        return Name(alias, NameSource.ALIAS)
    return Name(short_id(user_id), NameSource.SHORT_ID)


class People:
    """The names of users, for one request: what their data says is read from the store once per id, the
    aliases are those the server holds (``access.aliases.AliasBook``)."""

    def __init__(self, conn: sqlite3.Connection, aliases: Mapping[str, str] = NO_ALIASES) -> None:
        self.conn = conn
        self.aliases = aliases
        self._names: dict[str, Name] = {}

    def names(self, user_ids: Iterable[str | None]) -> dict[str, str]:
        """The name of each id (ids read together, in one statement; None is left out)."""
        return {user_id: name.text for user_id, name in self.resolved(user_ids).items()}

    def name(self, user_id: str | None) -> str | None:
        """The name of one id; None for no id."""
        return None if user_id is None else self.names([user_id])[user_id]

    def resolved(self, user_ids: Iterable[str | None]) -> dict[str, Name]:
        """Each id's name and where it came from."""
        wanted = {str(u) for u in user_ids if u is not None}
        missing = sorted(wanted - self._names.keys())
        if missing:
            sent = {
                user_id: Sent(email or None, user_name or None)
                for user_id, email, user_name in self.conn.execute(queries.USERS_SENT, (json.dumps(missing),))
            }
            for user_id in missing:
                self._names[user_id] = resolve(user_id, sent.get(user_id, Sent()), self.aliases.get(user_id))
        return {user_id: self._names[user_id] for user_id in wanted}

    def aliased_matching(self, text: str) -> list[str]:
        """The ids whose alias contains ``text``, ignoring case: a search by name finds them too."""
        text = text.lower()
        return [user_id for user_id, alias in self.aliases.items() if text in alias.lower()]
