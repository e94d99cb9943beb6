"""Runs SMTP scenarios against a target (the embedded reference SMTP server
by default) and judges every reply (docs/scenario-format-smtp.md).

Standing oracles, on every reply whatever the scenario asks:

* framing (conformance.smtp.framing): reply grammar, one code per reply,
  512-octet lines, CRLF; a bare code is a SHOULD (SMTP-5321-REPLY-03);
* exactly one reply per command: bytes that no command asked for are a
  finding (SMTP-5321-SEQ-03);
* the code set (conformance.smtp.codes): a positive code outside the
  command's set breaks the command's own rule (MUST), an unlisted refusal
  is a SHOULD (SMTP-5321-REPLY-05). Checked when the step's own
  expectation held, so one wrong reply is reported once.

A step's own expectation that fails stops the scenario: the dialogue is no
longer the one the scenario describes. A 421 is always an allowed answer
(RFC 5321 §3.8: the server is shutting the channel) when the step allows
the server to close (`or_close`); otherwise it fails the step like any
other code the step did not list.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conformance.core.catalogue import load_catalogue
from conformance.core.client_tls import context_for, server_name
from conformance.core.config import RunConfig
from conformance.core.driver import ConnectError, Outcome, deadline_after
from conformance.core.expressions import Namespace
from conformance.core.fixture import Account, Fixture, FixtureError
from conformance.core.pools import check_pool_config, templated_accounts, with_credentials
from conformance.core.results import Failure, ScenarioResult, TargetFingerprint, Verdict
from conformance.core.run import ScenarioRunBase, TargetRunner
from conformance.core.sasl import PURE_FUNCTIONS as SASL_FUNCTIONS
from conformance.core.scenario import (
    CATALOGUE_LEVEL_TO_SCENARIO_LEVEL,
    CommandStep,
    DropStep,
    ExpectCloseStep,
    ExpectOpenStep,
    IdleStep,
    OpenStep,
    PipelineStep,
    Scenario,
    SendStep,
    StartTlsStep,
    Step,
)
from conformance.core.tls import TlsError
from conformance.core.transcript import Transcript, show_bytes
from conformance.core.verdicts import ScenarioError, SkipScenario, StopScenario
from conformance.smtp import codes as code_table
from conformance.smtp.capabilities import CLIENT_NAME, open_session, probe
from conformance.smtp.delivery import MaildirInspector, StoredMessage, make_inspector
from conformance.smtp.reader import Reply, unsolicited
from conformance.smtp.scenario import (
    DataStep,
    DeliveredStep,
    EndIfStep,
    SmtpReplyStep,
)
from conformance.smtp.session import SmtpRead, SmtpSession

if TYPE_CHECKING:
    from conformance.embedded import EmbeddedServer

GREETING_LABEL = "connect (the greeting)"
END_OF_DATA_LABEL = "the end of data"
#: RFC 5321 §3.1, §4.3.2 CONNECTION ESTABLISHMENT: S: 220 E: 554 (421: §3.8)
#: RFC 5321 §3.1 (220, or 554 refusing the session), §3.8 (421), RFC 7504
#: §2 (521: this host never accepts mail)
GREETING_CODES = frozenset({220, 554, 421, 521})
REFUSED_GREETINGS = frozenset({554, 521})
GREETING_RULE = ("SMTP-5321-GREET-01", "SMTP-5321-GREET-")
END_OF_DATA_RULE = ("SMTP-5321-DATA-03", "SMTP-5321-DATA-")
QUIT_RULE = ("SMTP-5321-QUIT-01", "SMTP-5321-QUIT-")
BARE_CODE_RULE = "SMTP-5321-REPLY-03"
CODE_SET_RULE = "SMTP-5321-REPLY-05"
ONE_REPLY_RULE = "SMTP-5321-SEQ-03"
TRACE_RULE = "SMTP-5321-TRACE-01"  # RFC 5321 §4.4: Received: (and Return-Path:) on top
SERVICE_CLOSING = 421
#: Addresses scenarios use (RFC 2606 reserved names: never a real mailbox).
SENDER = "mailspec-sender@sender.mailspec.test"
RELAY_RECIPIENT = "mailspec-relay-probe@relay.mailspec.invalid"
BOGUS_LOCAL_PART = "mailspec-no-such-user"
EMBEDDED_DOMAIN = "example.test"
#: How long a `count: 0` delivery check waits for a queued delivery that
#: should not come (the embedded server delivers before its 250).
NOTHING_DELIVERED_WAIT = 2.0
#: Before a scenario inspects deliveries on a queueing target: no new file
#: for this long means the earlier scenarios' messages have all arrived.
SETTLE_QUIET_SECONDS = 1.0
SETTLE_LIMIT_SECONDS = 4.0
#: `timeout: autologout`: how long past the target's stated command timer
#: the suite waits for its 421 or close
COMMAND_TIMER_GRACE_SECONDS = 60.0
GREETING_TIMEOUT = 30.0  # RFC 5321 §4.5.3.2.1 lets a client wait 5 minutes; postscreen delays


@dataclass
class _Pending:
    label: str  # "C: MAIL FROM:<…>" for messages
    verb: str = ""  # upper-cased command keyword; "" for the greeting, data, raw bytes
    kind: str = "command"  # command | greeting | data | raw


@dataclass
class _Connection:
    session: SmtpSession
    account: Account
    pending: deque[_Pending] = field(default_factory=deque)
    replies_unknown: bool = False  # after send:, which replies are due is unknown
    gone: bool = False  # closed as or_close allowed: its remaining steps are skipped
    #: the last reply was a refusal read by an `or_close` step: the server may
    #: close now (an abuse limit, smtp-notes §7 items 15, 19, 21), which the
    #: next read then takes as the allowed branch
    close_allowed: bool = False
    last_code: int | None = None
    #: greeted 554 or 521: RFC 5321 §3.1 answers every command but QUIT 503
    refused: bool = False

    @property
    def quiet_expected(self) -> bool:
        return not (self.pending or self.replies_unknown)


class _SmtpScenarioRun(ScenarioRunBase):
    def __init__(self, runner: SmtpRunner, scenario: Scenario, transcript: Transcript) -> None:
        super().__init__(runner.config, scenario, transcript)
        self.runner = runner
        self.connections: dict[str, _Connection] = {}
        self.before: dict[str, set[str]] = {}

        if runner.inspector is not None:
            users = {
                step.role: runner.account(step.role).user
                for step in scenario.steps
                if isinstance(step, DeliveredStep)
            }
            if users and runner.text_sent and not runner.embedded:
                # a queue may still deliver what earlier scenarios sent: let it
                # settle, or its message would count as this scenario's
                runner.inspector.settle(
                    set(users.values()), quiet=SETTLE_QUIET_SECONDS, limit=SETTLE_LIMIT_SECONDS
                )
                runner.text_sent = False
            for role, user in users.items():
                self.before[role] = runner.inspector.names(user)

    # -- hooks -------------------------------------------------------------------

    def env(self, session_name: str | None) -> dict[str, Any]:
        connection = self.connections.get(session_name) if session_name else None
        account = connection.account if connection else self.runner.account(self.scenario.account)
        env = dict(self.runner.facts)
        env.update(SASL_FUNCTIONS)  # b64(), sasl_plain() for AUTH exchanges (RFC 4954 §4)
        env.update(
            user=account.user,
            password=account.password,
            rcpt=self.runner.address_of(account),
        )
        env.update(self.captures)
        return env

    def _skips(self, step: Step) -> bool:
        connection = self.connections.get(step.session)
        return connection is not None and connection.gone

    def _prepare(self, step: Step) -> Step:
        """`timeout: autologout`: the target's command timer (RFC 5321
        §4.5.3.2.7) plus a grace period, as the operator stated it."""
        if not step.until_autologout:
            return step
        if self.config.autologout is None:
            raise SkipScenario(
                "the target's command timeout is unknown: give it as 'autologout:' in the "
                "target config or with --autologout SECONDS"
            )
        return dataclasses.replace(
            step, timeout=float(self.config.autologout) + COMMAND_TIMER_GRACE_SECONDS
        )

    def _intrinsic_rule(self, step: Step | None) -> tuple[str, str] | None:
        connection = self.connections.get(step.session) if step is not None else None
        if connection is None or not connection.pending:
            return None
        pending = connection.pending[0]
        if isinstance(step, SmtpReplyStep):
            if pending.kind == "greeting":
                return GREETING_RULE
            if pending.kind == "data":
                return END_OF_DATA_RULE
        if isinstance(step, SmtpReplyStep | ExpectCloseStep) and pending.verb == "QUIT":
            return QUIT_RULE
        return None

    def _check_quiet_at_end(self) -> None:
        for connection in self.connections.values():
            if connection.gone or not connection.session.usable:
                continue
            if connection.quiet_expected:
                data = connection.session.drain_unsolicited()
                if data:
                    self._unsolicited(None, data, "at the end of the scenario")

    def _close_all(self) -> None:
        for connection in self.connections.values():
            connection.session.close()

    def _connection(self, step: Step) -> _Connection:
        return self.connections[step.session]

    # -- connecting ----------------------------------------------------------------

    def _do_OpenStep(self, step: OpenStep) -> None:
        if step.plaintext and self.config.tls == "implicit":
            raise SkipScenario("the run uses implicit TLS: no plaintext session")
        account = self.runner.account(step.account or self.scenario.account)
        try:
            session = open_session(
                step.session,
                self.runner.host,
                self.runner.port,
                self.transcript,
                self.config,
                min(self.config.read_timeout, self._remaining()),
            )
        except ConnectError as exc:
            self.unreachable = True
            raise ScenarioError(f"step {step.index} ({step.text}): {exc}") from None
        connection = _Connection(session, account)
        connection.pending.append(_Pending(GREETING_LABEL, kind="greeting"))
        self.connections[step.session] = connection

    def _do_StartTlsStep(self, step: StartTlsStep) -> None:
        """The client side of STARTTLS (RFC 3207 §4): the handshake right
        after the 220 was read. Plaintext after the 220 is a finding."""
        connection = self._connection(step)
        if connection.last_code != 220:
            raise ScenarioError(
                f"step {step.index} ({step.text}): 'starttls' needs the 220 of STARTTLS first"
            )
        try:
            leftover = connection.session.start_tls(
                context_for(self.config),
                server_name(self.config, self.runner.host),
                deadline_after(min(self.config.read_timeout, self._remaining())),
            )
        except TlsError as exc:
            if step.or_close and connection.session.closed_by_server:
                connection.gone = True
                return
            if exc.deployment:
                self._tls_setup_failed(step, "the 220 to STARTTLS", exc)
            self._stop(step, "a TLS handshake after 220", str(exc), kind="tls")
        # RFC 3207 §4.2: commands pipelined behind STARTTLS are discarded, so
        # no reply is owed to them; one arriving is a finding (below, or as
        # unsolicited bytes before the next command)
        connection.pending.clear()
        if leftover:
            self._unsolicited(step, leftover, "in plaintext after the 220 to STARTTLS")
        if step.seconds:
            quiet = connection.session.wait_quiet(step.seconds, self.deadline)
            if quiet.outcome is Outcome.DATA:
                self._unsolicited(step, quiet.data, "inside TLS before any command")

    # -- sending -------------------------------------------------------------------

    def _do_CommandStep(self, step: CommandStep) -> None:
        connection = self._connection(step)
        line = self._render(step, step.template, self.env(step.session))
        self._send(step, connection, [line])

    def _do_PipelineStep(self, step: PipelineStep) -> None:
        connection = self._connection(step)
        env = self.env(step.session)
        self._send(step, connection, [self._render(step, t, env) for t in step.templates])

    def _send(self, step: Step, connection: _Connection, lines: list[str]) -> None:
        self._check_unsolicited(step, connection)
        connection.session.send(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))
        for line in lines:
            verb = line.split(" ", 1)[0].upper() if line else ""
            connection.pending.append(
                _Pending(
                    connection.session.redactor.redact(line.encode("utf-8", "replace")).decode(
                        "utf-8", "replace"
                    ),
                    verb,
                )
            )

    def _do_SendStep(self, step: SendStep) -> None:
        connection = self._connection(step)
        data = self._render(step, step.template, self.env(step.session)).encode("latin-1")
        self._check_unsolicited(step, connection)
        connection.session.send(data)
        if connection.last_code == 354:  # raw message text
            self.runner.text_sent = True
        connection.pending.clear()
        connection.replies_unknown = True

    def _do_DataStep(self, step: DataStep) -> None:
        """The message text (RFC 5321 §4.5.2: a line starting with '.' gets
        one more), then the end-of-data line."""
        connection = self._connection(step)
        env = self.env(step.session)
        out = []
        for template in step.lines:
            line = self._render(step, template, env).encode("utf-8")
            out.append((b"." + line if line.startswith(b".") else line) + b"\r\n")
        out.append(b".\r\n")
        self.runner.text_sent = True
        self._check_unsolicited(step, connection)
        connection.session.send(b"".join(out))
        connection.pending.append(_Pending(END_OF_DATA_LABEL, kind="data"))

    # -- replies -------------------------------------------------------------------

    def _do_SmtpReplyStep(self, step: SmtpReplyStep) -> None:
        connection = self._connection(step)
        pending = (
            connection.pending.popleft()
            if connection.pending
            else _Pending("the bytes sent", kind="raw")
        )
        timeout = step.timeout or (
            max(GREETING_TIMEOUT, self.config.read_timeout)
            if pending.kind == "greeting"
            else self.config.read_timeout
        )
        deadline = min(deadline_after(timeout), self.deadline)
        read = connection.session.read_reply(deadline)
        self._framing(step, read.findings)
        if read.outcome is not Outcome.COMPLETE or read.reply is None:
            self._no_reply(step, connection, pending, read, timeout)
            return
        reply = read.reply
        connection.last_code = reply.code
        if pending.kind == "greeting":
            connection.refused = reply.code in REFUSED_GREETINGS
        connection.close_allowed = step.or_close and reply.code is not None and reply.code >= 400
        if reply.bare_code:
            self._record(
                step,
                "a space after the reply code even without text (RFC 5321 §4.2.1)",
                show_bytes(reply.lines[-1].raw),
                level="SHOULD",
                kind="mismatch",
                requirement=BARE_CODE_RULE,
            )
        self._save(step, reply)
        wanted = step.codes.describe()
        outside = self._code_set_oracle(step, pending, reply)
        if step.codes.matches(reply.code):
            if outside is not None:
                self.failures.append(outside)
            return
        if (
            outside is not None
            and outside.level == "MUST"
            and (step.level or self.scenario.level) != "MUST"
        ):
            self.failures.append(outside)  # the step's own check is softer than the rule
        if reply.code == SERVICE_CLOSING and step.or_close:
            self._expect_gone(step, connection)
            return
        if step.non_strict.matches(reply.code):
            self._record(
                step,
                f"{wanted} to {pending.label}",
                f"{show_bytes(reply.raw[:200])} (tolerated: a deployed server may answer so)",
                level="SHOULD",
                kind="non-strict",
            )
            return
        self._stop(
            step,
            f"{wanted} to {pending.label}",
            show_bytes(reply.raw[:300]),
            level=step.level,
        )

    def _save(self, step: SmtpReplyStep, reply: Reply) -> None:
        if step.save:
            self.captures[step.save] = [t.decode("utf-8", "replace") for t in reply.texts]
        if step.save_code:
            self.captures[step.save_code] = reply.code
        if step.text_re is not None:
            text = "\n".join(t.decode("utf-8", "replace") for t in reply.texts)
            if not step.text_re.search(text):
                self._stop(
                    step,
                    f"reply text matching /{step.text_re.pattern}/",
                    show_bytes(reply.raw[:300]),
                    level=step.level,
                )

    def _code_set_oracle(
        self, step: SmtpReplyStep, pending: _Pending, reply: Reply
    ) -> Failure | None:
        """The failure of a code outside the command's set (not recorded
        here), at the level of the requirement it breaks."""
        code = reply.code
        assert code is not None
        if self._connection(step).replies_unknown:
            # after raw bytes (`send:`) a reply may answer a command smuggled
            # in them: which command it answers is unknown, so no command's
            # code set judges it (the step's own codes still do)
            return None
        if pending.kind == "greeting":
            allowed, rule = GREETING_CODES, GREETING_RULE[0]
        elif pending.kind == "data":
            allowed = code_table.END_OF_DATA | code_table.ANY_COMMAND
            rule = END_OF_DATA_RULE[0]
        else:
            row = code_table.codes_for(pending.verb)
            if row is None:
                return None
            allowed, rule = row.allowed(), row.requirement
            if self._connection(step).refused:
                allowed = allowed | {503}  # RFC 5321 §3.1: the refused session's answer
        if code in allowed:
            return None
        positive = code_table.is_positive(code)
        requirement = rule if positive else CODE_SET_RULE
        return Failure(
            step=step.index,
            step_text=step.text,
            expected=f"a code RFC 5321 §4.3.2 lists for {pending.label} "
            f"({', '.join(map(str, sorted(allowed)))})",
            actual=f"{code}: {show_bytes(reply.raw[:200])}",
            requirement=requirement,
            level=self.runner.level_of(requirement),
            kind="code-set",
        )

    def _no_reply(
        self,
        step: SmtpReplyStep,
        connection: _Connection,
        pending: _Pending,
        read: SmtpRead,
        timeout: float,
    ) -> None:
        if read.outcome in (Outcome.CLOSED, Outcome.RESET) and (
            step.or_close or connection.close_allowed
        ):
            connection.gone = True
            why = "the step" if step.or_close else "the refusal before (or_close)"
            self.transcript.event(step.session, f"closed as {why} allows")
            return
        wanted = f"{step.codes.describe()} to {pending.label}"
        if read.outcome is Outcome.TIMEOUT:
            self._stop(
                step, wanted, f"no reply within {timeout:.1f} s", kind="timeout", level="MUST"
            )
        if read.outcome is Outcome.FLOOD:
            self._stop(step, wanted, f"a flood: {read.detail}", kind="flood", level="MUST")
        partial = f" (a partial line: {read.detail})" if read.detail else ""
        self._stop(
            step,
            wanted,
            f"the connection was {read.outcome.value} before the reply{partial}",
            kind="closed",
            level="MUST",
        )

    def _expect_gone(self, step: Step, connection: _Connection) -> None:
        """A 421 the step allows: the server must then close (RFC 5321 §3.8)."""
        quiet = connection.session.wait_quiet(min(5.0, self._remaining()), self.deadline)
        if quiet.outcome in (Outcome.CLOSED, Outcome.RESET):
            connection.gone = True
            return
        self._stop(
            step,
            "the connection closed after 421 (RFC 5321 §3.8)",
            "it stayed open" if quiet.outcome is Outcome.TIMEOUT else show_bytes(quiet.data[:200]),
            level="SHOULD",
            requirement="SMTP-5321-CLOSE-03",
        )

    # -- unsolicited data ------------------------------------------------------------

    def _check_unsolicited(self, step: Step, connection: _Connection) -> None:
        if not connection.quiet_expected or not connection.session.usable:
            return
        data = connection.session.drain_unsolicited()
        if data:
            self._unsolicited(step, data, "before this command")

    def _unsolicited(self, step: Step | None, data: bytes, where: str) -> None:
        finding = unsolicited(data)
        # A step may say what an extra reply means there (`requirement:`):
        # e.g. a command smuggled out of the message text is a DATA-04
        # finding, judged at the scenario's level; otherwise it breaks the
        # one-reply-per-command rule (MUST).
        pinned = step.requirement if step is not None else None
        self.failures.append(
            Failure(
                step=step.index if step else None,
                step_text=step.text if step else "",
                expected=f"nothing {where}: one reply per command (RFC 5321 §4.2)",
                actual=finding.detail,
                requirement=pinned or ONE_REPLY_RULE,
                level=self.scenario.level if pinned else "MUST",
                kind="mismatch" if pinned else "framing",
            )
        )

    # -- closing and waiting ----------------------------------------------------------

    def _do_DropStep(self, step: DropStep) -> None:
        self._connection(step).session.close()
        self.connections.pop(step.session, None)

    def _do_IdleStep(self, step: IdleStep) -> None:
        # the whole idle, not up to the first chunk: replies written one by
        # one may reach us in one segment or several, and what the next
        # command's read sees must not depend on that
        connection = self._connection(step)
        quiet = connection.session.collect_for(step.seconds, self.deadline)
        if quiet.outcome is Outcome.DATA:
            self._unsolicited(step, quiet.data, f"during {step.seconds:g} s idle")

    def _do_ExpectOpenStep(self, step: ExpectOpenStep) -> None:
        connection = self._connection(step)
        quiet = connection.session.wait_quiet(step.seconds, self.deadline)
        if quiet.outcome in (Outcome.CLOSED, Outcome.RESET):
            self._stop(
                step, f"the connection open for {step.seconds:g} s", f"it was {quiet.outcome.value}"
            )
        if quiet.outcome is Outcome.DATA and quiet.data.startswith(b"421"):
            # RFC 5321 §3.8: 421 may come at any time, ahead of a close (a
            # timer, a shutdown): the session ends early, no extra reply
            self._stop(
                step,
                f"the connection open for {step.seconds:g} s",
                f"the server ended it early: {show_bytes(quiet.data[:200])}",
            )
        if quiet.outcome is Outcome.DATA:
            self._unsolicited(step, quiet.data, f"during {step.seconds:g} s")

    def _do_ExpectCloseStep(self, step: ExpectCloseStep) -> None:
        connection = self._connection(step)
        timeout = step.timeout or self.config.read_timeout
        quiet = connection.session.wait_quiet(timeout, self.deadline)
        if quiet.outcome is Outcome.DATA:
            self._unsolicited(step, quiet.data, "before the close")
            quiet = connection.session.wait_quiet(timeout, self.deadline)
        if quiet.outcome not in (Outcome.CLOSED, Outcome.RESET):
            self._stop(
                step,
                "the server to close the connection",
                f"still open after {timeout:.1f} s",
                kind="timeout",
            )
        if step.close_notify and connection.session.tls is not None:
            if connection.session.tls_close_notify is False:
                self._record(
                    step,
                    "TLS closed with close_notify",
                    "TCP closed without close_notify",
                    level=None,
                    kind="tls",
                )
        # the close was expected: steps that do not speak on the session
        # (delivered:, end_if:, assert:) still run, unlike after or_close

    # -- delivery -------------------------------------------------------------------

    def _do_DeliveredStep(self, step: DeliveredStep) -> None:
        inspector = self.runner.inspector
        if inspector is None:
            raise SkipScenario(
                "no delivery inspection for this target (configure smtp: delivery: "
                "maildir:/path/{user}/Maildir)"
            )
        user = self.runner.account(step.role).user
        wait = self.config.smtp_delivery_wait if step.count else self._nothing_wait()
        messages = inspector.new_messages(
            user,
            self.before.get(step.role, set()),
            want=step.count,
            wait=min(wait, self._remaining()),
        )
        self.transcript.event(
            "*",
            f"delivery: {len(messages)} new message(s) for {user}"
            + "".join(f"\n  {m.name}: {len(m.data)} octets" for m in messages),
        )
        if len(messages) != step.count:
            self._stop(
                step,
                f"{step.count} message(s) delivered to {user}",
                f"{len(messages)} arrived within {wait:.1f} s",
                kind="delivery",
            )
        if step.count == 1:
            self._judge_stored(step, messages[0])

    def _nothing_wait(self) -> float:
        return 0.0 if self.runner.embedded else NOTHING_DELIVERED_WAIT

    def _judge_stored(self, step: DeliveredStep, message: StoredMessage) -> None:
        trace, rest = message.trace_and_rest()
        if step.trace:
            names = [f.split(b":", 1)[0].lower() for f in trace]
            for wanted in (b"return-path", b"received"):
                if wanted not in names:
                    self._record(
                        step,
                        f"a {wanted.decode().title()}: field on top of the stored message "
                        "(RFC 5321 §4.4)",
                        f"the message starts {show_bytes(message.data[:120])}",
                        level=None,
                        kind="delivery",
                        # the trace rule broke, whatever else the step checks
                        requirement=TRACE_RULE,
                    )
        trace_text = b"".join(trace).decode("utf-8", "replace")
        for pattern in step.trace_matches:
            if not pattern.search(trace_text):
                self._record(
                    step,
                    f"trace fields matching /{pattern.pattern}/",
                    show_bytes(b"".join(trace)[:300]),
                    level=None,
                    kind="delivery",
                )
        for pattern in step.trace_lacks:
            found = pattern.search(trace_text)
            if found:
                self._record(
                    step,
                    f"no trace field matching /{pattern.pattern}/",
                    f"found {found.group(0)!r} in {show_bytes(b''.join(trace)[:300])}",
                    level=None,
                    kind="delivery",
                )
        text = rest.decode("utf-8", "replace")
        for needle in step.contains:
            if needle not in text:
                self._record(
                    step,
                    f"the stored message to contain {needle!r}",
                    f"it does not: {show_bytes(rest[:200])}",
                    level=None,
                    kind="delivery",
                )
        if step.starts_with:
            eol = b"\r\n" if b"\r\n" in rest else b"\n"  # a Maildir may store LF lines
            wanted = b"".join(line.encode("utf-8") + eol for line in step.starts_with)
            if not rest.startswith(wanted):
                self._record(
                    step,
                    f"the stored message to start, byte for byte: {show_bytes(wanted[:200])}",
                    show_bytes(rest[: len(wanted) + 40]),
                    level=None,
                    kind="delivery",
                )
        if step.body is not None:
            separator = rest.find(b"\r\n\r\n")
            lf_only = separator < 0
            if lf_only:
                separator = rest.find(b"\n\n")
            if separator < 0:
                self._stop(step, "a header and a body", show_bytes(rest[:200]), kind="delivery")
            eol = b"\n" if lf_only else b"\r\n"
            body = rest[separator + 2 * len(eol) :]
            wanted = b"".join(line.encode("utf-8") + eol for line in step.body)
            if body != wanted:
                self._record(
                    step,
                    f"the stored body, byte for byte: {show_bytes(wanted[:200])}",
                    show_bytes(body[:200]),
                    level=None,
                    kind="delivery",
                )

    def _do_EndIfStep(self, step: EndIfStep) -> None:
        env = self.env(step.session)
        if self._guarded(step, lambda: step.expression.evaluate(env)):
            self.transcript.event("*", f"the scenario ends here: {step.reason}")
            for connection in self.connections.values():
                connection.pending.clear()
                connection.replies_unknown = True  # what remains is not checked
            raise StopScenario


class SmtpRunner(TargetRunner):
    """Runs SMTP scenarios against one target; one account pool (deliveries
    into shared maildrops would mix if scenarios ran at once)."""

    fingerprint: TargetFingerprint
    max_pools = 1

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
        base = self._base_fixture(config, fixture)
        self.embedded = config.host is None
        if not self.embedded:
            check_pool_config(1, config.accounts)
            accounts = templated_accounts(config.accounts, 1)
        else:
            accounts = config.accounts
        self.fixture = with_credentials(base, accounts)
        self.host = config.host or "127.0.0.1"
        self.port = config.port
        self.domain = config.smtp_domain or (EMBEDDED_DOMAIN if self.embedded else self.host)
        self.inspector: MaildirInspector | None = None
        self.catalogue = load_catalogue()
        self._embedded: EmbeddedServer | None = None
        self.facts: dict[str, Any] = {}
        #: message text was sent since deliveries last settled (a queueing
        #: target may deliver it while the next scenario runs)
        self.text_sent = False

    def __enter__(self) -> SmtpRunner:
        try:
            if self.embedded:
                from conformance.embedded import EmbeddedServer

                embedded = EmbeddedServer(self.fixture, self.config)
                self._embedded = embedded
                self.host, self.port = embedded.start()
                assert embedded.maildir_template is not None
                spec = self.config.smtp_delivery
                self.inspector = make_inspector(
                    f"maildir:{embedded.maildir_template}" if spec == "auto" else spec
                )
            else:
                spec = self.config.smtp_delivery
                self.inspector = make_inspector("none" if spec == "auto" else spec)
            self.facts = self._facts()
            self.fingerprint = probe(self.host, self.port, self.config, embedded=self.embedded)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None

    def account(self, role: str) -> Account:
        try:
            return self.fixture.account(role)
        except FixtureError as exc:
            raise ScenarioError(str(exc)) from None

    def level_of(self, requirement: str) -> str:
        """The scenario level a catalogue requirement is judged at."""
        entry = self.catalogue.get(requirement)
        return CATALOGUE_LEVEL_TO_SCENARIO_LEVEL[entry.level] if entry else "SHOULD"

    def address_of(self, account: Account) -> str:
        return f"{account.user}@{self.domain}"

    def _facts(self) -> dict[str, Any]:
        accounts = {
            role: Namespace(
                f"accounts.{role}",
                {"user": a.user, "password": a.password, "address": self.address_of(a)},
            )
            for role, a in self.fixture.accounts.items()
        }
        other = self.fixture.accounts.get("spare1") or next(iter(self.fixture.accounts.values()))
        return {
            "domain": self.domain,
            "other_rcpt": self.address_of(other),
            "sender": SENDER,
            "bogus_rcpt": f"{BOGUS_LOCAL_PART}@{self.domain}",
            "relay_rcpt": RELAY_RECIPIENT,
            "client": CLIENT_NAME,
            "accounts": Namespace("accounts", accounts),
        }

    def _judge(
        self, scenario: Scenario, transcript: Transcript, result: ScenarioResult, pool: int
    ) -> tuple[Verdict, str]:
        if scenario.slow and not self.config.slow:
            return Verdict.SKIP, "slow scenario (minutes): run with --slow"
        # under --tls stls the probe lists the EHLO keywords inside TLS; a
        # scenario that speaks STARTTLS itself needs the plaintext ones too
        offered = set(self.fingerprint.capabilities) | set(self.fingerprint.capa_plaintext or ())
        # a plain run: what the server offers inside TLS, for scenarios that
        # do STARTTLS themselves (needs: [STARTTLS, AUTH])
        offered |= {
            line.split()[0].upper()
            for line in self.fingerprint.capa_transaction or []
            if line.split()
        }
        missing = [n for n in scenario.needs if n not in offered]
        if missing:
            return Verdict.SKIP, f"target lacks {missing[0]} (not advertised by EHLO)"
        transcript.event("*", f"scenario {scenario.id} starts")
        run = _SmtpScenarioRun(self, scenario, transcript)
        verdict, message = run.execute()
        result.failures = run.failures
        self._mark_unreachable(run.unreachable)
        return verdict, message
