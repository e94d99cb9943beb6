"""The run's TLS client side, for every protocol: one context per run
settings (built once), the name the certificate is checked against, and
new sessions as the run's TLS mode wants them (implicit TLS, RFC 8314
§3.1: the handshake right after connect)."""

from __future__ import annotations

import ssl
from functools import lru_cache
from typing import TypeVar

from conformance.core.config import RunConfig
from conformance.core.driver import Session
from conformance.core.errors import ConfigError
from conformance.core.tls import TlsError, TlsSettings, client_context
from conformance.core.transcript import Transcript

S = TypeVar("S", bound=Session)


@lru_cache(maxsize=8)
def _context(settings: TlsSettings) -> ssl.SSLContext:
    return client_context(settings)


def context_for(config: RunConfig) -> ssl.SSLContext:
    """The run's client context, built once; ConfigError for an unreadable
    CA or client certificate (names the file)."""
    try:
        return _context(config.tls_settings())
    except TlsError as exc:
        raise ConfigError(f"tls: {exc}") from None


def server_name(config: RunConfig, host: str) -> str:
    return config.tls_server_name or host


def connect(
    session_class: type[S],
    name: str,
    host: str,
    port: int,
    transcript: Transcript,
    config: RunConfig,
    *,
    timeout: float,
) -> S:
    """A new session of `session_class`; implicit TLS is done here.
    ConnectError on failure."""
    tls = (context_for(config), server_name(config, host)) if config.tls == "implicit" else None
    return session_class.connect(
        name,
        host,
        port,
        transcript,
        timeout=timeout,
        max_line_octets=config.max_line_octets,
        max_body_octets=config.max_body_octets,
        redact=config.redact,
        tls=tls,
    )
