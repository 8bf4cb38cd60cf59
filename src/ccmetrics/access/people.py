"""People who read the dashboard: their roles, names and passwords.

Passwords are kept only as argon2id hashes (argon2-cffi's ``PasswordHasher``). A person without a password
signs in only through the single sign-on proxy (``--auth-proxy-header``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from .tokens import MAX_LABEL_CHARS

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024  # a longer one is refused before it is hashed: hashing costs by its length too

_HASHER = PasswordHasher()
# Verified when the name is unknown, so that an unknown name and a wrong password take the same time.
_DUMMY_HASH = _HASHER.hash("ccmetrics: no such person")


class WebRole(StrEnum):
    ADMIN = "admin"  # everything, and (later) managing tokens and people
    VIEWER = "viewer"  # every team's data
    MEMBER = "member"  # only the data of their own user.email

    @property
    def reads_everyone(self) -> bool:
        return self is not WebRole.MEMBER


class PersonError(ValueError):
    """A person's name, role, email or password cannot be used."""


@dataclass(frozen=True, slots=True)
class Person:
    """A person as the server holds them in memory: never their password's hash."""

    name: str
    role: WebRole
    email: str | None  # the user.email whose data is theirs (a member sees only that)
    has_password: bool
    created_ns: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_person_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_LABEL_CHARS or not name.isprintable():
        raise PersonError(f"a person's name is 1 to {MAX_LABEL_CHARS} printable characters")
    return name


def email_for(name: str, role: WebRole, email: str | None) -> str | None:
    """The user.email a person's data carries: ``--email``, else the name when it is an email. A member
    needs one: it is all they see."""
    if email is not None:
        email = email.strip()
        if not email or len(email) > MAX_LABEL_CHARS or not email.isprintable():
            raise PersonError(f"--email is 1 to {MAX_LABEL_CHARS} printable characters")
        return email
    if "@" in name:
        return name
    if role is WebRole.MEMBER:
        raise PersonError(
            f"a member sees only the data of their own user.email: give it with --email (the name {name!r} "
            "is not an email)"
        )
    return None


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise PersonError(f"a password has at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise PersonError(f"a password has at most {MAX_PASSWORD_CHARS} characters")
    return _HASHER.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` is the one hashed. Slow on purpose (tens of milliseconds): call it off the event
    loop. With no hash (unknown name, or a person without a password), a dummy one is verified all the
    same."""
    if len(password) > MAX_PASSWORD_CHARS:
        password = ""
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, ValueError):  # ValueError: not a hash argon2 can read
        return False
