"""Running a list of scenarios: account pools handed to `--jobs` worker
threads, results in corpus order, progress as they complete, and the early
stop when the target stops answering. Protocol-neutral: the protocol's
runner (conformance.pop3.engine.Runner, ...) runs each scenario.

With more than one job the scenarios that wait on purpose (`idle:`,
`expect_open:`) start first, longest first, so their waits overlap the rest
of the run instead of ending it; everything else starts in corpus order.
What is reported, and when, stays in corpus order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from conformance import __version__
from conformance.core.config import RunConfig
from conformance.core.fixture import Fixture
from conformance.core.pools import jobs_for
from conformance.core.results import (
    Measurement,
    RunResult,
    ScenarioResult,
    TargetFingerprint,
    Verdict,
)
from conformance.core.scenario import ExpectOpenStep, IdleStep, Scenario
from conformance.core.verdicts import not_run

ProgressCallback = Callable[[ScenarioResult, int, int], None]

#: Added to the message of a FAIL whose connection was cut just before the
#: target stopped answering altogether.
OUTAGE_NOTE = (
    "after this the target refused every connection and the run stopped: either this "
    "scenario's input brought the server down, or it was stopped from outside "
    "(run this scenario alone to tell)"
)


class SuiteRunner(Protocol):
    """What a protocol's runner offers the schedule: a context manager that
    owns the target, runs one scenario on one account pool (thread-safe
    across pools), and says when the target is gone."""

    fingerprint: TargetFingerprint
    unreachable_since: str | None
    measurements: list[Measurement]  # INFO results, taken when the target was entered

    def __enter__(self) -> SuiteRunner: ...
    def __exit__(self, *exc: object) -> None: ...
    @property
    def target_gone(self) -> bool: ...
    def run(self, scenario: Scenario, pool: int = 0) -> ScenarioResult: ...


def run_suite(
    runner_class: Callable[..., SuiteRunner],
    scenarios: list[Scenario],
    config: RunConfig,
    *,
    progress: ProgressCallback | None = None,
    fixture: Fixture | None = None,
    jobs: int | None = 1,
) -> RunResult:
    """Run `scenarios` with a protocol's `runner_class`; raises
    TargetUnreachable/ProvisionError only when the run cannot start.
    `fixture` replaces the one `config` names.

    `jobs` scenarios run at once (None: automatic, conformance.core.pools), each
    on its own account pool; results and `progress` keep the corpus order,
    and verdicts are those of a serial run. The run stops early — the rest
    marked ERROR "not run", `incomplete` saying why — when the target stops
    answering (UNREACHABLE_AFTER scenarios in a row could not connect) or on
    Ctrl-C."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    count = jobs_for(jobs, embedded=config.host is None, pool=config.pool)
    count = max(1, min(count, len(scenarios), getattr(runner_class, "max_pools", count)))
    with runner_class(config, fixture=fixture, pools=count) as runner:
        results, incomplete = _Schedule(runner, scenarios, count, progress).run()
        fingerprint = runner.fingerprint
        measurements = list(runner.measurements)
    final = [
        r if r is not None else not_run(s, incomplete or "interrupted")
        for s, r in zip(scenarios, results, strict=True)
    ]
    return RunResult(
        tool_version=__version__,
        started_at=started_at,
        duration=round(time.monotonic() - started, 3),
        target=fingerprint,
        config=config.redacted(),
        results=final,
        strict=config.strict,
        incomplete=incomplete,
        measurements=measurements,
    )


def deliberate_wait(scenario: Scenario) -> float:
    """Seconds `scenario` waits on purpose, whatever the target does."""
    return sum(
        step.seconds for step in scenario.steps if isinstance(step, IdleStep | ExpectOpenStep)
    )


def start_order(scenarios: list[Scenario], jobs: int) -> list[int]:
    """Indexes into `scenarios` in the order they start: corpus order for
    one job; otherwise the deliberate waits first, longest first (a stable
    sort: ties and all the rest keep corpus order)."""
    order = list(range(len(scenarios)))
    if jobs > 1:
        waits = [deliberate_wait(s) for s in scenarios]
        order.sort(key=lambda i: -waits[i])
    return order


class _Schedule:
    """Hands scenarios to `jobs` worker threads, one account pool each, in
    `start_order`, and reports results in corpus order as they complete."""

    def __init__(
        self,
        runner: SuiteRunner,
        scenarios: list[Scenario],
        jobs: int,
        progress: ProgressCallback | None,
    ) -> None:
        self.runner, self.scenarios, self.jobs, self.progress = runner, scenarios, jobs, progress
        self.results: list[ScenarioResult | None] = [None] * len(scenarios)
        self.order = start_order(scenarios, jobs)
        self.lock = threading.Lock()
        self.next_to_start = 0
        self.next_to_report = 0
        self.stop = threading.Event()
        self.incomplete: str | None = None
        self.finished: list[int] = []  # indexes in the order their scenarios ended

    def run(self) -> tuple[list[ScenarioResult | None], str | None]:
        if self.jobs == 1:  # on this thread: Ctrl-C lands inside the scenario
            try:
                self._work(0)
            except KeyboardInterrupt:
                self.incomplete = "interrupted"
            return self.results, self.incomplete
        workers = [
            threading.Thread(
                target=self._work, args=(i,), name=f"mailspec-job-{i + 1}", daemon=True
            )
            for i in range(self.jobs)
        ]
        for worker in workers:
            worker.start()
        try:
            for worker in workers:
                while worker.is_alive():
                    worker.join(0.2)
        except KeyboardInterrupt:
            self.incomplete = "interrupted"
            self.stop.set()
            for worker in workers:  # each finishes the scenario it is in
                worker.join()
        return self.results, self.incomplete

    def _work(self, pool: int) -> None:
        while not self.stop.is_set():
            with self.lock:
                if self.next_to_start >= len(self.order):
                    return
                index = self.order[self.next_to_start]
                self.next_to_start += 1
            result = self.runner.run(self.scenarios[index], pool)
            with self.lock:
                self.results[index] = result
                self.finished.append(index)
                if self.runner.target_gone and self.incomplete is None:
                    self.incomplete = f"target unreachable since {self.runner.unreachable_since}"
                    self.stop.set()
                    self._name_the_outage()
                self._report()

    def _name_the_outage(self) -> None:
        """The target stopped answering: the scenarios that ended last with
        their connection cut (FAIL, kind `closed`) were running when it went
        away. Their FAIL stands (a server that dies on a scenario's input
        looks exactly like this), and their message says what followed, so
        nobody reads it as an ordinary refusal (called with the lock held)."""
        for index in reversed(self.finished):
            result = self.results[index]
            if result is None or result.verdict in (Verdict.ERROR, Verdict.SKIP):
                continue
            if result.verdict is not Verdict.FAIL or not any(
                f.kind == "closed" for f in result.failures
            ):
                return  # the target still answered this one: the outage came later
            result.message += f"; {OUTAGE_NOTE}"

    def _report(self) -> None:
        """Progress in corpus order (called with the lock held)."""
        while self.next_to_report < len(self.results):
            result = self.results[self.next_to_report]
            if result is None:
                return
            self.next_to_report += 1
            if self.progress is not None:
                self.progress(result, self.next_to_report, len(self.results))
