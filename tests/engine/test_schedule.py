"""The --jobs schedule: which scenario starts when (waits first, longest
first, when more than one job runs), while results and progress keep the
corpus order. A stand-in runner records the start order; no network."""

from __future__ import annotations

import threading
from typing import ClassVar

from conformance.core.config import RunConfig
from conformance.core.results import (
    Failure,
    Measurement,
    ScenarioResult,
    TargetFingerprint,
    Verdict,
)
from conformance.core.scenario import CommandStep, ExpectOpenStep, IdleStep, Scenario, Step
from conformance.core.schedule import (
    OUTAGE_NOTE,
    _Schedule,
    deliberate_wait,
    run_suite,
    start_order,
)


def scenario(name: str, *waits: tuple[type[Step], float]) -> Scenario:
    steps: list[Step] = [
        kind(index=i, line=i, text=f"{kind.__name__} {seconds}", seconds=seconds)  # type: ignore[call-arg]
        for i, (kind, seconds) in enumerate(waits, start=1)
    ]
    steps.append(CommandStep(index=len(steps) + 1, line=0, text="C: NOOP", template=("NOOP",)))
    return Scenario(
        id=name,
        title=name,
        section="schedule",
        requirements=("POP3-1939-NOOP-01",),
        level="MUST",
        steps=tuple(steps),
        source=f"test:{name}",
    )


CORPUS = [
    scenario("plain-1"),
    scenario("idle-1s", (IdleStep, 1.0)),
    scenario("plain-2"),
    scenario("open-and-idle-2s", (ExpectOpenStep, 1.5), (IdleStep, 0.5)),
    scenario("plain-3"),
    scenario("idle-1s-later", (IdleStep, 1.0)),
]


class RecordingRunner:
    """Runs nothing: records the order scenarios start in."""

    fingerprint = TargetFingerprint("127.0.0.1:0", "plain", "+OK", [])
    unreachable_since: str | None = None
    measurements: ClassVar[list[Measurement]] = []

    def __init__(self, config: RunConfig, *, fixture: object = None, pools: int = 1) -> None:
        self.started: list[str] = []
        self.lock = threading.Lock()
        RecordingRunner.last = self  # type: ignore[attr-defined]

    def __enter__(self) -> RecordingRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    @property
    def target_gone(self) -> bool:
        return False

    def run(self, scenario: Scenario, pool: int = 0) -> ScenarioResult:
        with self.lock:
            self.started.append(scenario.id)
        return ScenarioResult(
            scenario_id=scenario.id,
            title=scenario.title,
            section=scenario.section,
            requirements=list(scenario.requirements),
            level=scenario.level,
            verdict=Verdict.PASS,
        )


def test_deliberate_wait_adds_the_idle_and_expect_open_seconds() -> None:
    assert deliberate_wait(CORPUS[0]) == 0
    assert deliberate_wait(CORPUS[3]) == 2.0


def test_one_job_starts_in_corpus_order() -> None:
    assert start_order(CORPUS, 1) == [0, 1, 2, 3, 4, 5]


def test_several_jobs_start_the_waits_first_longest_first_then_corpus_order() -> None:
    assert start_order(CORPUS, 4) == [3, 1, 5, 0, 2, 4]


def test_with_several_jobs_scenarios_are_handed_out_in_the_start_order() -> None:
    runner = RecordingRunner(RunConfig())
    reported: list[str] = []
    schedule = _Schedule(runner, CORPUS, 2, lambda r, _n, _t: reported.append(r.scenario_id))
    schedule._work(0)  # one worker on this thread: the hand-out order, unraced
    assert runner.started == [CORPUS[i].id for i in start_order(CORPUS, 2)]
    assert reported == [s.id for s in CORPUS]  # progress waits for the corpus order


def test_a_parallel_run_reports_in_corpus_order_whatever_the_start_order() -> None:
    progress: list[str] = []
    run = run_suite(
        RecordingRunner,
        CORPUS,
        RunConfig(),
        jobs=3,
        progress=lambda result, _n, _total: progress.append(result.scenario_id),
    )
    corpus = [s.id for s in CORPUS]
    assert sorted(RecordingRunner.last.started) == sorted(corpus)  # type: ignore[attr-defined]
    assert [r.scenario_id for r in run.results] == corpus
    assert progress == corpus


def test_a_serial_run_starts_and_reports_in_corpus_order() -> None:
    run = run_suite(RecordingRunner, CORPUS, RunConfig(), jobs=1)
    assert RecordingRunner.last.started == [s.id for s in CORPUS]  # type: ignore[attr-defined]
    assert [r.scenario_id for r in run.results] == [s.id for s in CORPUS]


class ScriptedOutcomeRunner(RecordingRunner):
    """Gives each scenario the verdict (and failure kind) its name asks for;
    `unreachable-*` scenarios count as finding nobody listening."""

    UNREACHABLE_AFTER = 2

    def __init__(self, config: RunConfig, *, fixture: object = None, pools: int = 1) -> None:
        super().__init__(config, fixture=fixture, pools=pools)
        self.streak = 0

    @property
    def target_gone(self) -> bool:
        return self.streak >= self.UNREACHABLE_AFTER

    def run(self, scenario: Scenario, pool: int = 0) -> ScenarioResult:
        result = super().run(scenario, pool)
        kind = scenario.id.split("-")[0]
        if kind == "unreachable":
            self.streak += 1
            self.unreachable_since = self.unreachable_since or scenario.id
            result.verdict, result.message = Verdict.ERROR, "cannot connect"
        elif kind in ("cut", "refused"):
            result.verdict, result.message = Verdict.FAIL, f"{kind} at step 2"
            result.failures = [
                Failure(2, "S: +OK", "+OK", "connection reset", None, "MUST", "closed")
                if kind == "cut"
                else Failure(2, "S: +OK", "+OK", "-ERR no", None, "MUST", "status")
            ]
        return result


def _outage_run(names: list[str]) -> dict[str, str]:
    run = run_suite(ScriptedOutcomeRunner, [scenario(n) for n in names], RunConfig(), jobs=1)
    assert run.incomplete == "target unreachable since unreachable-1"
    return {r.scenario_id: r.message for r in run.results}


def test_a_fail_cut_just_before_the_target_went_away_names_the_outage() -> None:
    messages = _outage_run(["cut-1", "unreachable-1", "unreachable-2", "plain-1"])
    assert messages["cut-1"] == f"cut at step 2; {OUTAGE_NOTE}"
    assert messages["plain-1"].startswith("not run (target unreachable since unreachable-1")


def test_a_fail_the_target_answered_after_keeps_its_message_in_an_outage() -> None:
    messages = _outage_run(["cut-1", "plain-1", "refused-1", "unreachable-1", "unreachable-2"])
    assert messages["cut-1"] == "cut at step 2"  # plain-1 was answered after it
    assert messages["refused-1"] == "refused at step 2"  # a reply, not a cut connection
