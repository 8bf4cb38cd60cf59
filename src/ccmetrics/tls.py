"""TLS for every listener: one certificate chain and private key (``--tls-cert``, ``--tls-key``), read once
as the server starts, for uvicorn's two HTTP listeners (an ``ssl.SSLContext``) and for gRPC (its own server
credentials, from the same PEM bytes).

A mistake in either file is a :class:`TlsError` with the path and what is wrong, found before any listener
opens.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc


class TlsError(ValueError):
    """The TLS settings cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class Certificate:
    cert_path: Path
    cert_pem: bytes
    key_pem: bytes
    context: ssl.SSLContext  # for the HTTP listeners

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key_pem, self.cert_pem)])


def load(cert_path: Path | None, key_path: Path | None) -> Certificate | None:
    """The certificate to serve, or None when neither setting is given (plain HTTP and gRPC)."""
    if cert_path is None and key_path is None:
        return None
    if cert_path is None or key_path is None:
        given, missing = ("--tls-cert", "--tls-key") if key_path is None else ("--tls-key", "--tls-cert")
        raise TlsError(f"{given} needs {missing} too: TLS takes a certificate and its private key")
    cert_pem = _read(cert_path, "--tls-cert", b"CERTIFICATE-----")
    key_pem = _read(key_path, "--tls-key", b"PRIVATE KEY-----")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.set_alpn_protocols(["http/1.1"])  # uvicorn speaks HTTP/1.1 only
    try:
        # No password prompt on the terminal: an encrypted key fails here instead.
        context.load_cert_chain(cert_path, key_path, password=_no_password)
    except OSError as exc:  # ssl.SSLError is one
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise TlsError(
            f"cannot use --tls-cert {cert_path} with --tls-key {key_path}: {reason} "
            "(the key must belong to the certificate and not be encrypted)"
        ) from None
    return Certificate(cert_path, cert_pem, key_pem, context)


def _read(path: Path, flag: str, marker: bytes) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
    if marker not in data:
        kind = "certificate" if flag == "--tls-cert" else "private key"
        raise TlsError(f"{flag} {path} holds no PEM {kind} ('-----BEGIN ...{marker.decode()}')")
    return data


def _no_password() -> str:
    return ""
