"""Safe by default: a server that other machines can reach does not start without a way to tell senders
apart, unless told to with ``--insecure-no-auth``."""

from __future__ import annotations

import ipaddress

from ..config import Config
from .gate import Gate
from .store import AccessStore


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach an address. A host name other than ``localhost`` counts as
    reachable: what it resolves to may change."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def refusal(host: str, data_dir: str, *, has_credentials: bool, insecure_no_auth: bool) -> str | None:
    """Why ``serve`` must not start on ``host``, naming what fixes it; ``None`` when it may."""
    if is_loopback(host) or has_credentials or insecure_no_auth:
        return None
    return (
        f"refusing to listen on {host} without authentication: anyone who can reach this machine could "
        "send data under any name and read everyone's. First create a token that may send data, and a "
        "person who may sign in:\n"
        f"  ccmetrics token create NAME --role ingest --user EMAIL --data-dir {data_dir}\n"
        f"  ccmetrics user add NAME --role admin --data-dir {data_dir}\n"
        "and give the token to Claude Code with `ccmetrics setup --token TOKEN`. Or listen on 127.0.0.1 "
        "only, or, on a network you trust, start with --insecure-no-auth."
    )


def gate_for(config: Config) -> Gate:
    """The gate of a server with these settings; raises ``Unprotected`` when it must not start at all."""
    access = AccessStore(config.access_path, busy_timeout_ms=100)  # read on the event loop: never wait long
    why = refusal(
        config.host,
        str(config.data_dir),
        has_credentials=access.has_credentials(),
        insecure_no_auth=config.insecure_no_auth,
    )
    if why is not None:
        access.close()
        raise Unprotected(why)
    # Reachable from other machines, ingest stays closed even if every token is revoked later.
    return Gate(access, always_required=not is_loopback(config.host) and not config.insecure_no_auth)


class Unprotected(Exception):
    """``serve`` would accept anyone's data from other machines."""
