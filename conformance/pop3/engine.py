"""Executes scenarios against a target and turns what happened into
verdicts (docs/scenario-format.md, *Verdicts*).

`Runner` owns the target for a run: it starts the embedded reference
server when no host is configured, learns the target's capabilities once,
re-provisions and verifies mailboxes before each scenario, and runs each
scenario's steps over raw sessions. `run` never raises for target
misbehaviour: it returns FAIL/WARN/ERROR results instead."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from conformance.core import schedule
from conformance.core.config import RunConfig
from conformance.core.driver import ConnectError, Outcome, deadline_after
from conformance.core.expressions import Namespace
from conformance.core.fixture import Account, Fixture, FixtureError
from conformance.core.patterns import BodyContext
from conformance.core.pools import (
    check_pool_config,
    embedded_user,
    templated_accounts,
    with_credentials,
)
from conformance.core.results import (
    Measurement,
    RunResult,
    ScenarioResult,
    TargetFingerprint,
    Verdict,
)
from conformance.core.run import ScenarioRunBase, TargetRunner
from conformance.core.sasl import PURE_FUNCTIONS as SASL_FUNCTIONS
from conformance.core.sasl import ScramExchanges
from conformance.core.scenario import (
    Chop,
    CommandStep,
    DropStep,
    ExpectCloseStep,
    ExpectOpenStep,
    IdleStep,
    OpenStep,
    PipelineStep,
    ReplyStep,
    Scenario,
    SendStep,
    Step,
    command_is_multiline,
)
from conformance.core.schedule import ProgressCallback
from conformance.core.transcript import ClientRedactor, Transcript, show_bytes
from conformance.core.verdicts import (
    ScenarioError as _ScenarioError,
)
from conformance.core.verdicts import (
    SkipScenario as _SkipScenario,
)
from conformance.core.verdicts import (
    StopScenario as _StopScenario,
)
from conformance.core.verdicts import (
    framing_failure,
    reply_timeout,
    step_level,
    verdict_for,
)
from conformance.pop3 import framing, transport
from conformance.pop3.auth_steps import AuthSteps
from conformance.pop3.capabilities import (
    learn_fingerprint,
)
from conformance.pop3.engine_state import (
    AUTH_COMMANDS,
    AUTOLOGOUT_GRACE_SECONDS,
    BOGUS_USER,
    CHOPPED_COMMAND_RULE,
    FAREWELL_CLOSE_SECONDS,
    GREETING_LABEL,
    GREETING_RULE,
    QUIT_AUTHORIZATION_CLOSE_RULE,
    QUIT_AUTHORIZATION_RULE,
    QUIT_CLOSE_RULE,
    QUIT_REPLY_RULE,
    SEND_LABEL_OCTETS,
    UNSOLICITED_AFTER_GREETING,
    WRONG_PASSWORD_SUFFIX,
    _EngineSession,
    _PendingCommand,
)
from conformance.pop3.mailboxes import Mailboxes
from conformance.pop3.measurements import measure
from conformance.pop3.measurements import skipped as skipped_measurements
from conformance.pop3.oracle_steps import OracleSteps
from conformance.pop3.session import Reply
from conformance.provision import NoneProvisioner, Provisioner, make_provisioner

if TYPE_CHECKING:
    from conformance.embedded import EmbeddedServer

# --------------------------------------------------------------------------
# The run of one scenario


class _ScenarioRun(AuthSteps, OracleSteps, ScenarioRunBase):
    """A POP3 scenario's steps (the protocol-neutral part is ScenarioRunBase)."""

    def __init__(
        self, runner: Runner, scenario: Scenario, transcript: Transcript, pool: _Pool
    ) -> None:
        super().__init__(runner.config, scenario, transcript)
        self.runner = runner
        self.pool = pool
        self.sessions: dict[str, _EngineSession] = {}
        self.scram = ScramExchanges()

    # -- driving ---------------------------------------------------------------

    def _skips(self, step: Step) -> bool:
        engine_session = self.sessions.get(step.session)
        return engine_session is not None and engine_session.gone

    def _prepare(self, step: Step) -> Step:
        return self._with_autologout_deadline(step) if step.until_autologout else step

    def _with_autologout_deadline(self, step: Step) -> Step:
        """`timeout: autologout`: the target's timer plus a grace period."""
        if self.config.autologout is None:
            raise _SkipScenario(
                "the target's autologout timer is unknown: give it as 'autologout:' in the "
                "target config or with --autologout SECONDS"
            )
        return dataclasses.replace(
            step, timeout=float(self.config.autologout) + AUTOLOGOUT_GRACE_SECONDS
        )

    # -- failures --------------------------------------------------------------

    def _intrinsic_rule(self, step: Step | None) -> tuple[str, str] | None:
        engine_session = self.sessions.get(step.session) if step is not None else None
        if engine_session is None:
            return None
        if isinstance(step, ReplyStep) and engine_session.pending_label == GREETING_LABEL:
            return GREETING_RULE
        if isinstance(step, ReplyStep | ExpectCloseStep) and engine_session.pending_verb == "QUIT":
            after = engine_session.authenticated
            if isinstance(step, ExpectCloseStep):
                return QUIT_CLOSE_RULE if after else QUIT_AUTHORIZATION_CLOSE_RULE
            return QUIT_REPLY_RULE if after else QUIT_AUTHORIZATION_RULE
        return None

    # -- names -----------------------------------------------------------------

    def env(self, session_name: str | None) -> dict[str, Any]:
        return self._env_for(self.sessions.get(session_name) if session_name else None)

    def _env_for(self, engine_session: _EngineSession | None) -> dict[str, Any]:
        account = (
            engine_session.account if engine_session else self.pool.account(self.scenario.account)
        )
        env: dict[str, Any] = dict(self.pool.facts)
        env.update(user=account.user, password=account.password, count=account.count)
        env["wrong_password"] = account.password + WRONG_PASSWORD_SUFFIX
        # whether the target holds exactly the fixture's bytes (verdict-principles 12)
        env["byte_exact"] = self.runner.provisioner.byte_exact
        env["__fn_apop_digest__"] = self._apop_digest(engine_session)
        env.update(SASL_FUNCTIONS)
        env.update(self.scram.functions(engine_session.session.name if engine_session else "a"))
        env.update(self.captures)
        return env

    def _session(self, step: Step) -> _EngineSession:
        return self.sessions[step.session]

    # -- actions ---------------------------------------------------------------

    def _do_OpenStep(self, step: OpenStep) -> None:
        role = step.account or self.scenario.account
        account = self.pool.account(role)
        old = self.sessions.get(step.session)
        if old is not None:
            old.session.close()
        if step.plaintext and self.config.tls == "implicit":
            raise _SkipScenario(
                "the run uses implicit TLS: no plaintext session (run with --tls plain or stls)"
            )
        try:
            session = transport.connect(
                step.session,
                self.runner.host,
                self.runner.port,
                self.transcript,
                self.config,
                timeout=min(step.timeout or self.config.read_timeout, self._remaining()),
            )
        except ConnectError as exc:
            self.transcript.event(step.session, str(exc))
            self.unreachable = True
            raise _ScenarioError(f"step {step.index} ({step.text}): {exc}") from None
        auto_stls = self.config.tls == "stls" and not step.plaintext
        self.sessions[step.session] = _EngineSession(session, account, auto_stls=auto_stls)

    def _do_CommandStep(self, step: CommandStep) -> None:
        engine_session = self._session(step)
        if all(isinstance(segment, str) for segment in step.template):
            text = "".join(step.template)  # nothing to substitute: no names needed
        else:
            text = self._render(step, step.template, self._env_for(engine_session))
        self._send_commands(step, engine_session, [text], chop=step.chop)

    def _do_PipelineStep(self, step: PipelineStep) -> None:
        engine_session = self._session(step)
        env = self._env_for(engine_session)
        texts = [self._render(step, t, env) for t in step.templates]
        self._send_commands(step, engine_session, texts)

    def _send_commands(
        self,
        step: Step,
        engine_session: _EngineSession,
        texts: list[str],
        *,
        chop: Chop | None = None,
    ) -> bool:
        """Send the command lines in one write (or chopped, `chop:`); False
        when the session had already ended as an allowed close (nothing is
        sent then)."""
        if not self._check_unsolicited(step, engine_session):
            return False
        data = b"".join(t.encode("utf-8") + b"\r\n" for t in texts)
        redactor = ClientRedactor(True)
        redactor.in_auth_exchange = engine_session.in_sasl
        for text in texts:
            shown = redactor.redact(text.encode("utf-8")).decode("utf-8", errors="replace")
            verb = text.split()[0].upper() if text.split() else ""
            if engine_session.in_sasl:  # a SASL response line (RFC 5034 §4), not a command
                engine_session.in_sasl = False
                pending = _PendingCommand(f"C: {shown}", False, True, "AUTH", continuation=True)
            else:
                pending = _PendingCommand(
                    f"C: {shown}",
                    command_is_multiline(text),
                    verb in AUTH_COMMANDS,
                    verb,
                    continuation=verb == "AUTH" and len(text.split()) > 1,
                )
            engine_session.pending.append(pending)
        engine_session.commands_sent += len(texts)
        self._write(step, engine_session, data, chop)
        return True

    def _write(
        self, step: Step, engine_session: _EngineSession, data: bytes, chop: Chop | None
    ) -> None:
        """One write, or `chop:` pieces; a reply that arrives before the
        first line's LF was written answers half a command: the server acted
        on a TCP read, not on a line (RFC 1939 §3, POP3-1939-SYNTAX-02)."""
        if chop is None:
            engine_session.session.send(data)
            return
        line_end = data.find(b"\n")
        early = engine_session.session.send_chopped(
            data,
            chop.octets,
            chop.pause,
            self.deadline,  # the pauses end there; the pieces still all go out
            complete_at=len(data) if line_end < 0 else line_end,
        )
        if early and line_end >= 0:
            arrived = engine_session.session.reader.take_buffered()
            self._stop(
                step,
                "no reply before the command's line end was written "
                f"(it went out {chop.octets} octet(s) per write, {chop.pause:g} s apart)",
                f"{show_bytes(arrived)} arrived before the line end of {step.text}",
                requirement=CHOPPED_COMMAND_RULE,
                level="MUST",
            )

    def _do_SendStep(self, step: SendStep) -> None:
        engine_session = self._session(step)
        text = self._render(step, step.template, self._env_for(engine_session))
        if not self._check_unsolicited(step, engine_session):
            return
        data = text.encode("latin-1")
        engine_session.replies_unknown = True
        # Bytes without a line end are the start of a line a later send:
        # ends: the reply it gets answers the whole line, and is labelled so
        # (several sends for one command must not shift the labels of the
        # replies after it). An S: step that reads while no line has ended
        # takes the unfinished bytes as what it answers.
        line = engine_session.unfinished_send + data
        if b"\n" in data:
            engine_session.unfinished_send = b""
            engine_session.pending.append(_send_pending(line))
        else:
            engine_session.unfinished_send = line[:SEND_LABEL_OCTETS]
        engine_session.commands_sent += 1
        self._write(step, engine_session, data, step.chop)

    def _do_ReplyStep(self, step: ReplyStep) -> None:
        engine_session = self._session(step)
        reply = self._read(step, engine_session, multiline_override=step.multiline)
        label = engine_session.pending_label
        self._framing(step, reply.findings)
        if reply.outcome is not Outcome.COMPLETE or reply.status is None:
            if self._closed_as_allowed(engine_session, reply):
                return
            self._incomplete(step, reply, label, step.pattern.source)
        if step.or_close:
            engine_session.may_close_after = label
        status = reply.status
        env = self._env_for(engine_session)
        match = self._guarded(step, lambda: step.pattern.match(status.line, env))
        if not match.ok:
            if step.else_skip and status.status == "-ERR" and step.pattern.wants_positive():
                raise _SkipScenario(f"{step.else_skip} ({label} answered {show_bytes(status.raw)})")
            self._fail(step, f"{match.expected} after {label}", match.actual, level=step.level)
            return
        self.captures.update(match.captures)
        if reply.body_octets is None:
            return
        if step.octets:
            self.captures[step.octets] = reply.body_octets
        if step.save:
            self.captures[step.save] = reply.body
        env = self._env_for(engine_session)
        context = BodyContext(engine_session.account.messages, self.runner.provisioner.byte_exact)
        body_match = self._guarded(
            step, lambda: step.body.match(reply.lines, reply.body, env, context)
        )
        if not body_match.ok:
            self._fail(
                step, f"{body_match.expected} after {label}", body_match.actual, level=step.level
            )
            return
        self.captures.update(body_match.captures)

    def _closed_as_allowed(self, engine_session: _EngineSession, reply: Reply) -> bool:
        """A close (with nothing of a reply) right after a reply that allowed
        it — `or_close`, a refused PASS/APOP/AUTH — is the allowed branch:
        the rest of that session's steps are skipped. A close *instead of*
        the reply is never allowed (silence, verdict-principles)."""
        after = engine_session.may_close_after
        if after is None or reply.status is not None or reply.detail:
            return False
        if reply.outcome not in (Outcome.CLOSED, Outcome.RESET):
            return False
        self.transcript.event(
            engine_session.session.name,
            f"the server closed the session after answering {after} "
            "(an allowed abuse limit): the rest of this session is skipped",
        )
        engine_session.gone = True
        engine_session.session.close()
        return True

    def _read(
        self, step: Step, engine_session: _EngineSession, *, multiline_override: bool | None
    ) -> Reply:
        if engine_session.awaiting_greeting:
            engine_session.awaiting_greeting = False
            pending = _PendingCommand(GREETING_LABEL, False, False)
        elif engine_session.pending:
            pending = engine_session.pending.popleft()
        elif engine_session.unfinished_send:
            pending = _send_pending(engine_session.unfinished_send)
            engine_session.unfinished_send = b""
        else:
            pending = _PendingCommand("no command (waiting for an unsolicited reply)", False, False)
        engine_session.pending_label = pending.label
        engine_session.pending_verb = pending.verb
        multiline = pending.multiline if multiline_override is None else multiline_override
        timeout = reply_timeout(step.timeout, pending.auth, self.config)
        engine_session.step_timeout = timeout
        deadline = min(deadline_after(timeout), self.deadline)
        reply = engine_session.session.read_reply(
            multiline, deadline, continuation=pending.continuation
        )
        engine_session.in_sasl = reply.status is not None and reply.status.continuation
        if reply.status is not None and engine_session.session.greeting is None:
            engine_session.session.greeting = reply.status.line
            if engine_session.auto_stls and reply.status.looks_positive:
                self._auto_stls(step, engine_session)
        engine_session.last_was_multiline = reply.body_octets is not None
        if not engine_session.pending:
            engine_session.replies_unknown = False
        if reply.status is not None:
            positive = reply.status.looks_positive
            engine_session.user_accepted = pending.verb == "USER" and positive
            if pending.verb in ("PASS", "APOP", "AUTH") and positive:
                engine_session.authenticated = not reply.status.continuation
            # a refused login may be followed by a close (verdict-principles 3)
            refused_login = (
                pending.verb in ("PASS", "APOP", "AUTH")
                and not positive
                and not reply.status.continuation  # a SASL challenge is no refusal
            )
            engine_session.may_close_after = pending.label if refused_login else None
        return reply

    def _auto_stls(self, step: Step, engine_session: _EngineSession) -> None:
        """--tls stls: the run's STLS right after the greeting; a failure is
        an ERROR (the suite could not set up the session it needs)."""
        engine_session.auto_stls = False
        deadline = min(deadline_after(self.config.read_timeout), self.deadline)
        try:
            transport.upgrade(engine_session.session, self.config, self.runner.host, deadline)
        except transport.StlsFailed as exc:
            raise _ScenarioError(f"step {step.index} ({step.text}): --tls stls: {exc}") from None

    def _incomplete(self, step: Step, reply: Reply, label: str, wanted: str) -> NoReturn:
        """A reply did not arrive whole: stall, flood, close or reset.

        Silence is a finding at any scenario level: no reply while the
        connection stays open, or a close instead of the reply, breaks the
        step's requirement as a MUST (verdict-principles, "always a finding").
        A body that stops before its terminator breaks the terminator rule."""
        engine_session = self._session(step)
        if reply.outcome is Outcome.TIMEOUT:
            waited = engine_session.step_timeout
            if reply.status is not None:
                finding = framing.finding(
                    framing.TERMINATOR,
                    f"the body did not end: no more data within {waited:.1f} s after {label}",
                )
                self.failures.append(framing_failure(step, finding))
                raise _StopScenario
            if time.monotonic() >= self.deadline:
                actual = f"scenario deadline of {self.scenario_timeout:.1f} s passed after {label}"
            else:
                actual = f"no reply within {waited:.1f} s after {label}"
            # Bytes with no keyword (an empty line) are not a command: a server
            # may ignore them, so their silence is judged at the step's level.
            level = "MUST" if engine_session.pending_verb else step_level(step)
            self._stop(step, repr(wanted), actual, kind="timeout", level=level)
        if reply.outcome is Outcome.FLOOD:
            # a line without an end breaks the CRLF rule; a body without an end, the terminator
            rule = framing.TERMINATOR if reply.detail.startswith("a body") else framing.LINE_END
            finding = framing.finding(rule, f"{reply.detail} after {label}")
            self.failures.append(framing_failure(step, finding))
            raise _StopScenario
        how = "reset" if reply.outcome is Outcome.RESET else "closed"
        partial = f" after sending {reply.detail}" if reply.detail else ""
        where = "in the middle of the body" if reply.status is not None else "instead of replying"
        self._stop(
            step,
            repr(wanted),
            f"connection {how} by the server {where}{partial} ({label})",
            kind="closed",
            level="MUST",
        )

    def _do_DropStep(self, step: DropStep) -> None:
        self._session(step).session.close()

    def _do_IdleStep(self, step: IdleStep) -> None:
        engine_session = self._session(step)
        quiet = engine_session.session.wait_quiet(step.seconds, self.deadline)
        if quiet.outcome is Outcome.DATA:
            self._unsolicited(step, engine_session, quiet.data, "while idle")
            raise _StopScenario

    def _do_ExpectOpenStep(self, step: ExpectOpenStep) -> None:
        engine_session = self._session(step)
        quiet = engine_session.session.wait_quiet(step.seconds, self.deadline)
        if quiet.outcome is Outcome.DATA:
            self._unsolicited(
                step, engine_session, quiet.data, "while the connection should stay open"
            )
            raise _StopScenario
        if quiet.outcome is not Outcome.TIMEOUT:
            self._fail(
                step,
                f"the connection to stay open for {step.seconds:.1f} s",
                f"connection {quiet.outcome.value} by the server",
                kind="closed",
            )

    def _do_ExpectCloseStep(self, step: ExpectCloseStep) -> None:
        engine_session = self._session(step)
        wait = step.timeout or self.config.read_timeout
        quiet = engine_session.session.wait_quiet(wait, self.deadline)
        expected = "the server to close the connection, sending nothing more"
        while step.tls_alert and quiet.outcome is Outcome.DATA and is_tls_alert(quiet.data):
            self.transcript.event(step.session, "a TLS alert record (tls_alert: allowed)")
            quiet = engine_session.session.wait_quiet(wait, self.deadline)
        if quiet.outcome is Outcome.DATA:
            self._fail(step, expected, f"received {show_bytes(quiet.data)}")
        elif quiet.outcome is Outcome.TIMEOUT:
            self._fail(step, expected, f"connection still open after {wait:.1f} s", kind="timeout")
        session = engine_session.session
        if step.close_notify and session.tls is not None and session.tls_close_notify is False:
            self._fail(
                step,
                "a TLS close_notify before the TCP close (RFC 8314 §3.4)",
                "the connection ended without close_notify",
                kind="closed",
            )
        engine_session.session.close()

    # -- robustness oracles ------------------------------------------------------

    # -- unsolicited data ------------------------------------------------------

    def _check_unsolicited(self, step: Step, engine_session: _EngineSession) -> bool:
        """Before sending: report bytes nobody asked for. False when the
        session turned out to have ended as an allowed close."""
        if not engine_session.quiet_expected:
            return True
        data = engine_session.session.drain_unsolicited()
        if data and self._farewell_then_close(engine_session, data):
            return False
        if data:
            self._unsolicited(step, engine_session, data, f"before {step.text}")
        return True

    def _farewell_then_close(self, engine_session: _EngineSession, data: bytes) -> bool:
        """One more `-ERR` line and a close, after a reply that allowed a
        close, is an allowed abuse limit too (verdict-principles 3)."""
        if engine_session.may_close_after is None or not data.startswith(b"-ERR"):
            return False
        if data.count(b"\n") != 1 or not data.endswith(b"\r\n"):
            return False
        quiet = engine_session.session.wait_quiet(FAREWELL_CLOSE_SECONDS, self.deadline)
        if quiet.outcome not in (Outcome.CLOSED, Outcome.RESET):
            if quiet.data:
                data += quiet.data
            return False
        self.transcript.event(
            engine_session.session.name,
            f"the server sent {show_bytes(data)} and closed after answering "
            f"{engine_session.may_close_after} (an allowed abuse limit): "
            "the rest of this session is skipped",
        )
        engine_session.gone = True
        engine_session.session.close()
        return True

    def _unsolicited(
        self, step: Step | None, engine_session: _EngineSession, data: bytes, when: str
    ) -> None:
        if engine_session.last_was_multiline and data.startswith(b".\r\n"):
            rule, detail = (
                framing.TERMINATOR,
                f"a second '.' line after the body: {show_bytes(data)}",
            )
        else:
            rule, detail = (
                framing.UNSOLICITED,
                f"{show_bytes(data)} arrived {when} with no command pending",
            )
        failure = framing_failure(step, framing.finding(rule, detail))
        if rule is framing.UNSOLICITED and engine_session.commands_sent:
            # past the greeting, stray data breaks the one-reply-per-command rule
            failure = dataclasses.replace(failure, requirement=UNSOLICITED_AFTER_GREETING)
        self.failures.append(failure)

    def _check_quiet_at_end(self) -> None:
        for engine_session in self.sessions.values():
            if engine_session.gone or not engine_session.session.usable:
                continue
            if engine_session.quiet_expected:
                data = engine_session.session.drain_unsolicited()
                if data and not self._farewell_then_close(engine_session, data):
                    self._unsolicited(None, engine_session, data, "at the end of the scenario")

    def _close_all(self) -> None:
        for engine_session in self.sessions.values():
            engine_session.session.close()


#: RFC 8446 §5.1 / RFC 5246 §6.2.1: a record header of content type alert
#: (21) and major version 3; no POP3 reply starts so.
TLS_ALERT_HEADER = b"\x15\x03"


def is_tls_alert(data: bytes) -> bool:
    """Bytes that start a TLS alert record (not POP3 text)."""
    return len(data) >= 5 and data.startswith(TLS_ALERT_HEADER)


def _send_pending(data: bytes) -> _PendingCommand:
    """What a reply to raw bytes (`send:`) answers: labelled with them."""
    shown = show_bytes(ClientRedactor(True).redact(data))
    verb = data.split(None, 1)[0].upper().decode("latin-1") if data.split() else ""
    return _PendingCommand(f"send: {shown}", False, _is_auth(data), verb)


def _is_auth(data: bytes) -> bool:
    verb = data.split(None, 1)[0].upper() if data.split() else b""
    return verb.decode("latin-1") in AUTH_COMMANDS


# --------------------------------------------------------------------------
# Runner


@dataclass
class _Pool:
    """One set of the fixture's accounts (conformance.core.pools) and its state."""

    fixture: Fixture
    facts: dict[str, Any]
    mailboxes: Mailboxes = field(init=False)

    def account(self, role: str) -> Account:
        try:
            return self.fixture.account(role)
        except FixtureError as exc:
            raise _ScenarioError(str(exc)) from None


class Runner(TargetRunner):
    """Runs scenarios against one target (the embedded server by default).

    With `pools` > 1 it holds that many disjoint account sets and `run` may
    be called from that many threads at once, each with its own pool."""

    fingerprint: TargetFingerprint
    #: INFO results (conformance.pop3.measurements), taken once after the probe
    measurements: list[Measurement]

    def __init__(
        self,
        config: RunConfig,
        *,
        fixture: Fixture | None = None,
        write_main: bool = True,
        pools: int = 1,
    ) -> None:
        super().__init__()
        self.config = config
        self._write_main = write_main  # False: `mailspec verify` writes nothing
        base = self._base_fixture(config, fixture)
        embedded = config.host is None
        if not embedded:
            check_pool_config(pools, config.accounts)
        fixtures = [
            with_credentials(base, templated_accounts(config.accounts, n))
            if not embedded
            else _renamed(with_credentials(base, config.accounts), n)
            for n in range(1, pools + 1)
        ]
        self.pools = [_Pool(f, _fact_names(f)) for f in fixtures]
        self.fixture = fixtures[0]
        self.host = config.host or "127.0.0.1"
        self.port = config.port
        self.provisioner: Provisioner = NoneProvisioner()
        self._embedded: EmbeddedServer | None = None
        self.mailboxes: Mailboxes | None = None  # pool 1's

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> Runner:
        try:
            if self.config.host is None:
                from conformance.embedded import EmbeddedServer

                embedded = EmbeddedServer(
                    self.fixture, self.config, more=[p.fixture for p in self.pools[1:]]
                )
                self._embedded = embedded
                self.host, self.port = embedded.start()
                assert embedded.provisioner is not None
                self.provisioner = embedded.provisioner
            else:
                self.provisioner = external_provisioner(
                    self.config.provision, (self.host, self.port)
                )
            for pool in self.pools:
                pool.mailboxes = Mailboxes(
                    self.host, self.port, self.config, self.provisioner, pool.fixture.accounts
                )
            self.mailboxes = self.pools[0].mailboxes
            main = self.account("main")
            if self.mailboxes.can_restore and self._write_main:
                self.mailboxes.reset(main)
            self.fingerprint = learn_fingerprint(
                self.host, self.port, self.config, main, embedded=self._embedded is not None
            )
            if self.fingerprint.capabilities and isinstance(self.config.capabilities, str):
                self.mailboxes.mark_logged_in(main.role)  # the probe logged in with it
            self.measurements = (
                measure(self.host, self.port, self.config, main)
                if self.config.measure
                else skipped_measurements("--no-measure")
            )
            if "TOP" not in self.fingerprint.capabilities:
                self.mailboxes.methods.drop("top", "the target does not offer TOP")
            if "UIDL" not in self.fingerprint.capabilities:
                self.mailboxes.methods.drop("uidl", "the target does not offer UIDL")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.provisioner.close()
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None

    @property
    def embedded(self) -> bool:
        return self._embedded is not None

    def restart_embedded(self) -> None:
        """Kill and restart the embedded server over the same store and port
        (`mailspec fuzz`: a case that wedged it); the unreachable streak ends."""
        assert self._embedded is not None, "only the embedded server is restarted here"
        self._embedded.restart()
        self.target_restarted()

    def target_restarted(self) -> None:
        """The target was restarted: earlier unreachable scenarios say nothing more."""
        with self._streak_lock:
            self.unreachable_streak, self.unreachable_since = 0, None

    # -- fixture facts ---------------------------------------------------------

    def account(self, role: str) -> Account:
        return self.pools[0].account(role)

    def fact_names(self) -> dict[str, Any]:
        """Names every scenario sees (`accounts`, `bogus_user`); callers copy it."""
        return self.pools[0].facts

    # -- running ---------------------------------------------------------------

    def _judge(
        self, scenario: Scenario, transcript: Transcript, result: ScenarioResult, index: int
    ) -> tuple[Verdict, str]:
        pool = self.pools[index]
        if scenario.slow and not self.config.slow:
            return Verdict.SKIP, "slow scenario (minutes): run with --slow"
        missing = [n for n in scenario.needs if n not in self.fingerprint.capabilities]
        if missing:
            return (
                Verdict.SKIP,
                f"target lacks {missing[0]} ({self._capability_source(missing[0])})",
            )
        prepared = pool.mailboxes.prepare(scenario, transcript)
        if prepared.unreachable:
            self._mark_unreachable()
        if prepared.error:
            return Verdict.ERROR, prepared.error
        if prepared.skip:
            return Verdict.SKIP, prepared.skip
        transcript.event("*", f"scenario {scenario.id} starts")
        run = _ScenarioRun(self, scenario, transcript, pool)
        verdict, message = run.execute()
        self._mark_unreachable(run.unreachable)
        result.failures = run.failures
        changed = pool.mailboxes.after(scenario, run.failures, transcript)
        if verdict is Verdict.SKIP and changed is not None:
            # a SKIP stays a SKIP; the account is re-provisioned all the same
            transcript.event("*", f"after the SKIP: {changed.actual}")
            changed = None
        if changed is not None and not any(f.kind == "maildrop" for f in run.failures):
            result.failures.append(changed)
            verdict = verdict_for(result.failures, self.config.strict, self.config.security)
            message = message or changed.one_line()
        return verdict, message

    def _capability_source(self, name: str) -> str:
        if isinstance(self.config.capabilities, list):
            return "not in the configured capabilities"
        if name == "CAPA":
            return "CAPA was refused"
        if name == "APOP":
            return "the greeting has no <timestamp>"
        if name == "LAST":
            return "LAST was refused"
        if name == "IMPLICIT-TLS":
            return "the run does not use --tls implicit"
        if name == "STLS" and self.config.tls == "implicit":
            return "the run uses implicit TLS: no plaintext session to offer it"
        if (
            self.fingerprint.capa_authorization is None
            and self.fingerprint.capa_transaction is None
        ):
            return "no CAPA, and the probe did not find it"
        return "not advertised by CAPA"


def _fact_names(fixture: Fixture) -> dict[str, Any]:
    """Names every scenario sees: `accounts.ROLE.*` and `bogus_user`."""
    accounts = {
        role: Namespace(
            f"accounts.{role}",
            {"user": a.user, "password": a.password, "count": a.count, "size": a.size},
        )
        for role, a in fixture.accounts.items()
    }
    users = {a.user for a in fixture.accounts.values()}
    bogus = BOGUS_USER
    while bogus in users:
        bogus += "-x"
    return {"accounts": Namespace("accounts", accounts), "bogus_user": bogus}


def _renamed(fixture: Fixture, pool: int) -> Fixture:
    """The embedded server's pool `pool`: the same accounts, own user names."""
    if pool == 1:
        return fixture
    accounts = {
        role: dataclasses.replace(a, user=embedded_user(a.user, pool))
        for role, a in fixture.accounts.items()
    }
    return Fixture(fixture.source, accounts)


def external_provisioner(spec: str, target: tuple[str, int]) -> Provisioner:
    """`reference` only makes sense for the embedded server: an external
    target with it is verified only."""
    if spec == "reference":
        return NoneProvisioner()
    return make_provisioner(spec, target=target)


def run_suite(
    scenarios: list[Scenario],
    config: RunConfig,
    *,
    progress: ProgressCallback | None = None,
    fixture: Fixture | None = None,
    jobs: int | None = 1,
) -> RunResult:
    """The POP3 suite: `conformance.core.schedule.run_suite` with this Runner."""
    return schedule.run_suite(
        Runner, scenarios, config, progress=progress, fixture=fixture, jobs=jobs
    )
