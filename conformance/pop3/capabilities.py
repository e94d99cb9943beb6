"""What the target offers, learned once per run (docs/scenario-format.md,
*Capabilities*): CAPA before and after login, the APOP timestamp in the
greeting, whether RFC 1225 LAST is answered, and — for servers without
CAPA — one harmless TOP and UIDL probe each."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from conformance.core.config import RunConfig
from conformance.core.driver import (
    ConnectError,
    Outcome,
    ResolveError,
    deadline_after,
)
from conformance.core.errors import ProvisionError, TargetUnreachable
from conformance.core.expressions import apop_digest_of
from conformance.core.fixture import Account
from conformance.core.results import TargetFingerprint
from conformance.core.transcript import Transcript, show_bytes
from conformance.pop3 import transport
from conformance.pop3.session import Pop3Session as Session
from conformance.pop3.session import Reply

# RFC 1939 §7 APOP: the greeting carries a msg-id style timestamp <...@...>.
# Detection is lenient (any <...> token offers APOP; one with '@' is preferred)
# so that a malformed timestamp is judged by the scenarios, not skipped.
ANGLE_TOKEN = re.compile(rb"<[^<>\s]+>")
PSEUDO_CAPA, PSEUDO_APOP, PSEUDO_LAST = "CAPA", "APOP", "LAST"
#: The run's sessions are TLS from connect (--tls implicit, RFC 8314 §3.1).
PSEUDO_IMPLICIT_TLS = "IMPLICIT-TLS"


def greeting_timestamp(greeting: bytes | None) -> str | None:
    tokens = ANGLE_TOKEN.findall(greeting or b"")
    if not tokens:
        return None
    chosen = next((t for t in tokens if b"@" in t), tokens[0])
    return chosen.decode("latin-1")


def capability_names(capa_lines: list[str]) -> list[str]:
    """CAPA lines to their tags, upper-cased (RFC 2449 §6: case-insensitive).
    Each SASL mechanism also gives a name of its own, `SASL-PLAIN` (RFC 5034
    §3), so scenarios can need one mechanism."""
    names = []
    for line in capa_lines:
        words = line.upper().split()
        if words:
            names.append(words[0])
            if words[0] == "SASL":
                names += [f"SASL-{mechanism}" for mechanism in words[1:]]
    return names


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
    """Lenient on purpose (`+ok` counts): probes and verification are not
    judges; the scenarios' framing oracle reports a malformed status."""
    return (
        reply.status is not None
        and reply.status.looks_positive
        and reply.outcome
        in (
            Outcome.COMPLETE,
            Outcome.TIMEOUT,  # a body that never ended: the status was still positive
        )
    )


def is_complete_positive(reply: Reply) -> bool:
    return is_positive(reply) and reply.outcome is Outcome.COMPLETE


def connect_and_greet(
    host: str,
    port: int,
    config: RunConfig,
    transcript: Transcript,
    name: str,
    *,
    accept_negative: bool = False,
    starttls: bool = True,
) -> tuple[ProbeSession, Reply]:
    """Connect and read the greeting; TargetUnreachable if either fails (or,
    unless `accept_negative`, if the greeting is not positive). With
    `--tls stls` (and `starttls`), STLS follows a positive greeting."""
    try:
        session = transport.connect(
            name, host, port, transcript, config, timeout=config.read_timeout
        )
    except ResolveError as exc:
        raise TargetUnreachable(f"{exc} (check the host name)") from None
    except ConnectError as exc:
        hint = (
            "the TCP connection opened: is this port serving implicit TLS (pop3s)?"
            if exc.tcp_open
            else "is a POP3 server running there?"
        )
        raise TargetUnreachable(f"{exc} ({hint})") from None
    probe = ProbeSession(session, config)
    greeting = probe.read()
    if greeting.status is None:
        session.close()
        raise TargetUnreachable(
            f"{config.address}: the connection opened but no greeting arrived: "
            f"{describe_reply(greeting)}"
        )
    if not accept_negative and not is_positive(greeting):
        session.close()
        raise TargetUnreachable(
            f"{config.address} did not greet with +OK: {describe_reply(greeting)}"
        )
    session.greeting = greeting.status.line
    if starttls and config.tls == "stls" and is_positive(greeting):
        stls(probe, host)
    return probe, greeting


def stls(probe: ProbeSession, host: str) -> None:
    """The run's STLS on a probe or verification session."""
    try:
        transport.upgrade(
            probe.session, probe.config, host, deadline_after(probe.config.read_timeout)
        )
    except transport.StlsFailed as exc:
        raise TargetUnreachable(f"{probe.config.address}: --tls stls: {exc}") from None


IN_USE_CODE = re.compile(rb"^-ERR \[IN-USE\]", re.IGNORECASE)
VERIFY_IN_USE_RETRY_SECONDS = 5.0


def is_in_use(status_line: bytes) -> bool:
    """A refusal with RFC 2449's [IN-USE] response code (codes are case-insensitive)."""
    return bool(IN_USE_CODE.match(status_line))


def login(probe: ProbeSession, account: Account) -> str | None:
    """`_login_once`, retried while the maildrop is [IN-USE]: the verification
    login runs when no session of the run should hold the maildrop, so a lock
    still held is a previous session's server process finishing its work."""
    give_up = time.monotonic() + VERIFY_IN_USE_RETRY_SECONDS
    while True:
        problem, in_use = _login_once(probe, account)
        if not in_use or time.monotonic() >= give_up or not probe.session.usable:
            return problem
        time.sleep(0.1)


def _login_once(probe: ProbeSession, account: Account) -> tuple[str | None, bool]:
    """Log in by the account's method (USER/PASS or APOP): (None, False) on
    success, else (what went wrong, whether the refusal was [IN-USE])."""
    if account.login == "apop":
        timestamp = greeting_timestamp(probe.session.greeting)
        if timestamp is None:
            return f"{account.user} logs in with APOP, but the greeting has no <timestamp>", False
        reply = probe.command(
            f"APOP {account.user} {apop_digest_of(timestamp, account.password)}", auth=True
        )
        if not is_positive(reply):
            return f"APOP for {account.user} answered {describe_reply(reply)}", _in_use(reply)
        return None, False
    user = probe.command(f"USER {account.user}", auth=True)
    if not is_positive(user):
        return f"USER {account.user} answered {describe_reply(user)}", False
    password = probe.command(f"PASS {account.password}", auth=True)
    if not is_positive(password):
        return f"PASS for {account.user} answered {describe_reply(password)}", _in_use(password)
    return None, False


def _in_use(reply: Reply) -> bool:
    return reply.status is not None and is_in_use(reply.status.raw)


def _capa(probe: ProbeSession) -> tuple[list[str] | None, bool]:
    """(CAPA lines or None when refused, whether the session is still in
    step). No reply at all is not a refusal: CAPA counts as offered, with
    no tags, so the CAPA scenarios run and judge the silence."""
    reply = probe.command("CAPA", multiline=True)
    if reply.status is None:
        return [], False
    if not is_positive(reply):
        return None, True
    lines = [line.decode("utf-8", errors="replace") for line in reply.lines]
    return lines, reply.outcome is Outcome.COMPLETE


def learn_fingerprint(
    host: str, port: int, config: RunConfig, account: Account, *, embedded: bool
) -> TargetFingerprint:
    """Connect once (TargetUnreachable if nothing greets), then probe.

    A negative greeting is recorded, not raised: the scenarios judge it, and
    the target offers nothing."""
    transcript = Transcript()
    probe, greeting = connect_and_greet(
        host, port, config, transcript, "probe", accept_negative=True, starttls=False
    )
    assert greeting.status is not None
    fingerprint = TargetFingerprint(
        address=config.address if not embedded else f"{host}:{port}",
        tls=config.tls,
        greeting=greeting.status.line.decode("utf-8", errors="replace"),
        capabilities=[],
        embedded=embedded,
    )
    try:
        if config.tls == "stls" and is_positive(greeting):
            fingerprint.capa_plaintext, ended = _capa(probe)
            if not ended:
                probe.session.close()
                probe, _ = connect_and_greet(
                    host, port, config, transcript, "probe", starttls=False
                )
            stls(probe, host)
        _note_tls(fingerprint, probe, config)
        if isinstance(config.capabilities, list):
            fingerprint.capabilities = sorted({c.upper() for c in config.capabilities})
            probe.command("QUIT")
        elif is_positive(greeting):
            fingerprint.capabilities = _Prober(host, port, config, account, fingerprint).run(probe)
        return fingerprint
    finally:
        probe.session.close()


#: CAPA tags that offer a login with the password in the clear (RFC 1939 §7
#: USER/PASS; the SASL PLAIN and LOGIN mechanisms, RFC 4616).
PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})


def offers_plaintext_login(capa_lines: list[str]) -> bool:
    """True if a CAPA listing offers USER or a clear-password SASL mechanism."""
    for line in capa_lines:
        words = line.upper().split()
        if words and words[0] == "USER":
            return True
        if words and words[0] == "SASL" and PLAINTEXT_MECHANISMS & set(words[1:]):
            return True
    return False


def _note_tls(fingerprint: TargetFingerprint, probe: ProbeSession, config: RunConfig) -> None:
    """TLS facts for the report: version, cipher, certificate names."""
    peer = probe.session.tls
    if peer is not None:
        fingerprint.tls_version = peer.version
        fingerprint.tls_cipher = peer.cipher
        fingerprint.certificate_subject = peer.subject
        fingerprint.certificate_issuer = peer.issuer
        fingerprint.certificate_not_after = peer.not_after
        fingerprint.certificate_verified = config.tls_verify


class _Prober:
    """The probe dialogue; reconnects when a reply left the session unusable
    (a CAPA listing that never ended)."""

    def __init__(
        self, host: str, port: int, config: RunConfig, account: Account, fp: TargetFingerprint
    ) -> None:
        self.host, self.port, self.config = host, port, config
        self.account, self.fingerprint = account, fp
        self.learned: set[str] = set()
        self.sessions: list[ProbeSession] = []

    def run(self, probe: ProbeSession) -> list[str]:
        try:
            return self._run(probe)
        finally:
            for extra in self.sessions:
                extra.session.close()

    def _run(self, probe: ProbeSession) -> list[str]:
        if self.config.tls == "implicit" and probe.session.tls is not None:
            self.learned.add(PSEUDO_IMPLICIT_TLS)
        if greeting_timestamp(probe.session.greeting):
            self.learned.add(PSEUDO_APOP)
        self.fingerprint.capa_authorization, ended = _capa(probe)
        self._note_capa(self.fingerprint.capa_authorization)
        self._note_plaintext()
        if not ended:
            probe = self._reconnect(probe)
        self._login(probe)
        if self.fingerprint.capa_authorization is None:
            self.learned.add("USER")  # USER/PASS just worked
        self.fingerprint.capa_transaction, ended = _capa(probe)
        self._note_capa(self.fingerprint.capa_transaction)
        if not ended:
            probe = self._reconnect(probe)
            self._login(probe)
        last = probe.command("LAST")
        if is_complete_positive(last):
            self.learned.add(PSEUDO_LAST)
        elif last.status is None:
            # no reply is silence, not a refused LAST (verdict-principles 5
            # allows -ERR only): the LAST scenarios run and judge it
            self.learned.add(PSEUDO_LAST)
            probe = self._reconnect(probe)
            self._login(probe)
        if PSEUDO_CAPA not in self.learned and self.account.count:
            if is_complete_positive(probe.command("TOP 1 0", multiline=True)):
                self.learned.add("TOP")
            if is_complete_positive(probe.command("UIDL 1")):
                self.learned.add("UIDL")
        probe.command("QUIT")
        return sorted(self.learned)

    def _note_plaintext(self) -> None:
        """Whether a plaintext session offered a password login, and STLS.
        Under `stls` the plaintext CAPA was read before the upgrade; under
        `plain` the AUTHORIZATION CAPA is that listing; under `implicit`
        there is no plaintext session to ask."""
        fp = self.fingerprint
        plaintext = fp.capa_plaintext if self.config.tls == "stls" else fp.capa_authorization
        if self.config.tls == "implicit":
            return
        if plaintext is not None:
            fp.plaintext_login_offered = offers_plaintext_login(plaintext)
            if "STLS" in capability_names(plaintext):
                self.learned.add("STLS")  # STLS scenarios open plaintext sessions
        elif self.config.tls == "plain":
            fp.plaintext_login_offered = True  # no CAPA: USER/PASS is all there is

    def _note_capa(self, lines: list[str] | None) -> None:
        if lines is not None:
            self.learned.add(PSEUDO_CAPA)
            self.learned.update(capability_names(lines))

    def _reconnect(self, old: ProbeSession) -> ProbeSession:
        """End `old` (QUIT, so a maildrop lock is released; wait for the
        close) and start a fresh session."""
        old.session.send(b"QUIT\r\n")
        deadline = deadline_after(self.config.read_timeout)
        while old.session.wait_quiet(self.config.read_timeout, deadline).outcome is Outcome.DATA:
            pass
        old.session.close()
        probe, _ = connect_and_greet(self.host, self.port, self.config, Transcript(), "probe")
        self.sessions.append(probe)
        return probe

    def _login(self, probe: ProbeSession) -> None:
        problem = login(probe, self.account)
        if problem is not None:
            raise ProvisionError(
                f"cannot log in to {self.fingerprint.address} as {self.account.user} "
                f"(role {self.account.role}): {problem}; check the accounts in the target config"
            )
