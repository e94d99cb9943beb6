"""The run's TLS client side, for every protocol: one context per run
settings (built once), and the name the certificate is checked against."""

from __future__ import annotations

import ssl
from functools import lru_cache

from conformance.core.config import RunConfig
from conformance.core.errors import ConfigError
from conformance.core.tls import TlsError, TlsSettings, client_context


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
