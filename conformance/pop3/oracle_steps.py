"""The POP3 robustness oracles (docs/scenario-format.md, *Oracles*):
`alive_or_closed`, `recover`, `mailbox_same`, `not_authenticated`. Mixed
into the POP3 scenario run."""

from __future__ import annotations

from conformance.core.driver import ConnectError, Outcome, deadline_after
from conformance.core.scenario import (
    AliveOrClosedStep,
    MailboxSameStep,
    NotAuthenticatedStep,
    RecoverStep,
)
from conformance.core.verdicts import (
    ScenarioError as _ScenarioError,
)
from conformance.pop3 import transport
from conformance.pop3.capabilities import (
    describe_reply,
)
from conformance.pop3.verification import VerificationError


class OracleSteps:
    """Step handlers of the POP3 scenario run (conformance.pop3.engine._ScenarioRun)."""

    def _do_AliveOrClosedStep(self, step: AliveOrClosedStep) -> None:
        """Closed by the server (after whatever it answered) passes; an open
        session must answer a NOOP with exactly one status line."""
        engine_session = self._session(step)
        if not engine_session.session.usable:
            self.transcript.event(step.session, "alive_or_closed: the server closed it")
            return
        if not self._check_unsolicited(step, engine_session):
            return  # an allowed close after a farewell -ERR
        if engine_session.session.wait_quiet(0.0, self.deadline).outcome in (
            Outcome.CLOSED,
            Outcome.RESET,
        ):
            self.transcript.event(step.session, "alive_or_closed: the server closed it")
            return
        engine_session.may_close_after = None
        self._send_commands(step, engine_session, ["NOOP"])
        reply = self._read(step, engine_session, multiline_override=False)
        self._framing(step, reply.findings)
        if reply.status is None and reply.outcome in (Outcome.CLOSED, Outcome.RESET):
            self.transcript.event(step.session, "alive_or_closed: the server closed it")
            engine_session.gone = True
            return
        if reply.outcome is not Outcome.COMPLETE or reply.status is None:
            self._incomplete(step, reply, engine_session.pending_label, "+OK or -ERR")

    def _do_RecoverStep(self, step: RecoverStep) -> None:
        """A new connection is greeted with +OK within the read deadline."""
        name = f"recover-{step.index}"
        try:
            session = transport.connect(  # implicit TLS too; a greeting needs no STLS
                name,
                self.runner.host,
                self.runner.port,
                self.transcript,
                self.config,
                timeout=min(step.timeout or self.config.read_timeout, self._remaining()),
            )
        except ConnectError as exc:
            self._fail(step, "a new connection to be accepted and greeted", str(exc), kind="closed")
            return
        try:
            wait = step.timeout or self.config.read_timeout
            greeting = session.read_reply(False, min(deadline_after(wait), self.deadline))
            if greeting.status is None or not greeting.status.looks_positive:
                self._fail(
                    step, "a new connection to be greeted with +OK", describe_reply(greeting)
                )
        finally:
            session.send(b"QUIT\r\n")
            session.close()

    def _do_MailboxSameStep(self, step: MailboxSameStep) -> None:
        account = self.pool.account(self.scenario.account)
        try:
            problem = self.pool.mailboxes.differs(account, self.transcript)
        except VerificationError as exc:
            raise _ScenarioError(
                f"step {step.index} (mailbox_same) could not look: {exc}"
            ) from None
        if problem:
            self._fail(
                step,
                f"account {account.role} ({account.user}) as set-up saw it",
                problem,
                kind="maildrop",
            )

    def _do_NotAuthenticatedStep(self, step: NotAuthenticatedStep) -> None:
        """STAT is refused (still AUTHORIZATION), or the server closed."""
        engine_session = self._session(step)
        if not engine_session.session.usable or not self._send_commands(
            step, engine_session, ["STAT"]
        ):
            return
        reply = self._read(step, engine_session, multiline_override=False)
        self._framing(step, reply.findings)
        if reply.status is None and reply.outcome in (Outcome.CLOSED, Outcome.RESET):
            engine_session.gone = True
            return
        if reply.outcome is not Outcome.COMPLETE or reply.status is None:
            self._incomplete(step, reply, engine_session.pending_label, "-ERR")
        if reply.status.looks_positive:
            self._fail(
                step,
                "-ERR to STAT (the session is not authenticated)",
                describe_reply(reply),
            )
