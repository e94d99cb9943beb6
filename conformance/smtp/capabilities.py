"""The EHLO probe: what the target advertises, learned once per run.

One session: the greeting, `EHLO`, and (under `--tls stls`) STARTTLS and a
second EHLO inside TLS, then QUIT. The keywords (RFC 5321 §4.1.1.1: the
first word of each line after the first, case-insensitive) gate scenarios
with `needs:`; `SIZE 10240000` is kept whole for expressions."""

from __future__ import annotations

from dataclasses import dataclass

from conformance.core import client_tls
from conformance.core import tls as core_tls
from conformance.core.client_tls import context_for, server_name
from conformance.core.config import RunConfig
from conformance.core.driver import ConnectError, Outcome, ResolveError, deadline_after
from conformance.core.errors import TargetUnreachable
from conformance.core.results import TargetFingerprint
from conformance.core.transcript import Transcript, show_bytes
from conformance.smtp.reader import Reply
from conformance.smtp.session import SmtpSession

CLIENT_NAME = "client.mailspec.test"
PROBE_SECONDS = 30.0


class ProbeFailed(Exception):
    """The probe could not learn the capabilities (one line, what happened)."""


@dataclass
class EhloResult:
    greeting: str
    keywords: list[str]  # upper-cased first words, in order
    lines: list[str]  # the EHLO reply's text lines after the first (keyword and parameters)
    plaintext_keywords: list[str] | None = None  # before STARTTLS (--tls stls)
    #: a plain run on a server that offers STARTTLS: the EHLO lines inside
    #: TLS (what scenarios that speak STARTTLS themselves will be offered)
    tls_lines: list[str] | None = None


def keywords_of(reply: Reply) -> tuple[list[str], list[str]]:
    lines = [t.decode("utf-8", "replace") for t in reply.texts[1:]]
    keywords = [line.split()[0].upper() for line in lines if line.split()]
    return keywords, lines


def open_session(
    name: str, host: str, port: int, transcript: Transcript, config: RunConfig, timeout: float
) -> SmtpSession:
    """A new SMTP session; implicit TLS (smtps, RFC 8314 §3.1) is done here."""
    return client_tls.connect(SmtpSession, name, host, port, transcript, config, timeout=timeout)


#: RFC 5321 §3.1 (554) and RFC 7504 §2 (521): the session is refused at connect.
REFUSED_GREETINGS = frozenset({554, 521})


def probe(host: str, port: int, config: RunConfig, *, embedded: bool) -> TargetFingerprint:
    """Greeting and EHLO keywords; TargetUnreachable when nobody answers."""
    transcript = Transcript()
    deadline = deadline_after(PROBE_SECONDS)
    try:
        session = open_session("probe", host, port, transcript, config, config.read_timeout)
    except ResolveError as exc:
        raise TargetUnreachable(str(exc)) from None
    except ConnectError as exc:
        raise TargetUnreachable(str(exc)) from None
    try:
        result = _ehlo_dialogue(session, config, host, deadline)
    except ProbeFailed as exc:
        raise TargetUnreachable(f"the EHLO probe of {config.address} failed: {exc}") from None
    finally:
        session.close()
    peer = session.tls
    return TargetFingerprint(
        address=f"{host}:{port}",
        tls=config.tls,
        greeting=result.greeting,
        capabilities=result.keywords,
        capa_authorization=result.lines,
        embedded=embedded,
        tls_version=peer.version if peer else None,
        tls_cipher=peer.cipher if peer else None,
        certificate_subject=peer.subject if peer else None,
        certificate_issuer=peer.issuer if peer else None,
        certificate_not_after=peer.not_after if peer else None,
        certificate_verified=config.tls_verify if peer else None,
        capa_plaintext=result.plaintext_keywords,
        capa_transaction=result.tls_lines,
    )


def _read(session: SmtpSession, deadline: float, what: str) -> Reply:
    read = session.read_reply(deadline)
    if read.outcome is not Outcome.COMPLETE or read.reply is None:
        raise ProbeFailed(f"no reply to {what} ({read.outcome.value})")
    return read.reply


def _ehlo_dialogue(
    session: SmtpSession, config: RunConfig, host: str, deadline: float
) -> EhloResult:
    greeting = _read(session, deadline, "the connection (greeting)")
    if greeting.code in REFUSED_GREETINGS:
        # RFC 5321 §3.1 / RFC 7504 §2: the target refuses sessions; it offers
        # no extensions, and the scenarios judge the refusal (the refused-
        # session branch) or fail on their 220.
        try:
            session.send(b"QUIT\r\n")
            session.read_reply(min(deadline, deadline_after(2.0)))
        except OSError:
            pass  # a 521 server may already have closed (RFC 7504 §2)
        return EhloResult(
            greeting=greeting.raw.decode("utf-8", "replace").rstrip("\r\n"), keywords=[], lines=[]
        )
    if greeting.code != 220:
        raise ProbeFailed(f"greeting {show_bytes(greeting.raw)}")
    session.send(f"EHLO {CLIENT_NAME}\r\n".encode())
    ehlo = _read(session, deadline, "EHLO")
    if ehlo.code != 250 and config.tls != "stls":
        # A server that refuses EHLO (or answers it wrongly, like the seed's
        # "220 ok") offers no extensions (RFC 5321 §3.2): the scenarios that
        # need none still run and judge it.
        session.send(b"QUIT\r\n")
        session.read_reply(min(deadline, deadline_after(2.0)))
        return EhloResult(
            greeting=greeting.raw.decode("utf-8", "replace").rstrip("\r\n"),
            keywords=[],
            lines=[],
        )
    if ehlo.code != 250:
        raise ProbeFailed(f"EHLO answered {show_bytes(ehlo.raw[:200])}")
    keywords, lines = keywords_of(ehlo)
    plaintext = None
    tls_lines = None
    if config.tls == "plain" and "STARTTLS" in keywords:
        tls_lines = _ehlo_inside_tls(session, config, host, deadline)
        if tls_lines is None:  # the upgrade did not work: the session is gone
            return EhloResult(_text(greeting), keywords, lines)
    elif config.tls == "stls":
        plaintext = keywords
        if "STARTTLS" not in keywords:
            raise ProbeFailed("--tls stls, but EHLO does not offer STARTTLS")
        session.send(b"STARTTLS\r\n")
        ready = _read(session, deadline, "STARTTLS")
        if ready.code != 220:
            raise ProbeFailed(f"STARTTLS answered {show_bytes(ready.raw)}")
        try:
            session.start_tls(context_for(config), server_name(config, host), deadline)
        except core_tls.TlsError as exc:
            raise ProbeFailed(f"TLS handshake after STARTTLS: {exc}") from None
        session.send(f"EHLO {CLIENT_NAME}\r\n".encode())
        ehlo = _read(session, deadline, "EHLO inside TLS")
        if ehlo.code != 250:
            raise ProbeFailed(f"EHLO inside TLS answered {show_bytes(ehlo.raw[:200])}")
        keywords, lines = keywords_of(ehlo)
    session.send(b"QUIT\r\n")
    session.read_reply(min(deadline, deadline_after(2.0)))
    return EhloResult(
        greeting=_text(greeting),
        keywords=keywords,
        lines=lines,
        plaintext_keywords=plaintext,
        tls_lines=tls_lines,
    )


def _text(reply: Reply) -> str:
    return reply.raw.decode("utf-8", "replace").rstrip("\r\n")


def _ehlo_inside_tls(
    session: SmtpSession, config: RunConfig, host: str, deadline: float
) -> list[str] | None:
    """Best effort: STARTTLS, the handshake and EHLO again; the lines, or
    None when any of it failed (the probe then knows the plaintext only)."""
    session.send(b"STARTTLS\r\n")
    read = session.read_reply(deadline)
    if read.reply is None or read.reply.code != 220:
        return None
    try:
        session.start_tls(context_for(config), server_name(config, host), deadline)
    except core_tls.TlsError:
        return None
    session.send(f"EHLO {CLIENT_NAME}\r\n".encode())
    read = session.read_reply(deadline)
    if read.reply is None or read.reply.code != 250:
        return None
    return keywords_of(read.reply)[1]
