"""Verdicts and the deadlines they are judged against, for every protocol
(docs/scenario-format.md, *Verdicts*): how failures become PASS, WARN or
FAIL, the exceptions a scenario run stops, skips or errs with, and the
ERROR of a scenario that never ran."""

from __future__ import annotations

from conformance.core.config import DEFAULT_AUTH_TIMEOUT, DEFAULT_READ_TIMEOUT, RunConfig
from conformance.core.framing import FramingFinding
from conformance.core.results import Failure, ScenarioResult, Verdict
from conformance.core.scenario import Scenario, Step


def verdict_for(failures: list[Failure], strict: bool, security: bool = False) -> Verdict:
    """MUST-level or framing failures FAIL; SHOULD/MAY alone WARN (FAIL when
    strict); SECURITY (best practice) WARN unless --security."""
    if not failures:
        return Verdict.PASS
    if any(f.level == "MUST" or f.kind == "framing" for f in failures):
        return Verdict.FAIL
    if security and any(f.level == "SECURITY" for f in failures):
        return Verdict.FAIL
    if strict and any(f.level != "SECURITY" for f in failures):
        return Verdict.FAIL
    return Verdict.WARN


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


class StopScenario(Exception):
    """A failure that makes the rest of the scenario meaningless."""


class SkipScenario(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ScenarioError(Exception):
    """The scenario could not be judged (connection refused, scenario bug)."""


def step_level(step: Step) -> str | None:
    """The level a step's own checks are judged at (None: the scenario's)."""
    return getattr(step, "level", None)


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


def not_run(scenario: Scenario, why: str) -> ScenarioResult:
    return ScenarioResult(
        scenario_id=scenario.id,
        title=scenario.title,
        section=scenario.section,
        requirements=list(scenario.requirements),
        level=scenario.level,
        verdict=Verdict.ERROR,
        message=f"not run ({why})",
        source=scenario.source,
    )
