"""The protocols the suite speaks, and the one place that picks a
protocol's package: its scenario steps (registered with the core loader
on import) and its runner. The core never imports a protocol; the CLI,
the pytest plugin and other entry points come through here."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from conformance.core.config import PROTOCOLS, RunConfig
from conformance.core.fixture import Fixture
from conformance.core.results import RunResult
from conformance.core.scenario import Scenario, load_scenarios
from conformance.core.schedule import ProgressCallback

__all__ = ["PROTOCOLS", "load_protocol_scenarios", "run_suite", "runner_class"]


def _register(protocol: str) -> None:
    if protocol == "smtp":
        import conformance.smtp.scenario  # noqa: F401  (registers the SMTP steps)


def load_protocol_scenarios(paths: Iterable[Path | str], protocol: str) -> list[Scenario]:
    """The scenarios of `protocol` in these files and directories."""
    _register(protocol)
    return load_scenarios(paths, protocol)


def runner_class(protocol: str) -> Any:
    if protocol == "smtp":
        from conformance.smtp.engine import SmtpRunner

        return SmtpRunner
    from conformance.pop3.engine import Runner

    return Runner


def run_suite(
    scenarios: list[Scenario],
    config: RunConfig,
    *,
    progress: ProgressCallback | None = None,
    fixture: Fixture | None = None,
    jobs: int | None = 1,
) -> RunResult:
    """Run `scenarios` with the runner of `config.protocol`."""
    from conformance.core import schedule

    return schedule.run_suite(
        runner_class(config.protocol),
        scenarios,
        config,
        progress=progress,
        fixture=fixture,
        jobs=jobs,
    )
