"""Sessions as the run's TLS mode wants them (`--tls plain|stls|implicit`).

`implicit` (RFC 8314 §3.1): every session does the TLS handshake right after
connect, before the greeting. `stls` (RFC 2595 §4): every session that is not
opened `plaintext: true` sends STLS right after a positive greeting and does
the handshake after its `+OK`, so logins only ever travel inside TLS. The
probe, the verification and the engine all open sessions through here."""

from __future__ import annotations

from conformance.core import client_tls
from conformance.core.client_tls import context_for, server_name
from conformance.core.config import RunConfig
from conformance.core.driver import Outcome
from conformance.core.tls import TlsError
from conformance.pop3.session import Pop3Session as Session

__all__ = ["StlsFailed", "TlsError", "connect", "context_for", "server_name", "upgrade"]
from conformance.core.transcript import Transcript, show_bytes

STLS_COMMAND = b"STLS\r\n"


class StlsFailed(Exception):
    """The run's own STLS did not work (refused, or the handshake failed):
    one line naming what happened."""


def connect(
    name: str,
    host: str,
    port: int,
    transcript: Transcript,
    config: RunConfig,
    *,
    timeout: float,
) -> Session:
    """A new POP3 session; implicit TLS is done here. ConnectError on failure."""
    return client_tls.connect(Session, name, host, port, transcript, config, timeout=timeout)


def upgrade(session: Session, config: RunConfig, host: str, deadline: float) -> None:
    """The run's STLS on a session whose greeting was read: STLS, a
    positive reply, then the handshake. StlsFailed names what went wrong;
    the session is closed then."""
    session.transcript.event(session.name, "STLS: the run uses --tls stls")
    session.send(STLS_COMMAND)
    reply = session.read_reply(False, deadline)
    if reply.outcome is not Outcome.COMPLETE or reply.status is None:
        session.close()
        raise StlsFailed(f"STLS got no reply ({reply.outcome.value})")
    if not reply.status.looks_positive:
        session.close()
        raise StlsFailed(f"STLS answered {show_bytes(reply.status.raw)}")
    try:
        leftover = session.start_tls(context_for(config), server_name(config, host), deadline)
    except TlsError as exc:
        raise StlsFailed(str(exc)) from None
    if leftover:
        session.transcript.event(
            session.name, f"plaintext after +OK to STLS, discarded: {show_bytes(leftover)}"
        )
