"""The run of one scenario, as far as it is the same for every protocol.

A protocol's run (conformance.pop3.engine, conformance.smtp.engine)
subclasses `ScenarioRunBase` and adds one `_do_<StepClass>` method per step
kind it knows; a step kind without a method is a bug caught by the tests,
never silently skipped. The base owns the scenario deadline, the failure
list and how a failure is pinned, and the verdict:

* `_record` adds a failure; `_fail` adds one and stops the scenario unless
  the step's own level makes it a soft check; `_stop` always stops.
* A failure lands on the step's `requirement:`, else on the rule of the
  reply it concerns (`_intrinsic_rule`, e.g. the greeting's), else on the
  scenario's first requirement.
* `execute` turns the failures into the verdict: a SKIP only when nothing
  failed before it; a scenario ERROR only when no MUST or framing failure
  was seen first (a server that broke a rule and then wedged still FAILs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from conformance.core.config import RunConfig
from conformance.core.driver import deadline_after
from conformance.core.errors import ConfigError, MailspecError
from conformance.core.expressions import ExpressionError
from conformance.core.fixture import Fixture, FixtureError, load_fixture
from conformance.core.framing import FramingFinding
from conformance.core.patterns import Segment, render_segments
from conformance.core.results import Failure, Measurement, ScenarioResult, Verdict
from conformance.core.scenario import AssertStep, Scenario, SkipIfStep, Step
from conformance.core.transcript import Transcript
from conformance.core.verdicts import (
    ScenarioError,
    SkipScenario,
    StopScenario,
    deadline_scale,
    framing_failure,
    verdict_for,
)


class ScenarioRunBase:
    def __init__(self, config: RunConfig, scenario: Scenario, transcript: Transcript) -> None:
        self.config = config
        self.scenario = scenario
        self.transcript = transcript
        self.failures: list[Failure] = []
        self.captures: dict[str, Any] = {}
        self.unreachable = False  # an `open` found nobody listening
        timeout = (scenario.timeout or config.scenario_timeout) * deadline_scale(config)
        self.scenario_timeout = timeout
        self.deadline = deadline_after(timeout)

    # -- hooks a protocol's run provides -----------------------------------------

    def env(self, session_name: str | None) -> dict[str, Any]:
        """The names a step's expressions and templates see."""
        raise NotImplementedError

    def _skips(self, step: Step) -> bool:
        """True for a step of a session the server already closed as allowed."""
        return False

    def _prepare(self, step: Step) -> Step:
        """The step as it runs (e.g. with a deadline derived from the target)."""
        return step

    def _intrinsic_rule(self, step: Step | None) -> tuple[str, str] | None:
        """(default requirement, prefix) of the reply `step` reads, if that
        reply has a rule of its own (the greeting, QUIT's reply)."""
        return None

    def _check_quiet_at_end(self) -> None:
        """Nothing unsolicited arrived after the last reply."""

    def _close_all(self) -> None:
        """Close every session the scenario opened."""

    # -- driving -----------------------------------------------------------------

    def execute(self) -> tuple[Verdict, str]:
        try:
            for step in self.scenario.steps:
                if self._skips(step):
                    continue
                self._step(step)
            self._check_quiet_at_end()
        except StopScenario:
            pass
        except SkipScenario as skip:
            if not self.failures:
                return Verdict.SKIP, skip.reason
        except ScenarioError as error:
            if not any(f.level == "MUST" or f.kind == "framing" for f in self.failures):
                return Verdict.ERROR, str(error)
        finally:
            self._close_all()
        verdict = verdict_for(self.failures, self.config.strict, self.config.security)
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
        step = self._prepare(step)
        handler = getattr(self, f"_do_{type(step).__name__}")
        self.transcript.step = step.index
        try:
            handler(step)
        finally:
            self.transcript.step = None

    def _remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.01)

    # -- failures ----------------------------------------------------------------

    def _record(
        self,
        step: Step | None,
        expected: str,
        actual: str,
        *,
        level: str | None,
        kind: str,
        requirement: str | None = None,
    ) -> Failure:
        failure = Failure(
            step=step.index if step else None,
            step_text=step.text if step else "",
            expected=expected,
            actual=actual,
            requirement=requirement or self.requirement_of(step),
            level=level or self.scenario.level,
            kind=kind,
        )
        self.failures.append(failure)
        return failure

    def requirement_of(self, step: Step | None) -> str:
        """The requirement a check belongs to: the step's `requirement:`; for
        a reply with a rule of its own, that rule (one the scenario lists, if
        any); else the scenario's first requirement."""
        if step is not None and step.requirement:
            return step.requirement
        intrinsic = self._intrinsic_rule(step)
        if intrinsic is not None:
            default, prefix = intrinsic
            listed = [r for r in self.scenario.requirements if r.startswith(prefix)]
            return listed[0] if listed else default
        return self.scenario.requirements[0]

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
            raise StopScenario

    def _stop(
        self,
        step: Step,
        expected: str,
        actual: str,
        *,
        kind: str = "mismatch",
        level: str | None = None,
        requirement: str | None = None,
    ) -> NoReturn:
        """Record a failure (at the scenario's level unless given) and end the scenario."""
        self._record(step, expected, actual, level=level, kind=kind, requirement=requirement)
        raise StopScenario

    def _tls_setup_failed(self, step: Step, after: str, cause: Exception) -> NoReturn:
        """The handshake after `after` (e.g. "the 220 to STARTTLS") failed in
        the deployment's TLS set-up (TlsError.deployment: a server alert or a
        certificate the run does not trust): nothing to judge, an ERROR that
        says what to check (smtp-notes §7 item 32)."""
        raise ScenarioError(
            f"step {step.index} ({step.text}): TLS could not be set up after {after} "
            f"({cause}); check the server's certificate and TLS configuration, "
            "or the run's --tls-ca"
        ) from None

    def _framing(self, step: Step | None, findings: list[FramingFinding]) -> None:
        self.failures.extend(framing_failure(step, f) for f in findings)

    # -- names and expressions -----------------------------------------------------

    def _render(self, step: Step, template: tuple[Segment, ...], env: Mapping[str, Any]) -> str:
        try:
            return render_segments(template, env)
        except ExpressionError as exc:
            raise ScenarioError(f"step {step.index} ({step.text}): {exc}") from None

    def _guarded(self, step: Step, compute: Callable[[], Any]) -> Any:
        try:
            return compute()
        except ExpressionError as exc:
            raise ScenarioError(f"step {step.index} ({step.text}): {exc}") from None

    def _do_AssertStep(self, step: AssertStep) -> None:
        env = self.env(step.session)
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
        env = self.env(step.session)
        if self._guarded(step, lambda: step.expression.evaluate(env)):
            raise SkipScenario(f"{step.reason} ({step.expression.text})")


#: Scenarios in a row that could not even connect before the target is
#: taken as gone: the rest of the run is not attempted (exit 3 in seconds).
UNREACHABLE_AFTER = 3


class TargetRunner:
    """What every protocol's runner shares: one scenario's result (an ERROR
    for whatever stopped it from being judged), its transcript and duration,
    and the streak of scenarios that found nobody listening.

    A protocol's runner implements `_judge(scenario, transcript, result,
    pool)` -> (verdict, message), setting `result.failures`, and calls
    `_mark_unreachable()` when its run could not connect. `run` may be
    called from several threads at once, one per account pool."""

    def __init__(self) -> None:
        #: INFO results about the target, taken once (none unless the protocol measures)
        self.measurements: list[Measurement] = []
        self.unreachable_streak = 0
        self.unreachable_since: str | None = None
        self._streak_lock = threading.Lock()
        self._unreachable = threading.local()  # set by the scenario run on this thread

    @staticmethod
    def _base_fixture(config: RunConfig, fixture: Fixture | None) -> Fixture:
        """The run's fixture: the one given, else the one the config names
        (ConfigError when it does not load)."""
        try:
            return fixture if fixture is not None else load_fixture(config.fixture_dir)
        except FixtureError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def target_gone(self) -> bool:
        return self.unreachable_streak >= UNREACHABLE_AFTER

    def _mark_unreachable(self, flag: bool = True) -> None:
        self._unreachable.flag = flag

    def _judge(
        self, scenario: Scenario, transcript: Transcript, result: ScenarioResult, pool: int
    ) -> tuple[Verdict, str]:
        raise NotImplementedError

    def run(self, scenario: Scenario, pool: int = 0) -> ScenarioResult:
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
        self._unreachable.flag = False
        try:
            result.verdict, result.message = self._judge(scenario, transcript, result, pool)
        except (ScenarioError, MailspecError) as error:
            result.verdict, result.message = Verdict.ERROR, str(error)
        except OSError as error:  # the local machine, not the target: cannot judge
            result.verdict, result.message = Verdict.ERROR, f"local I/O error: {error}"
        with self._streak_lock:
            if self._unreachable.flag:
                self.unreachable_streak += 1
                self.unreachable_since = self.unreachable_since or scenario.id
            elif result.verdict is not Verdict.SKIP:
                self.unreachable_streak, self.unreachable_since = 0, None
        result.transcript = transcript.entries
        result.duration = round(time.monotonic() - started, 6)
        return result
