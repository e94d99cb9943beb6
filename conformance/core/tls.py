"""TLS for the sessions to the target (RFC 8314 implicit TLS, RFC 2595 STLS).

Only the stdlib `ssl` module: TLS 1.2 or later (RFC 8314 §4), certificate
verification on by default against the system store or `--tls-ca`, and a
one-line error that names what failed (expired certificate, name mismatch,
unknown CA, no TLS at all). The engine and the probe call `client_context`
once per run and `handshake` per session; `describe_peer` fills the
report's target fingerprint."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: RFC 8314 §4: TLS 1.2 is the oldest version a client should accept.
MINIMUM_TLS_VERSION = ssl.TLSVersion.TLSv1_2


class TlsError(Exception):
    """The handshake or the certificate check failed; the message is one
    line naming the cause. `peer_ended` is True when the server ended the
    handshake itself (EOF, reset, a TLS alert), False when it failed some
    other way (plaintext where TLS records belong, a bad certificate, a
    stall)."""

    def __init__(self, message: str, *, peer_ended: bool = False, deployment: bool = False) -> None:
        super().__init__(message)
        self.peer_ended = peer_ended
        # The TLS set-up of the deployment failed, not the protocol: our
        # client does not accept the certificate, or the server aborted the
        # handshake with an alert (no shared version or cipher, a TLS library
        # or key problem). The suite cannot judge the exchange then: ERROR,
        # not FAIL (smtp-notes §7 item 32).
        self.deployment = deployment


@dataclass(frozen=True)
class TlsSettings:
    """How the suite speaks TLS to the target (`tls:` in the target config)."""

    mode: str = "plain"  # plain | stls | implicit
    ca: str | None = None  # PEM file of trusted CAs; None: the system store
    verify: bool = True  # check the certificate chain and the name
    server_name: str | None = None  # name to verify and send as SNI; None: the host
    client_cert: str | None = None  # PEM with certificate and key, if the target wants one


@dataclass(frozen=True)
class PeerInfo:
    """What the handshake showed, for the target fingerprint."""

    version: str
    cipher: str
    subject: str | None
    issuer: str | None
    not_after: str | None  # ISO 8601 UTC


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """The run's client context; TlsError names an unreadable CA or client
    certificate file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = MINIMUM_TLS_VERSION
    # Debian's Python sets OP_IGNORE_UNEXPECTED_EOF by default, which makes a
    # TCP close without close_notify read as a clean EOF: the RFC 8314 §3.4
    # check could then never fail. The driver must see the difference.
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    if settings.verify:
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
        try:
            if settings.ca:
                context.load_verify_locations(cafile=settings.ca)
            else:
                context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"cannot load the CA file {settings.ca}: {_reason(exc)}") from None
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.client_cert:
        try:
            context.load_cert_chain(settings.client_cert)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(
                f"cannot load the client certificate {settings.client_cert}: {_reason(exc)}"
            ) from None
    return context


def handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    server_name: str,
    deadline: float,
) -> ssl.SSLSocket:
    """Wrap `sock` and complete the client handshake before `deadline`
    (time.monotonic()); TlsError with the cause on failure. The plain
    socket is unusable afterwards either way."""
    remaining = max(deadline - time.monotonic(), 0.01)
    sock.settimeout(remaining)
    try:
        wrapped = context.wrap_socket(
            sock,
            server_hostname=server_name,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=False,  # the driver tells close_notify from a bare close
        )
        wrapped.do_handshake()
    except ssl.SSLCertVerificationError as exc:
        raise TlsError(
            f"certificate not accepted: {_verification_reason(exc)}", deployment=True
        ) from None
    except TimeoutError:
        raise TlsError(f"no TLS handshake within {remaining:.1f} s") from None
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        raise TlsError(
            "TLS handshake failed: the server closed the connection", peer_ended=True
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "UNEXPECTED_EOF_WHILE_READING":  # Debian 12's Python 3.11.2
            raise TlsError(
                "TLS handshake failed: the server closed the connection", peer_ended=True
            ) from None
        alert = "ALERT" in str(exc.reason or "").upper()
        raise TlsError(
            f"TLS handshake failed: {_reason(exc)}", peer_ended=alert, deployment=alert
        ) from None
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        raise TlsError(
            "TLS handshake failed: connection reset by the server", peer_ended=True
        ) from None
    except OSError as exc:
        raise TlsError(f"TLS handshake failed: {exc.strerror or exc}") from None
    return wrapped


def _verification_reason(exc: ssl.SSLCertVerificationError) -> str:
    """The verification failure in words a vendor recognises."""
    code = getattr(exc, "verify_code", None)
    message = str(getattr(exc, "verify_message", "") or _reason(exc))
    if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
        return "the server certificate has expired"
    if code == 9:  # X509_V_ERR_CERT_NOT_YET_VALID
        return "the server certificate is not valid yet"
    if code in (18, 19):  # self-signed leaf / self-signed in chain
        return f"self-signed certificate, not trusted ({message}); give its CA with --tls-ca"
    if code in (20, 21):  # unable to get issuer certificate (locally)
        return f"unknown CA ({message}); give the issuing CA with --tls-ca"
    if code == 62 or "mismatch" in message.lower():  # X509_V_ERR_HOSTNAME_MISMATCH
        return f"name mismatch ({message}); set tls.server_name if the name differs"
    return message


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        text = str(exc.reason).replace("_", " ").lower()
        if text in ("wrong version number", "record layer failure", "packet length too long"):
            return f"{text} (is the target speaking TLS on this port?)"
        return text
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def describe_peer(sock: ssl.SSLSocket) -> PeerInfo:
    """Version, cipher and certificate names. With verification off the
    stdlib does not decode the certificate: subject, issuer and expiry are
    then None."""
    cipher = sock.cipher()
    certificate: dict[str, Any] = sock.getpeercert() or {}
    not_after = certificate.get("notAfter")
    return PeerInfo(
        version=sock.version() or "",
        cipher=cipher[0] if cipher else "",
        subject=_name(certificate.get("subject")),
        issuer=_name(certificate.get("issuer")),
        not_after=_iso_date(not_after) if isinstance(not_after, str) else None,
    )


def _name(rdns: Any) -> str | None:
    if not rdns:
        return None
    parts = [f"{key}={value}" for rdn in rdns for key, value in rdn]
    return ", ".join(parts) or None


def _iso_date(text: str) -> str:
    try:
        when = datetime.fromtimestamp(ssl.cert_time_to_seconds(text), UTC)
    except ValueError:
        return text
    return when.isoformat(timespec="seconds")
