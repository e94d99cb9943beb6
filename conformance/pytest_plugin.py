"""pytest plugin `mailspec` (entry point pytest11): scenarios as pytest items.

    pytest --mailspec                                # bundled corpus, embedded server
    pytest --mailspec --mailspec-target HOST:PORT    # ... against a real server
    pytest --mailspec --mailspec-config target.yaml  # ... as a config file says
    pytest scenarios/pop3/stat.yaml -k drop --mailspec-strict

`--mailspec` needs no checkout: without path arguments it collects the
corpus installed with the package, from any directory; with paths, it
collects the scenario files under them.

Collection follows pytest's non-Python test pattern (pytest_collect_file).
A YAML file becomes a test file only if it has a top-level `scenarios:` key
AND one of: it was named on the command line, a --mailspec-target/-config
option was given, or it lies under a directory named `scenarios` (and not
under a `tests` directory). So ordinary runs (`pytest tests/`) collect
nothing from here, and the Runner (which may start the embedded server) is
created only when the first scenario item runs.

Verdicts: FAIL -> test failure with the readable failure text; SKIP ->
pytest.skip(reason); WARN -> pass with a MailspecWarning; ERROR -> error (the
scenario runs in the item's setup, so pytest reports it as an error). A
failure or an error shows the mailspec explanation only, never a pytest
traceback; `-v` adds the transcript.
pytest-timeout is the outer guard: each item gets `timeout(scenario + 60 s)`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.core.config import RunConfig, finalize, load_config, parse_target
from conformance.core.errors import ConfigError, MailspecError
from conformance.core.results import ScenarioResult, Verdict
from conformance.reports.compact import compact_failing
from conformance.reports.text import explain, transcript_text

_SCENARIOS_KEY = re.compile(r"^scenarios\s*:", re.M)
_RUNNER = pytest.StashKey[dict[str, Any]]()
OUTER_TIMEOUT_MARGIN = 60.0


class MailspecWarning(UserWarning):
    """A SHOULD/MAY-level deviation (WARN): the test passes with this warning."""


class ScenarioFailed(Exception):
    """A FAIL verdict; the message is the readable failure text."""


class ScenarioErrored(Exception):
    """An ERROR verdict or a runner that could not start."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mailspec", "mailspec POP3 conformance scenarios")
    group.addoption(
        "--mailspec",
        action="store_true",
        help="run the scenario corpus installed with mailspec (or the scenario files "
        "under the given paths) against the embedded server or --mailspec-target",
    )
    group.addoption(
        "--mailspec-target",
        metavar="HOST:PORT",
        help="POP3 server to test (default: start the embedded reference server)",
    )
    group.addoption("--mailspec-config", metavar="FILE", help="mailspec target config (YAML)")
    group.addoption("--mailspec-strict", action="store_true", help="SHOULD/MAY deviations fail")
    group.addoption("--mailspec-slow", action="store_true", help="run slow scenarios too")


def _explicit(config: pytest.Config) -> bool:
    return bool(
        config.getoption("mailspec")
        or config.getoption("mailspec_target")
        or config.getoption("mailspec_config")
    )


def _named_on_command_line(config: pytest.Config, path: Path) -> bool:
    for arg in config.args:
        candidate = Path(str(arg).split("::", 1)[0])
        if not candidate.is_absolute():
            candidate = Path(config.invocation_params.dir) / candidate
        try:
            if candidate.resolve() == path.resolve():
                return True
        except OSError:
            continue
    return False


def _is_scenario_file(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(_SCENARIOS_KEY.search(head))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml") or not _is_scenario_file(file_path):
        return None
    config = parent.config
    dirs = {p.name for p in file_path.parents}
    if not (
        _named_on_command_line(config, file_path)
        or _explicit(config)
        or ("scenarios" in dirs and "tests" not in dirs)
    ):
        return None
    return ScenarioFile.from_parent(parent, path=file_path)


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from conformance.core.scenario import load_scenarios

        for scenario in load_scenarios([self.path]):
            yield ScenarioItem.from_parent(self, name=scenario.id, scenario=scenario)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:  # type: ignore[override]
        if isinstance(excinfo.value, MailspecError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


def _run_config(config: pytest.Config) -> RunConfig:
    path = config.getoption("mailspec_config")
    cfg = load_config(path) if path else RunConfig()
    target = config.getoption("mailspec_target")
    if target:
        try:
            cfg.host, cfg.port = parse_target(target)
        except ValueError as exc:
            raise ConfigError(f"--mailspec-target: {exc}") from None
    cfg.strict = cfg.strict or bool(config.getoption("mailspec_strict"))
    cfg.slow = cfg.slow or bool(config.getoption("mailspec_slow"))
    return finalize(cfg)


def _runner(config: pytest.Config) -> Any:
    """The session's Runner, started on first use; a start failure is kept
    and reported by every scenario item (as an error)."""
    state = config.stash.setdefault(_RUNNER, {})
    if "runner" in state:
        return state["runner"]
    if "error" in state:
        raise ScenarioErrored(state["error"])
    try:
        from conformance.pop3.engine import Runner

        runner = Runner(_run_config(config))
        runner.__enter__()
    except MailspecError as exc:
        state["error"] = f"mailspec: {exc}"
        raise ScenarioErrored(state["error"]) from None
    state["runner"] = runner
    return runner


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(_RUNNER, {})
    runner = state.pop("runner", None)
    if runner is not None:
        runner.__exit__(None, None, None)


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.result: ScenarioResult | None = None
        timeout = float(getattr(scenario, "timeout", 120) or 120) + OUTER_TIMEOUT_MARGIN
        self.add_marker(pytest.mark.timeout(timeout))
        self.add_marker(pytest.mark.mailspec)
        if getattr(scenario, "slow", False):
            self.add_marker(pytest.mark.slow)

    def setup(self) -> None:
        if getattr(self.scenario, "slow", False) and not (self.config.getoption("mailspec_slow")):
            pytest.skip("slow scenario: run with --mailspec-slow")
        runner = _runner(self.config)
        result = runner.run(self.scenario)
        self.result = result
        if result.verdict is Verdict.ERROR:
            raise ScenarioErrored("\n".join(explain(result)))
        if result.verdict is Verdict.SKIP:
            pytest.skip(result.message or "skipped")

    def runtest(self) -> None:
        result = self.result
        if result is None:  # pragma: no cover - setup always sets it
            raise ScenarioErrored("scenario did not run")
        if result.verdict in (Verdict.FAIL, Verdict.XPASS):
            raise ScenarioFailed("\n".join(explain(result)))
        if result.verdict is Verdict.WARN:
            warnings.warn(MailspecWarning("\n".join(explain(result))), stacklevel=1)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:  # type: ignore[override]
        if isinstance(excinfo.value, ScenarioFailed | ScenarioErrored | MailspecError):
            return self.explanation(excinfo.value)
        return super().repr_failure(excinfo)

    def explanation(self, exc: BaseException) -> str:
        """The mailspec text; under -v the scenario's transcript follows."""
        text = str(exc)
        if self.config.getoption("verbose") > 0 and self.result and self.result.transcript:
            shown = compact_failing(self.result.transcript)  # 64 KiB a step at most
            text += "\ntranscript:\n" + transcript_text(shown)
        return text

    def reportinfo(self) -> tuple[Path, int | None, str]:
        source = str(getattr(self.scenario, "source", "") or "")
        line: int | None = None
        if ":" in source and source.rsplit(":", 1)[1].isdigit():
            line = int(source.rsplit(":", 1)[1]) - 1
        return self.path, line, f"mailspec {self.scenario.id}: {self.scenario.title}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Errors in a scenario's setup (ERROR verdicts, a target that cannot
    be reached) are reported like failures: the explanation, no traceback
    (pytest calls repr_failure only for the call phase)."""
    report = yield
    if (
        isinstance(item, ScenarioItem)
        and report.failed
        and call.excinfo is not None
        and isinstance(call.excinfo.value, ScenarioFailed | ScenarioErrored | MailspecError)
    ):
        report.longrepr = item.explanation(call.excinfo.value)
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mailspec: a mailspec conformance scenario")
    config.addinivalue_line("markers", "slow: takes minutes (autologout timers)")
    if config.getoption("mailspec") and config.args_source is not config.ArgsSource.ARGS:
        # `pytest --mailspec` with no paths: the corpus installed with the
        # package, whatever the current directory (or testpaths) holds.
        from conformance.core.scenario import bundled_scenario_dir

        config.args[:] = [str(bundled_scenario_dir())]
