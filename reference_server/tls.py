"""TLS for the reference server: stdlib :mod:`ssl` contexts (RFC 8314 section 4).

Both STLS (RFC 2595) and the implicit-TLS listener (RFC 8314 section 3)
use one server context: TLS 1.2 or later, the certificate chain and key
from PEM files.  No client certificate is requested (RFC 8314 section 4.2:
not unless certificates map to users, which they do not here).
"""

from __future__ import annotations

import ssl
from pathlib import Path

#: RFC 8314 section 4: TLS 1.2 or later.
MINIMUM_TLS_VERSION = ssl.TLSVersion.TLSv1_2
#: Seconds a client gets to finish the handshake (Cyrus uses 180 s for pop3s;
#: a shorter bound keeps a silent peer from holding a connection).
TLS_HANDSHAKE_TIMEOUT_SECONDS = 30.0


class TlsConfigurationError(ValueError):
    """A certificate or key that cannot be used; printed as one line."""


def server_context(certificate: Path | str, key: Path | str | None = None) -> ssl.SSLContext:
    """A server context from a PEM certificate chain and its PEM private key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_TLS_VERSION
    for label, path in (("--tls-cert", certificate), ("--tls-key", key)):
        if path is not None and not Path(path).is_file():
            raise TlsConfigurationError(f"{label} {str(path)!r} does not exist")
    try:
        context.load_cert_chain(str(certificate), None if key is None else str(key))
    except ssl.SSLError as problem:
        raise TlsConfigurationError(
            f"cannot use --tls-cert {str(certificate)!r} / --tls-key {str(key)!r}: "
            f"{problem.reason or problem}"
        ) from None
    except OSError as problem:
        raise TlsConfigurationError(
            f"cannot read --tls-cert/--tls-key: {problem.strerror or problem}"
        ) from None
    return context


def describe(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> tuple[str, str]:
    """(version, cipher) of an established TLS connection, for the log."""
    if ssl_object is None:
        return "", ""
    cipher = ssl_object.cipher()
    return ssl_object.version() or "", cipher[0] if cipher else ""
