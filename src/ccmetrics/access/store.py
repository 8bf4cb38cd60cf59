"""The access file (``access.db`` in the data directory): tokens, people, their sign-in sessions and the
names an admin gives users, kept apart from the telemetry so that the CLI can change them while a server
runs, and a server can notice at the cost of one pragma."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .people import Person, PersonError, WebRole, check_person_name, email_for, hash_password
from .sessions import WebSession
from .tokens import Principal, Role, TokenError, check_label, check_name, digest, new_token

# Each runs once, in order, recorded in PRAGMA user_version. Only a token's digest is kept, never the token.
MIGRATIONS = (
    """
    CREATE TABLE tokens (
        name TEXT PRIMARY KEY,
        digest BLOB NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('ingest', 'viewer', 'admin')),
        user TEXT,
        team TEXT,
        created_ns INTEGER NOT NULL,
        expires_ns INTEGER,
        last_used_ns INTEGER
    ) STRICT
    """,
    # People, and their sessions: only a password's argon2 hash, only a session cookie's SHA-256.
    """
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('viewer', 'admin', 'member')),
        email TEXT,
        password_hash TEXT,
        created_ns INTEGER NOT NULL,
        CHECK (role != 'member' OR email IS NOT NULL)
    ) STRICT;
    CREATE TABLE web_sessions (
        digest BLOB PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        expires_ns INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX web_sessions_by_user ON web_sessions (user);
    """,
    # A readable name for a user.id that sends neither an email nor a user.name (see store/people.py).
    """
    CREATE TABLE aliases (
        user_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        set_ns INTEGER NOT NULL
    ) STRICT
    """,
)
MAX_USER_ID_CHARS = 256  # Claude Code's user.id is 64 hex characters
MAX_ALIAS_CHARS = 256


class UnknownToken(TokenError):
    pass


class UnknownPerson(PersonError):
    pass


class AliasError(ValueError):
    """An alias that cannot be set or removed."""


def check_alias(user_id: str, name: str | None = None) -> tuple[str, str | None]:
    """A user.id and its alias as they are stored: trimmed, printable, not too long."""
    user_id = user_id.strip()
    if not user_id or len(user_id) > MAX_USER_ID_CHARS or not user_id.isprintable():
        raise AliasError(f"a user.id is 1 to {MAX_USER_ID_CHARS} printable characters")
    if name is not None:
        name = name.strip()
        if not name or len(name) > MAX_ALIAS_CHARS or not name.isprintable():
            raise AliasError(f"an alias is 1 to {MAX_ALIAS_CHARS} printable characters")
    return user_id, name


@dataclass(frozen=True)
class TokenRecord:
    """A token as ``token list`` shows it: everything but the secret, which is nowhere to be shown."""

    name: str
    role: str
    user: str | None
    team: str | None
    created_ns: int
    expires_ns: int | None
    last_used_ns: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AccessStore:
    def __init__(self, path: Path, *, create: bool = True, busy_timeout_ms: int = 5000) -> None:
        """Open (and with ``create``, make) the access file. Raises ``FileNotFoundError`` for a missing one
        otherwise."""
        if not path.exists():
            if not create:
                raise FileNotFoundError(f"no access file at {path}: no token was ever created there")
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # readable by its owner only
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")  # a revocation, once answered, stays
        self.conn.execute("PRAGMA secure_delete = ON")  # a removed person or alias leaves no bytes behind
        self._migrate()

    def _migrate(self) -> None:
        with self._transaction():
            (version,) = self.conn.execute("PRAGMA user_version").fetchone()
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path} is newer (version {version}) than this ccmetrics understands"
                )
            for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in sql.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def create(
        self,
        name: str,
        role: Role,
        *,
        user: str | None = None,
        team: str | None = None,
        expires_ns: int | None = None,
        now_ns: int | None = None,
    ) -> str:
        """Store a new token's digest and return the token: the only time it is ever seen."""
        name = check_name(name)
        token = new_token()
        try:
            with self._transaction():
                self.conn.execute(
                    "INSERT INTO tokens (name, digest, role, user, team, created_ns, expires_ns)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        digest(token),
                        role.value,
                        check_label("user", user),
                        check_label("team", team),
                        now_ns if now_ns is not None else time.time_ns(),
                        expires_ns,
                    ),
                )
        except sqlite3.IntegrityError:
            raise TokenError(
                f"a token named {name!r} exists already: revoke it first, or pick another name"
            ) from None
        return token

    def revoke(self, name: str) -> None:
        with self._transaction():
            gone = self.conn.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount
        if not gone:
            raise UnknownToken(f"no token named {name!r}: `ccmetrics token list` shows their names")

    def tokens(self) -> list[TokenRecord]:
        rows = self.conn.execute(
            "SELECT name, role, user, team, created_ns, expires_ns, last_used_ns FROM tokens"
            " ORDER BY created_ns, name"
        ).fetchall()
        return [TokenRecord(*row) for row in rows]

    def principals(self) -> dict[bytes, Principal]:
        """Every token's digest and what it grants, expired ones included (the gate tells those apart)."""
        rows = self.conn.execute("SELECT digest, name, role, user, team, expires_ns FROM tokens").fetchall()
        return {row[0]: Principal(row[1], Role(row[2]), row[3], row[4], row[5]) for row in rows}

    def set_alias(self, user_id: str, name: str, *, now_ns: int | None = None) -> None:
        """Call ``user_id`` ``name`` wherever it sends no email or user.name (replacing an alias it had)."""
        user_id, alias = check_alias(user_id, name)
        with self._transaction():
            self.conn.execute(
                "INSERT INTO aliases (user_id, name, set_ns) VALUES (?, ?, ?) ON CONFLICT (user_id) "
                "DO UPDATE SET name = excluded.name, set_ns = excluded.set_ns",
                (user_id, alias, now_ns if now_ns is not None else time.time_ns()),
            )

    def remove_alias(self, user_id: str) -> None:
        user_id, _ = check_alias(user_id)
        with self._transaction():
            gone = self.conn.execute("DELETE FROM aliases WHERE user_id = ?", (user_id,)).rowcount
        if not gone:
            raise AliasError(f"{user_id!r} has no alias: `ccmetrics user aliases` lists them")

    def aliases(self) -> dict[str, str]:
        """Every alias, by user.id."""
        return dict(self.conn.execute("SELECT user_id, name FROM aliases ORDER BY name, user_id").fetchall())

    def has_credentials(self) -> bool:
        """Whether anyone can be told apart from anyone else: a token or a person exists."""
        (found,) = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM tokens) OR EXISTS (SELECT 1 FROM users)"
        ).fetchone()
        return bool(found)

    # --- people ---------------------------------------------------------------------------------------

    def add_person(
        self,
        name: str,
        role: WebRole,
        *,
        email: str | None = None,
        password: str | None = None,
        now_ns: int | None = None,
    ) -> Person:
        """Add a person; without ``password`` they sign in only through the single sign-on proxy."""
        name = check_person_name(name)
        email = email_for(name, role, email)
        password_hash = hash_password(password) if password is not None else None
        created_ns = now_ns if now_ns is not None else time.time_ns()
        try:
            with self._transaction():
                self.conn.execute(
                    "INSERT INTO users (name, role, email, password_hash, created_ns) VALUES (?, ?, ?, ?, ?)",
                    (name, role.value, email, password_hash, created_ns),
                )
        except sqlite3.IntegrityError:
            raise PersonError(f"a person named {name!r} exists already: remove them first") from None
        return Person(name, role, email, password_hash is not None, created_ns)

    def remove_person(self, name: str) -> None:
        """Remove a person and end every session of theirs."""
        with self._transaction():
            self.conn.execute("DELETE FROM web_sessions WHERE user = ?", (name,))
            gone = self.conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount
        if not gone:
            raise UnknownPerson(f"no person named {name!r}: `ccmetrics user list` shows their names")

    def set_password(self, name: str, password: str | None) -> None:
        """A new password (``None``: none, sign-in through the proxy only); ends every session of theirs."""
        password_hash = hash_password(password) if password is not None else None
        with self._transaction():
            changed = self.conn.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)
            ).rowcount
            self.conn.execute("DELETE FROM web_sessions WHERE user = ?", (name,))
        if not changed:
            raise UnknownPerson(f"no person named {name!r}: `ccmetrics user list` shows their names")

    def people(self) -> list[Person]:
        rows = self.conn.execute(
            "SELECT name, role, email, password_hash IS NOT NULL, created_ns FROM users"
            " ORDER BY created_ns, name"
        ).fetchall()
        return [
            Person(name, WebRole(role), email, bool(has), created) for name, role, email, has, created in rows
        ]

    def person(self, name: str) -> Person | None:
        row = self.conn.execute(
            "SELECT name, role, email, password_hash IS NOT NULL, created_ns FROM users WHERE name = ?",
            (name,),
        ).fetchone()
        return None if row is None else Person(row[0], WebRole(row[1]), row[2], bool(row[3]), row[4])

    def password_hash(self, name: str) -> str | None:
        """A person's password hash, read only to verify a sign-in (off the event loop)."""
        row = self.conn.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    # --- sign-in sessions -----------------------------------------------------------------------------

    def add_session(self, session: WebSession) -> None:
        """Store a new session, and forget the expired ones (sessions are only ever added here)."""
        with self._transaction():
            self.conn.execute("DELETE FROM web_sessions WHERE expires_ns <= ?", (session.created_ns,))
            self.conn.execute(
                "INSERT INTO web_sessions (digest, user, csrf_token, created_ns, expires_ns)"
                " VALUES (?, ?, ?, ?, ?)",
                (session.digest, session.user, session.csrf_token, session.created_ns, session.expires_ns),
            )

    def end_session(self, session_digest: bytes) -> None:
        with self._transaction():
            self.conn.execute("DELETE FROM web_sessions WHERE digest = ?", (session_digest,))

    def sessions(self) -> dict[bytes, WebSession]:
        rows = self.conn.execute(
            "SELECT digest, user, csrf_token, created_ns, expires_ns FROM web_sessions"
        ).fetchall()
        return {row[0]: WebSession(*row) for row in rows}

    def data_version(self) -> int:
        """Changes whenever another connection (the CLI) has committed to the file: cheap enough to ask
        every second."""
        (version,) = self.conn.execute("PRAGMA data_version").fetchone()
        return int(version)

    def record_use(self, last_used: Mapping[bytes, int]) -> None:
        """When tokens (by digest) were last used, written now and then by the server, never per request."""
        with self._transaction():
            self.conn.executemany(
                "UPDATE tokens SET last_used_ns = max(coalesce(last_used_ns, 0), ?) WHERE digest = ?",
                [(at, token_digest) for token_digest, at in last_used.items()],
            )

    def close(self) -> None:
        self.conn.close()
