"""POP3 steps that authenticate or change the channel: `login` (USER/PASS or
APOP, with the [IN-USE] retry), `starttls` (the STLS handshake) and
`challenge` (a SASL server challenge). Mixed into the POP3 scenario run."""

from __future__ import annotations

import time
from collections.abc import Callable

from conformance.core.driver import Outcome, deadline_after
from conformance.core.expressions import ExpressionError, apop_digest_of
from conformance.core.patterns import status_pattern
from conformance.core.scenario import (
    ChallengeStep,
    LoginStep,
    StartTlsStep,
)
from conformance.core.transcript import show_bytes
from conformance.core.verdicts import (
    ScenarioError as _ScenarioError,
)
from conformance.pop3 import transport
from conformance.pop3.capabilities import (
    describe_reply,
    greeting_timestamp,
    is_in_use,
)
from conformance.pop3.engine_state import (
    APOP_LOGIN_REQUIREMENT,
    BASE64_TEXT,
    IN_USE_RETRY_PAUSE,
    IN_USE_RETRY_SECONDS,
    PASS_LOGIN_REQUIREMENT,
    TEMPORARY_REFUSAL,
    _EngineSession,
)


class AuthSteps:
    """Step handlers of the POP3 scenario run (conformance.pop3.engine._ScenarioRun)."""

    def _do_StartTlsStep(self, step: StartTlsStep) -> None:
        """The handshake after STLS's +OK (RFC 2595 §4). Commands sent before
        it and not answered are void: a reply to them inside TLS is the
        injection finding (POP3-2595-STLS-11), caught by the quiet wait or
        by the next reply's pattern."""
        engine_session = self._session(step)
        session = engine_session.session
        if session.tls is not None:
            raise _ScenarioError(f"step {step.index} ({step.text}): the session is already TLS")
        engine_session.pending.clear()
        engine_session.replies_unknown = False
        deadline = min(deadline_after(step.timeout or self.config.read_timeout), self.deadline)
        try:
            leftover = session.start_tls(
                transport.context_for(self.config),
                transport.server_name(self.config, self.runner.host),
                deadline,
            )
        except transport.TlsError as exc:
            if step.or_close and exc.peer_ended:
                self.transcript.event(step.session, f"no TLS ({exc}): or_close allows it")
                engine_session.gone = True
                return
            if exc.deployment:
                self._tls_setup_failed(step, "the +OK to STLS", exc)
            self._stop(step, "a TLS handshake right after +OK to STLS", str(exc), kind="closed")
        if leftover:
            self._stop(
                step,
                "nothing in plaintext after +OK to STLS (the handshake starts there)",
                f"{show_bytes(leftover)} arrived before the handshake",
            )
        if step.seconds:
            quiet = session.wait_quiet(step.seconds, self.deadline)
            if quiet.outcome is Outcome.DATA:
                self._stop(
                    step,
                    f"nothing inside TLS for {step.seconds:.1f} s before the client speaks",
                    f"{show_bytes(quiet.data)} arrived: a reply to plaintext sent before the "
                    "handshake",
                )

    def _do_LoginStep(self, step: LoginStep) -> None:
        engine_session = self._session(step)
        account = engine_session.account
        positive = status_pattern("+OK")
        # A login that fails is pinned on the login rule of the account's
        # method, whatever the scenario is about (verdict-principles, pinning).
        requirement = step.requirement or (
            APOP_LOGIN_REQUIREMENT if account.login == "apop" else PASS_LOGIN_REQUIREMENT
        )
        commands = [f"USER {account.user}", f"PASS {account.password}"]
        if engine_session.user_accepted:
            commands = commands[1:]  # the scenario sent USER already (once: a retry sends both)
        if account.login == "apop":  # the account's one login method (RFC 1939 §13)
            timestamp = greeting_timestamp(engine_session.session.greeting)
            if timestamp is None:
                self._stop(
                    step,
                    "a greeting <timestamp> for APOP",
                    "a greeting without one",
                    level="MUST",
                    requirement="POP3-1939-AUTH-APOP-02",
                )
            commands = [f"APOP {account.user} {apop_digest_of(timestamp, account.password)}"]
        retry_until = time.monotonic() + IN_USE_RETRY_SECONDS
        while True:
            for text in commands:
                if not self._send_commands(step, engine_session, [text]):
                    return
                reply = self._read(step, engine_session, multiline_override=None)
                self._framing(step, reply.findings)
                label = engine_session.pending_label
                if reply.outcome is not Outcome.COMPLETE or reply.status is None:
                    if self._closed_as_allowed(engine_session, reply):
                        return
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
                    commands = (
                        [f"USER {account.user}", f"PASS {account.password}"]
                        if (account.login != "apop")
                        else commands
                    )
                    break
                if TEMPORARY_REFUSAL.match(status.line):
                    # RFC 2449 §8 / RFC 3206: a policy or a passing fault, not a
                    # broken login: the scenario cannot be judged now
                    raise _ScenarioError(
                        f"step {step.index} ({step.text}): the target refused the login "
                        f"temporarily: {describe_reply(reply)} (wait, or raise the target's "
                        "login delay allowance, and run again)"
                    )
                self._stop(
                    step,
                    f"+OK to {label}",
                    describe_reply(reply),
                    kind="login",
                    level="MUST",
                    requirement=requirement,
                )
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

    def _do_ChallengeStep(self, step: ChallengeStep) -> None:
        """RFC 5034 §4: a challenge is "+", one space and base64 (possibly
        empty), nothing else; its base64 text is captured."""
        engine_session = self._session(step)
        reply = self._read(step, engine_session, multiline_override=False)
        label = engine_session.pending_label
        self._framing(step, reply.findings)
        if reply.outcome is not Outcome.COMPLETE or reply.status is None:
            if step.or_close and reply.outcome in (Outcome.CLOSED, Outcome.RESET):
                engine_session.gone = True
                engine_session.session.close()
                return
            self._incomplete(step, reply, label, "a challenge '+ BASE64'")
        line = reply.status.line
        if not reply.status.continuation:
            self._stop(step, f"a challenge '+ BASE64' after {label}", show_bytes(reply.status.raw))
        data = line[2:] if line.startswith(b"+ ") else b""
        if line == b"+" or not BASE64_TEXT.fullmatch(data):
            self._stop(
                step,
                f"'+', one space and base64 only (RFC 5034 §4) after {label}",
                show_bytes(reply.status.raw),
            )
        self.captures[step.name] = data.decode("ascii")

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
