"""What the target offers, learned once per run (docs/scenario-format.md,
*Capabilities*): CAPA before and after login, the APOP timestamp in the
greeting, whether RFC 1225 LAST is answered, and — for servers without
CAPA — one harmless TOP and UIDL probe each."""

from __future__ import annotations

import re
from dataclasses import dataclass

from conformance.config import RunConfig
from conformance.driver import ConnectError, Outcome, Reply, Session, deadline_after
from conformance.errors import ProvisionError, TargetUnreachable
from conformance.expressions import apop_digest_of
from conformance.fixture import Account
from conformance.results import TargetFingerprint
from conformance.transcript import Transcript, show_bytes

# RFC 1939 §7 APOP: the greeting carries a msg-id style timestamp <...@...>.
APOP_TIMESTAMP = re.compile(rb"<[^<>\s]+@[^<>\s]+>")
PSEUDO_CAPA, PSEUDO_APOP, PSEUDO_LAST = "CAPA", "APOP", "LAST"


def greeting_timestamp(greeting: bytes | None) -> str | None:
    if not greeting:
        return None
    found = APOP_TIMESTAMP.search(greeting)
    return found.group(0).decode("latin-1") if found else None


def capability_names(capa_lines: list[str]) -> list[str]:
    """CAPA lines to their tags, upper-cased (RFC 2449 §6: case-insensitive)."""
    return [line.split()[0].upper() for line in capa_lines if line.split()]


@dataclass
class ProbeSession:
    """A small synchronous client for the probe and for verification."""

    session: Session
    config: RunConfig

    def command(self, text: str, *, multiline: bool = False, auth: bool = False) -> Reply:
        # Not a judge: stray bytes (the scenarios' framing oracle reports
        # them) are dropped so they cannot shift the replies read here.
        self.session.drain_unsolicited()
        self.session.send(text.encode("utf-8") + b"\r\n")
        return self.read(multiline=multiline, auth=auth)

    def read(self, *, multiline: bool = False, auth: bool = False) -> Reply:
        timeout = self.config.auth_timeout if auth else self.config.read_timeout
        return self.session.read_reply(multiline, deadline_after(timeout))


def describe_reply(reply: Reply) -> str:
    if reply.outcome is Outcome.COMPLETE and reply.status is not None:
        return show_bytes(reply.status.raw)
    if reply.outcome is Outcome.TIMEOUT:
        return "no reply before the deadline"
    return f"connection {reply.outcome.value}" + (f" ({reply.detail})" if reply.detail else "")


def is_positive(reply: Reply) -> bool:
    return reply.outcome is Outcome.COMPLETE and reply.status is not None and reply.status.positive


def connect_and_greet(
    host: str, port: int, config: RunConfig, transcript: Transcript, name: str
) -> tuple[ProbeSession, Reply]:
    """Connect and read the greeting; TargetUnreachable if either fails."""
    try:
        session = Session.connect(
            name,
            host,
            port,
            transcript,
            timeout=config.read_timeout,
            max_line_octets=config.max_line_octets,
            max_body_octets=config.max_body_octets,
            redact=config.redact,
        )
    except ConnectError as exc:
        raise TargetUnreachable(f"{exc} (is a POP3 server running there?)") from None
    probe = ProbeSession(session, config)
    greeting = probe.read()
    if not is_positive(greeting):
        session.close()
        raise TargetUnreachable(
            f"{config.address} did not greet with +OK: {describe_reply(greeting)}"
        )
    assert greeting.status is not None
    session.greeting = greeting.status.line
    return probe, greeting


def login(probe: ProbeSession, account: Account) -> str | None:
    """Log in by the account's method (USER/PASS or APOP); None on success,
    else what went wrong."""
    if account.login == "apop":
        timestamp = greeting_timestamp(probe.session.greeting)
        if timestamp is None:
            return f"{account.user} logs in with APOP, but the greeting has no <timestamp>"
        reply = probe.command(
            f"APOP {account.user} {apop_digest_of(timestamp, account.password)}", auth=True
        )
        if not is_positive(reply):
            return f"APOP for {account.user} answered {describe_reply(reply)}"
        return None
    user = probe.command(f"USER {account.user}", auth=True)
    if not is_positive(user):
        return f"USER {account.user} answered {describe_reply(user)}"
    password = probe.command(f"PASS {account.password}", auth=True)
    if not is_positive(password):
        return f"PASS for {account.user} answered {describe_reply(password)}"
    return None


def _capa(probe: ProbeSession) -> list[str] | None:
    reply = probe.command("CAPA", multiline=True)
    if not is_positive(reply):
        return None
    return [line.decode("utf-8", errors="replace") for line in reply.lines]


def learn_fingerprint(
    host: str, port: int, config: RunConfig, account: Account, *, embedded: bool
) -> TargetFingerprint:
    transcript = Transcript()
    probe, greeting = connect_and_greet(host, port, config, transcript, "probe")
    assert greeting.status is not None
    fingerprint = TargetFingerprint(
        address=config.address if not embedded else f"{host}:{port}",
        tls=config.tls,
        greeting=greeting.status.line.decode("utf-8", errors="replace"),
        capabilities=[],
        embedded=embedded,
    )
    try:
        if isinstance(config.capabilities, list):
            fingerprint.capabilities = sorted({c.upper() for c in config.capabilities})
            probe.command("QUIT")
            return fingerprint
        fingerprint.capabilities = _probe(probe, account, fingerprint)
        return fingerprint
    finally:
        probe.session.close()


def _probe(probe: ProbeSession, account: Account, fingerprint: TargetFingerprint) -> list[str]:
    learned: set[str] = set()
    if greeting_timestamp(probe.session.greeting):
        learned.add(PSEUDO_APOP)
    fingerprint.capa_authorization = _capa(probe)
    if fingerprint.capa_authorization is not None:
        learned.add(PSEUDO_CAPA)
        learned.update(capability_names(fingerprint.capa_authorization))
    problem = login(probe, account)
    if problem is not None:
        raise ProvisionError(
            f"cannot log in to {fingerprint.address} as {account.user} (role {account.role}): "
            f"{problem}; check the accounts in the target config"
        )
    if fingerprint.capa_authorization is None:
        learned.add("USER")  # USER/PASS just worked
    fingerprint.capa_transaction = _capa(probe)
    if fingerprint.capa_transaction is not None:
        learned.add(PSEUDO_CAPA)
        learned.update(capability_names(fingerprint.capa_transaction))
    if is_positive(probe.command("LAST")):
        learned.add(PSEUDO_LAST)
    if PSEUDO_CAPA not in learned and account.count:
        if is_positive(probe.command("TOP 1 0", multiline=True)):
            learned.add("TOP")
        if is_positive(probe.command("UIDL 1")):
            learned.add("UIDL")
    probe.command("QUIT")
    return sorted(learned)
