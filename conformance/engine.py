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
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from conformance import __version__, framing
from conformance.capabilities import (
    ProbeSession,
    connect_and_greet,
    describe_reply,
    greeting_timestamp,
    is_in_use,
    is_positive,
    learn_fingerprint,
    login,
)
from conformance.config import DEFAULT_AUTH_TIMEOUT, DEFAULT_READ_TIMEOUT, RunConfig
from conformance.driver import ConnectError, Outcome, Reply, Session, deadline_after
from conformance.errors import ConfigError, MailspecError, ProvisionError, TargetUnreachable
from conformance.expressions import ExpressionError, Namespace, apop_digest_of
from conformance.fixture import Account, Fixture, FixtureError, load_fixture
from conformance.framing import FramingFinding
from conformance.patterns import BodyContext, Segment, render_segments, status_pattern
from conformance.provision import NoneProvisioner, Provisioner, make_provisioner, verify_listing
from conformance.results import Failure, RunResult, ScenarioResult, TargetFingerprint, Verdict
from conformance.scenario import (
    AssertStep,
    CommandStep,
    DropStep,
    ExpectCloseStep,
    ExpectOpenStep,
    IdleStep,
    LoginStep,
    OpenStep,
    PipelineStep,
    ReplyStep,
    Scenario,
    SendStep,
    SkipIfStep,
    Step,
    command_is_multiline,
)
from conformance.transcript import ClientRedactor, Transcript, show_bytes

if TYPE_CHECKING:
    from conformance.embedded import EmbeddedServer

AUTH_COMMANDS = frozenset({"USER", "PASS", "APOP", "AUTH"})  # replies use auth_timeout
BOGUS_USER = "mailspec-no-such-user"
#: Slack after the target's autologout before `timeout: autologout` gives up:
#: timers are checked periodically by many servers (RFC 1939 §3 sets no precision).
AUTOLOGOUT_GRACE_SECONDS = 60.0
#: A `login` answered -ERR [IN-USE] while no other session of the scenario
#: uses the account is retried this long: a server may still be finishing the
#: previous session (its UPDATE, its process exit) and hold the lock a moment.
IN_USE_RETRY_SECONDS = 5.0
IN_USE_RETRY_PAUSE = 0.1
WRONG_PASSWORD_SUFFIX = "-not-the-password"
ProgressCallback = Callable[[ScenarioResult, int, int], None]


# --------------------------------------------------------------------------
# Verdicts


def verdict_for(failures: list[Failure], strict: bool) -> Verdict:
    """MUST-level or framing failures FAIL; SHOULD/MAY alone WARN (FAIL when strict)."""
    if not failures:
        return Verdict.PASS
    if any(f.level == "MUST" or f.kind == "framing" for f in failures):
        return Verdict.FAIL
    return Verdict.FAIL if strict else Verdict.WARN


def framing_failure(step: Step | None, finding: FramingFinding) -> Failure:
    return Failure(
        step=step.index if step else None,
        step_text=step.text if step else "",
        expected=finding.expected(),
        actual=finding.detail,
        requirement=finding.requirement,
        level="MUST",
        kind="framing",
    )


class _StopScenario(Exception):
    """A failure that makes the rest of the scenario meaningless."""


class _SkipScenario(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _ScenarioError(Exception):
    """The scenario could not be judged (connection refused, scenario bug)."""


def reply_timeout(step_timeout: float | None, auth: bool, config: RunConfig) -> float:
    """The deadline for one reply. Authentication replies get at least the
    run's auth_timeout, whatever a step says: failed logins are answered
    slowly on purpose by many servers (verdict-principles 4), and an operator
    who raises auth_timeout for such a server must be obeyed."""
    if auth:
        return max(step_timeout or 0.0, config.auth_timeout)
    return step_timeout or config.read_timeout


def deadline_scale(config: RunConfig) -> float:
    """Scenario deadlines grow with the run's reply deadlines, so raising
    --timeout or auth_timeout for a slow target never turns into a
    scenario-deadline FAIL."""
    return max(
        1.0,
        config.read_timeout / DEFAULT_READ_TIMEOUT,
        config.auth_timeout / DEFAULT_AUTH_TIMEOUT,
    )


# --------------------------------------------------------------------------
# Sessions as the engine sees them


@dataclass
class _PendingCommand:
    label: str  # "C: RETR 1" (redacted) for messages
    multiline: bool
    auth: bool


@dataclass
class _EngineSession:
    session: Session
    account: Account
    awaiting_greeting: bool = True
    pending: deque[_PendingCommand] = field(default_factory=deque)
    replies_unknown: bool = False  # after send:, how many replies are due is unknown
    gone: bool = False  # closed as or_close allowed: its remaining steps are skipped
    last_was_multiline: bool = False
    pending_label: str = ""  # what the reply being read answers, for messages
    step_timeout: float = 0.0  # the deadline used for that reply

    @property
    def quiet_expected(self) -> bool:
        """True when nothing may arrive: no reply is due."""
        return not (self.awaiting_greeting or self.pending or self.replies_unknown)


# --------------------------------------------------------------------------
# The run of one scenario


class _ScenarioRun:
    def __init__(self, runner: Runner, scenario: Scenario, transcript: Transcript) -> None:
        self.runner = runner
        self.config = runner.config
        self.scenario = scenario
        self.transcript = transcript
        self.failures: list[Failure] = []
        self.captures: dict[str, Any] = {}
        self.sessions: dict[str, _EngineSession] = {}
        timeout = (scenario.timeout or self.config.scenario_timeout) * deadline_scale(self.config)
        self.scenario_timeout = timeout
        self.deadline = deadline_after(timeout)

    # -- driving ---------------------------------------------------------------

    def execute(self) -> tuple[Verdict, str]:
        try:
            for step in self.scenario.steps:
                engine_session = self.sessions.get(step.session)
                if engine_session is not None and engine_session.gone:
                    continue
                self._step(step)
            self._check_quiet_at_end()
        except _StopScenario:
            pass
        except _SkipScenario as skip:
            if not self.failures:
                return Verdict.SKIP, skip.reason
        except _ScenarioError as error:
            if not any(f.level == "MUST" or f.kind == "framing" for f in self.failures):
                return Verdict.ERROR, str(error)
        finally:
            self._close_all()
        verdict = verdict_for(self.failures, self.config.strict)
        message = self.failures[0].one_line() if self.failures else ""
        return verdict, message

    def _step(self, step: Step) -> None:
        if time.monotonic() >= self.deadline:
            self._stop(
                step,
                f"the scenario to finish within {self.scenario_timeout:.1f} s",
                "the scenario deadline passed before this step",
                kind="timeout",
            )
        if step.until_autologout:
            step = self._with_autologout_deadline(step)
        handler = getattr(self, f"_do_{type(step).__name__}")
        handler(step)

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

    def _record(
        self, step: Step | None, expected: str, actual: str, *, level: str | None, kind: str
    ) -> Failure:
        failure = Failure(
            step=step.index if step else None,
            step_text=step.text if step else "",
            expected=expected,
            actual=actual,
            requirement=None,
            level=level or self.scenario.level,
            kind=kind,
        )
        self.failures.append(failure)
        return failure

    def _fail(
        self,
        step: Step,
        expected: str,
        actual: str,
        *,
        kind: str = "mismatch",
        level: str | None = None,
    ) -> None:
        """Record a failure; stop unless the step's own level makes it a soft check."""
        self._record(step, expected, actual, level=level, kind=kind)
        if level is None or level == self.scenario.level:
            raise _StopScenario

    def _stop(self, step: Step, expected: str, actual: str, *, kind: str = "mismatch") -> NoReturn:
        """Record a failure at the scenario's level and end the scenario."""
        self._record(step, expected, actual, level=None, kind=kind)
        raise _StopScenario

    def _framing(self, step: Step | None, findings: list[FramingFinding]) -> None:
        self.failures.extend(framing_failure(step, f) for f in findings)

    # -- names -----------------------------------------------------------------

    def env(self, engine_session: _EngineSession | None) -> dict[str, Any]:
        account = (
            engine_session.account if engine_session else self.runner.account(self.scenario.account)
        )
        env: dict[str, Any] = dict(self.runner.fact_names())
        env.update(user=account.user, password=account.password, count=account.count)
        env["wrong_password"] = account.password + WRONG_PASSWORD_SUFFIX
        # whether the target holds exactly the fixture's bytes (verdict-principles 12)
        env["byte_exact"] = self.runner.provisioner.byte_exact
        env["__fn_apop_digest__"] = self._apop_digest(engine_session)
        env.update(self.captures)
        return env

    def _apop_digest(self, default: _EngineSession | None) -> Callable[..., str]:
        def digest(secret: str, session_name: str | None = None) -> str:
            target = self.sessions.get(session_name) if session_name else default
            if target is None:
                raise ExpressionError(f"apop_digest: no session {session_name!r}")
            timestamp = greeting_timestamp(target.session.greeting)
            if timestamp is None:
                raise ExpressionError(
                    f"apop_digest: the greeting of session {target.session.name!r} has no timestamp"
                )
            return apop_digest_of(timestamp, str(secret))

        return digest

    def _render(self, step: Step, template: tuple[Segment, ...], env: Mapping[str, Any]) -> str:
        try:
            return render_segments(template, env)
        except ExpressionError as exc:
            raise _ScenarioError(f"step {step.index} ({step.text}): {exc}") from None

    def _session(self, step: Step) -> _EngineSession:
        return self.sessions[step.session]

    # -- actions ---------------------------------------------------------------

    def _do_OpenStep(self, step: OpenStep) -> None:
        role = step.account or self.scenario.account
        account = self.runner.account(role)
        old = self.sessions.get(step.session)
        if old is not None:
            old.session.close()
        try:
            session = Session.connect(
                step.session,
                self.runner.host,
                self.runner.port,
                self.transcript,
                timeout=min(step.timeout or self.config.read_timeout, self._remaining()),
                max_line_octets=self.config.max_line_octets,
                max_body_octets=self.config.max_body_octets,
                redact=self.config.redact,
            )
        except ConnectError as exc:
            self.transcript.event(step.session, str(exc))
            raise _ScenarioError(f"step {step.index} ({step.text}): {exc}") from None
        self.sessions[step.session] = _EngineSession(session, account)

    def _do_CommandStep(self, step: CommandStep) -> None:
        engine_session = self._session(step)
        text = self._render(step, step.template, self.env(engine_session))
        self._send_commands(step, engine_session, [text])

    def _do_PipelineStep(self, step: PipelineStep) -> None:
        engine_session = self._session(step)
        env = self.env(engine_session)
        texts = [self._render(step, t, env) for t in step.templates]
        self._send_commands(step, engine_session, texts)

    def _send_commands(self, step: Step, engine_session: _EngineSession, texts: list[str]) -> None:
        self._check_unsolicited(step, engine_session)
        data = b"".join(t.encode("utf-8") + b"\r\n" for t in texts)
        redactor = ClientRedactor(True)
        for text in texts:
            shown = redactor.redact(text.encode("utf-8")).decode("utf-8", errors="replace")
            verb = text.split()[0].upper() if text.split() else ""
            engine_session.pending.append(
                _PendingCommand(f"C: {shown}", command_is_multiline(text), verb in AUTH_COMMANDS)
            )
        engine_session.session.send(data)

    def _do_SendStep(self, step: SendStep) -> None:
        engine_session = self._session(step)
        text = self._render(step, step.template, self.env(engine_session))
        self._check_unsolicited(step, engine_session)
        data = text.encode("latin-1")
        engine_session.replies_unknown = True
        shown = show_bytes(ClientRedactor(True).redact(data))
        engine_session.pending.append(_PendingCommand(f"send: {shown}", False, _is_auth(data)))
        engine_session.session.send(data)

    def _do_LoginStep(self, step: LoginStep) -> None:
        engine_session = self._session(step)
        account = engine_session.account
        positive = status_pattern("+OK")
        commands = [f"USER {account.user}", f"PASS {account.password}"]
        if account.login == "apop":  # the account's one login method (RFC 1939 §13)
            timestamp = greeting_timestamp(engine_session.session.greeting)
            if timestamp is None:
                self._stop(step, "a greeting <timestamp> for APOP", "a greeting without one")
            commands = [f"APOP {account.user} {apop_digest_of(timestamp, account.password)}"]
        retry_until = time.monotonic() + IN_USE_RETRY_SECONDS
        while True:
            for text in commands:
                self._send_commands(step, engine_session, [text])
                reply = self._read(step, engine_session, multiline_override=None)
                self._framing(step, reply.findings)
                label = engine_session.pending_label
                if reply.outcome is not Outcome.COMPLETE or reply.status is None:
                    self._incomplete(step, reply, label, "+OK")
                status = reply.status
                if positive.match(status.line, {}).ok:
                    continue
                if (
                    is_in_use(status.line)
                    and time.monotonic() < retry_until
                    and engine_session.session.usable
                    and not self._holds_maildrop_elsewhere(engine_session)
                ):
                    # the previous session's server process may still be
                    # finishing (UPDATE, exit) and holding the lock
                    self.transcript.event(step.session, "maildrop in use: login retried")
                    time.sleep(IN_USE_RETRY_PAUSE)
                    break
                self._stop(step, f"+OK to {label}", describe_reply(reply))
            else:
                return

    def _holds_maildrop_elsewhere(self, engine_session: _EngineSession) -> bool:
        """True if another open session of this scenario uses the same account:
        then an [IN-USE] refusal is the behaviour under test, judged at once."""
        return any(
            other is not engine_session
            and other.account.user == engine_session.account.user
            and other.session.usable
            for other in self.sessions.values()
        )

    def _do_ReplyStep(self, step: ReplyStep) -> None:
        engine_session = self._session(step)
        reply = self._read(step, engine_session, multiline_override=step.multiline)
        label = engine_session.pending_label
        self._framing(step, reply.findings)
        if reply.outcome is not Outcome.COMPLETE or reply.status is None:
            if (
                step.or_close
                and reply.outcome in (Outcome.CLOSED, Outcome.RESET)
                and reply.status is None
            ):
                self.transcript.event(
                    step.session, "closed instead of replying (or_close: allowed)"
                )
                engine_session.gone = True
                engine_session.session.close()
                return
            self._incomplete(step, reply, label, step.pattern.source)
        status = reply.status
        env = self.env(engine_session)
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
        env = self.env(engine_session)
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

    def _guarded(self, step: Step, compute: Callable[[], Any]) -> Any:
        try:
            return compute()
        except ExpressionError as exc:
            raise _ScenarioError(f"step {step.index} ({step.text}): {exc}") from None

    def _read(
        self, step: Step, engine_session: _EngineSession, *, multiline_override: bool | None
    ) -> Reply:
        if engine_session.awaiting_greeting:
            engine_session.awaiting_greeting = False
            pending = _PendingCommand("connect (the greeting)", False, False)
        elif engine_session.pending:
            pending = engine_session.pending.popleft()
        else:
            pending = _PendingCommand("no command (waiting for an unsolicited reply)", False, False)
        engine_session.pending_label = pending.label
        multiline = pending.multiline if multiline_override is None else multiline_override
        timeout = reply_timeout(step.timeout, pending.auth, self.config)
        engine_session.step_timeout = timeout
        deadline = min(deadline_after(timeout), self.deadline)
        reply = engine_session.session.read_reply(multiline, deadline)
        if reply.status is not None and engine_session.session.greeting is None:
            engine_session.session.greeting = reply.status.line
        engine_session.last_was_multiline = reply.body_octets is not None
        if not engine_session.pending:
            engine_session.replies_unknown = False
        return reply

    def _incomplete(self, step: Step, reply: Reply, label: str, wanted: str) -> NoReturn:
        """A reply did not arrive whole: stall, flood, close or reset."""
        engine_session = self._session(step)
        if reply.outcome is Outcome.TIMEOUT:
            waited = engine_session.step_timeout
            if time.monotonic() >= self.deadline:
                actual = f"scenario deadline of {self.scenario_timeout:.1f} s passed after {label}"
            elif reply.status is not None:
                actual = f"body incomplete: no more data within {waited:.1f} s after {label}"
            else:
                actual = f"no reply within {waited:.1f} s after {label}"
            self._stop(step, repr(wanted), actual, kind="timeout")
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
        if quiet.outcome is Outcome.DATA:
            self._fail(step, expected, f"received {show_bytes(quiet.data)}")
        elif quiet.outcome is Outcome.TIMEOUT:
            self._fail(step, expected, f"connection still open after {wait:.1f} s", kind="timeout")
        engine_session.session.close()

    def _do_AssertStep(self, step: AssertStep) -> None:
        env = self.env(self.sessions.get(step.session))
        value = self._guarded(step, lambda: step.expression.evaluate(env))
        if not value:
            self._fail(
                step,
                f"{step.expression.text} to hold",
                f"it is {value!r} with {step.expression.describe_names(env)}",
                kind="assert",
                level=step.level,
            )

    def _do_SkipIfStep(self, step: SkipIfStep) -> None:
        env = self.env(self.sessions.get(step.session))
        if self._guarded(step, lambda: step.expression.evaluate(env)):
            raise _SkipScenario(f"{step.reason} ({step.expression.text})")

    # -- unsolicited data ------------------------------------------------------

    def _check_unsolicited(self, step: Step, engine_session: _EngineSession) -> None:
        if not engine_session.quiet_expected:
            return
        data = engine_session.session.drain_unsolicited()
        if data:
            self._unsolicited(step, engine_session, data, f"before {step.text}")

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
        self.failures.append(framing_failure(step, framing.finding(rule, detail)))

    def _check_quiet_at_end(self) -> None:
        for engine_session in self.sessions.values():
            if engine_session.gone or not engine_session.session.usable:
                continue
            if engine_session.quiet_expected:
                data = engine_session.session.drain_unsolicited()
                if data:
                    self._unsolicited(None, engine_session, data, "at the end of the scenario")

    def _remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.01)

    def _close_all(self) -> None:
        for engine_session in self.sessions.values():
            engine_session.session.close()


def _is_auth(data: bytes) -> bool:
    verb = data.split(None, 1)[0].upper() if data.split() else b""
    return verb.decode("latin-1") in AUTH_COMMANDS


# --------------------------------------------------------------------------
# Mailbox verification


class VerificationError(Exception):
    """The maildrop could not be checked, or does not hold what the fixture
    says (`content`); the message shows the difference."""

    def __init__(self, message: str, *, content: bool = False) -> None:
        super().__init__(message)
        self.content = content


def verify_maildrop(
    host: str,
    port: int,
    config: RunConfig,
    account: Account,
    byte_exact: bool,
    transcript: Transcript,
) -> None:
    """STAT count (and, when byte-exact, LIST sizes) against the fixture."""
    try:
        probe, _ = connect_and_greet(host, port, config, transcript, f"verify-{account.role}")
    except TargetUnreachable as exc:
        raise VerificationError(str(exc)) from None
    try:
        _verify_over(probe, account, byte_exact)
    finally:
        probe.session.close()


def _verify_over(probe: ProbeSession, account: Account, byte_exact: bool) -> None:
    problem = login(probe, account)
    if problem:
        raise VerificationError(f"cannot log in as {account.user} (role {account.role}): {problem}")
    stat = probe.command("STAT")
    fields = stat.status.line.split() if is_positive(stat) and stat.status else []
    if len(fields) < 3 or not (fields[1].isdigit() and fields[2].isdigit()):
        raise VerificationError(f"STAT for {account.user} answered {describe_reply(stat)}")
    listing = probe.command("LIST", multiline=True)
    if not is_positive(listing) or listing.body_octets is None:
        raise VerificationError(f"LIST for {account.user} answered {describe_reply(listing)}")
    sizes = [_scan_listing(line) for line in listing.lines]
    if None in sizes:
        bad = listing.lines[sizes.index(None)]
        raise VerificationError(f"LIST for {account.user} sent the line {show_bytes(bad)}")
    differences = verify_listing(
        account, (int(fields[1]), int(fields[2])), [s for s in sizes if s], byte_exact
    )
    if differences:
        raise VerificationError("; ".join(differences), content=True)
    probe.command("QUIT")


def _scan_listing(line: bytes) -> tuple[int, int] | None:
    """RFC 1939 §5 scan listing "msg octets" as numbers."""
    parts = line.split()
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        return int(parts[0]), int(parts[1])
    return None


# --------------------------------------------------------------------------
# Runner


class Runner:
    """Runs scenarios against one target (the embedded server by default)."""

    fingerprint: TargetFingerprint

    def __init__(self, config: RunConfig, *, fixture: Fixture | None = None) -> None:
        self.config = config
        try:
            base = fixture if fixture is not None else load_fixture(config.fixture_dir)
        except FixtureError as exc:
            raise ConfigError(str(exc)) from None
        self.fixture = with_credentials(base, config.accounts)
        self.host = config.host or "127.0.0.1"
        self.port = config.port
        self.provisioner: Provisioner = NoneProvisioner()
        self._embedded: EmbeddedServer | None = None
        self._needs_reset: set[str] = set(self.fixture.accounts)  # never provisioned yet
        self._last_scenario: dict[str, str] = {}
        self._logged_in: set[str] = set()  # roles whose credentials worked in this run
        self._content_known: set[str] = set()  # roles verified or restored since any commit
        self._facts = self._fact_names()  # the fixture is fixed for the run: built once

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> Runner:
        try:
            if self.config.host is None:
                from conformance.embedded import EmbeddedServer

                embedded = EmbeddedServer(self.fixture, self.config)
                self._embedded = embedded
                self.host, self.port = embedded.start()
                assert embedded.provisioner is not None
                self.provisioner = embedded.provisioner
            else:
                self.provisioner = external_provisioner(
                    self.config.provision, (self.host, self.port)
                )
            main = self.account("main")
            self._reset(main)
            self.fingerprint = learn_fingerprint(
                self.host, self.port, self.config, main, embedded=self._embedded is not None
            )
            if self.fingerprint.capabilities and isinstance(self.config.capabilities, str):
                self._logged_in.add(main.role)  # the probe logged in with it
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.provisioner.close()
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None

    # -- fixture facts ---------------------------------------------------------

    def account(self, role: str) -> Account:
        try:
            return self.fixture.account(role)
        except FixtureError as exc:
            raise _ScenarioError(str(exc)) from None

    def fact_names(self) -> dict[str, Any]:
        """Names every scenario sees (`accounts`, `bogus_user`); callers copy it."""
        return self._facts

    def _fact_names(self) -> dict[str, Any]:
        accounts = {
            role: Namespace(
                f"accounts.{role}",
                {"user": a.user, "password": a.password, "count": a.count, "size": a.size},
            )
            for role, a in self.fixture.accounts.items()
        }
        users = {a.user for a in self.fixture.accounts.values()}
        bogus = BOGUS_USER
        while bogus in users:
            bogus += "-x"
        return {"accounts": Namespace("accounts", accounts), "bogus_user": bogus}

    # -- running ---------------------------------------------------------------

    def run(self, scenario: Scenario) -> ScenarioResult:
        started = time.monotonic()
        transcript = Transcript()
        result = ScenarioResult(
            scenario_id=scenario.id,
            title=scenario.title,
            section=scenario.section,
            requirements=list(scenario.requirements),
            level=scenario.level,
            verdict=Verdict.PASS,
            source=scenario.source,
        )
        try:
            result.verdict, result.message = self._run(scenario, transcript, result)
        except _ScenarioError as error:
            result.verdict, result.message = Verdict.ERROR, str(error)
        except MailspecError as error:
            result.verdict, result.message = Verdict.ERROR, str(error)
        except OSError as error:  # the local machine, not the target: cannot judge
            result.verdict, result.message = Verdict.ERROR, f"local I/O error: {error}"
        result.transcript = transcript.entries
        result.duration = round(time.monotonic() - started, 6)
        return result

    def _run(
        self, scenario: Scenario, transcript: Transcript, result: ScenarioResult
    ) -> tuple[Verdict, str]:
        if scenario.slow and not self.config.slow:
            return Verdict.SKIP, "slow scenario (minutes): run with --slow"
        missing = [n for n in scenario.needs if n not in self.fingerprint.capabilities]
        if missing:
            return (
                Verdict.SKIP,
                f"target lacks {missing[0]} ({self._capability_source(missing[0])})",
            )
        problem = self._prepare_mailboxes(scenario, transcript)
        if problem:
            return Verdict.ERROR, problem
        transcript.event("*", f"scenario {scenario.id} starts")
        run = _ScenarioRun(self, scenario, transcript)
        verdict, message = run.execute()
        result.failures = run.failures
        for role in scenario.accounts_used() if scenario.logs_in() else ():
            self._last_scenario[role] = scenario.id
            if scenario.commits:
                self._needs_reset.add(role)
                self._content_known.discard(role)
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
        if (
            self.fingerprint.capa_authorization is None
            and self.fingerprint.capa_transaction is None
        ):
            return "no CAPA, and the probe did not find it"
        return "not advertised by CAPA"

    def _prepare_mailboxes(self, scenario: Scenario, transcript: Transcript) -> str | None:
        """Reset what needs it and verify every account the scenario logs in
        to; the reason for an ERROR, or None. A scenario that never logs in
        cannot see a maildrop and is not verified."""
        if not scenario.logs_in():
            return None
        for role in scenario.accounts_used():
            account = self.account(role)
            try:
                if role in self._needs_reset:
                    self._reset(account)
                verify_maildrop(
                    self.host,
                    self.port,
                    self.config,
                    account,
                    self.provisioner.byte_exact,
                    transcript,
                )
            except ProvisionError as exc:
                self._needs_reset.add(role)  # try again before the next scenario
                return f"mailbox not ready: {exc}"
            except VerificationError as exc:
                if not exc.content and self._trusted_unverified(role):
                    transcript.event(
                        "*",
                        f"could not verify {role}: {exc}; it verified earlier in this run and "
                        "was restored since, so the scenario runs and judges the server",
                    )
                    continue
                self._needs_reset.add(role)
                return f"mailbox not ready: {exc}{self._blame(role) if exc.content else ''}"
            self._logged_in.add(role)
            self._content_known.add(role)
        return None

    def _trusted_unverified(self, role: str) -> bool:
        """The server refused the verification's own commands (login, STAT,
        LIST) for an account we know anyway: its credentials worked earlier
        in this run, and its content was verified or written by a
        provisioner since the last commit."""
        return role in self._logged_in and role in self._content_known

    def _reset(self, account: Account) -> None:
        self.provisioner.reset(account)
        self._needs_reset.discard(account.role)
        if not isinstance(self.provisioner, NoneProvisioner):
            self._content_known.add(account.role)

    def _blame(self, role: str) -> str:
        previous = self._last_scenario.get(role)
        hint = f"; last used by {previous}" if previous else ""
        if isinstance(self.provisioner, NoneProvisioner):
            hint += " (provision: none cannot restore it; re-provision the target by hand)"
        return hint


def with_credentials(fixture: Fixture, overrides: Mapping[str, Mapping[str, str]]) -> Fixture:
    """The fixture with the configured user names/passwords of its roles."""
    accounts = dict(fixture.accounts)
    for role, values in overrides.items():
        if role not in accounts:
            raise ConfigError(
                f"accounts.{role}: the fixture has no such role ({', '.join(accounts)})"
            )
        changes = {k: v for k, v in values.items() if k in ("user", "password")}
        accounts[role] = dataclasses.replace(accounts[role], **changes)  # type: ignore[arg-type]
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
) -> RunResult:
    """Run `scenarios` in order; raises TargetUnreachable/ProvisionError only
    when the run cannot start. `fixture` replaces the one `config` names."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    results: list[ScenarioResult] = []
    with Runner(config, fixture=fixture) as runner:
        for position, scenario in enumerate(scenarios, 1):
            result = runner.run(scenario)
            results.append(result)
            if progress is not None:
                progress(result, position, len(scenarios))
        fingerprint = runner.fingerprint
    return RunResult(
        tool_version=__version__,
        started_at=started_at,
        duration=round(time.monotonic() - started, 3),
        target=fingerprint,
        config=config.redacted(),
        results=results,
        strict=config.strict,
    )
