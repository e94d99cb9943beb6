"""`mailspec fuzz`: a seeded, stateful mutation fuzzer over the POP3
grammar whose findings are minimised and written as scenarios that replay
them (docs/fuzz.md).

Every case (conformance/fuzz/cases.py) is a scenario built in memory and
run by the engine, so a case is judged exactly as its written file will be
judged by `mailspec run --scenarios`: the framing oracle on every reply,
silence, one status per command, `alive_or_closed`, `recover`,
`mailbox_same` and the refusals every conforming server gives. The engine
also re-provisions the account before the next case when one changed it.

A failing case is shrunk — probes dropped, bursts thinned, chopped writes
joined, the start state and the ending simplified, long runs halved — for
as long as the same oracle still fails; the result is written to
`<out>/fuzz.<oracle>-<hash>.yaml`, loaded back with the scenario loader and
run once more to confirm that it replays."""

from __future__ import annotations

import hashlib
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import yaml

from conformance.core.config import DEFAULT_AUTH_TIMEOUT, DEFAULT_READ_TIMEOUT, RunConfig
from conformance.core.errors import ConfigError, TargetUnreachable
from conformance.core.results import Failure, ScenarioResult, Verdict
from conformance.core.scenario import (
    AliveOrClosedStep,
    MailboxSameStep,
    OpenStep,
    RecoverStep,
    ReplyStep,
    Scenario,
    load_scenario_file,
)
from conformance.fuzz.cases import (
    Case,
    End,
    Generator,
    Start,
    may_quit,
    requirements_of,
    steps_of,
)
from conformance.fuzz.restart import CommandRestart
from conformance.pop3 import framing
from conformance.pop3.engine import Runner

DEFAULT_ITERATIONS = 300
DEFAULT_READ_SECONDS = 1.0  # loopback replies take milliseconds; silence costs this much
DEFAULT_ACCOUNT = "spare1"  # three small messages, one with dot-leading lines
SCENARIO_SECONDS = 60.0
SHRINK_RUNS = 80  # at most this many re-runs to minimise one finding
SHRINK_SECONDS = 30.0
PROGRESS_SECONDS = 5.0
#: Cases in a row that the engine could not judge before the run gives up.
MAX_ERRORS_IN_A_ROW = 5
SECTION = "mailspec fuzz findings"


@dataclass
class Finding:
    oracle: str
    failure: Failure
    case: Case
    scenario_id: str = ""
    path: Path | None = None
    replays: bool = False
    iteration: int = 0


@dataclass
class FuzzReport:
    iterations: int = 0
    findings: list[Finding] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    stopped: str = ""  # why the run ended early, if it did


# -- oracles -------------------------------------------------------------------


def classify(result: ScenarioResult, scenario: Scenario) -> tuple[str, Failure] | None:
    """Which oracle a failed case broke (None when it passed)."""
    if result.verdict not in (Verdict.FAIL, Verdict.WARN) or not result.failures:
        return None
    failure = result.failures[0]
    step = scenario.steps[failure.step - 1] if failure.step else None
    if failure.kind == "framing":
        unsolicited = framing.UNSOLICITED.summary in failure.expected
        return ("one-status" if unsolicited else "framing"), failure
    if failure.kind == "maildrop" or isinstance(step, MailboxSameStep):
        return "mailbox-same", failure
    if isinstance(step, RecoverStep) or (
        failure.kind == "mismatch" and isinstance(step, ReplyStep) and _is_greeting(scenario, step)
    ):
        return "recover", failure  # a new connection was not greeted
    if isinstance(step, AliveOrClosedStep):
        return "alive-or-closed", failure
    if failure.kind in ("timeout", "closed"):
        return "silence", failure
    if failure.kind == "mismatch" and isinstance(step, ReplyStep) and step.requirement:
        return "refused", failure  # only the refusal oracle's replies name a requirement
    return failure.kind, failure


def _is_greeting(scenario: Scenario, step: ReplyStep) -> bool:
    before = scenario.steps[step.index - 2] if step.index >= 2 else None
    return isinstance(before, OpenStep)


# -- scenarios -----------------------------------------------------------------


def scenario_document(case: Case, count: int, scenario_id: str, **extra: Any) -> dict[str, Any]:
    steps = steps_of(case, count)
    entry: dict[str, Any] = {
        "id": scenario_id,
        "title": extra.pop("title", f"fuzz case {scenario_id}"),
        "requirements": requirements_of(steps),
        "level": "MUST",
        "account": extra.pop("account", DEFAULT_ACCOUNT),
        "timeout": SCENARIO_SECONDS,
    }
    if any(len(probe.lines) > 1 for probe in case.probes):
        entry["needs"] = ["PIPELINING"]  # bursts are judged only then (verdict-principles 15)
    entry.update(extra)
    entry["steps"] = steps
    return {"section": SECTION, "scenarios": [entry]}


class _Dumper(yaml.SafeDumper):
    """`send:` values double-quoted, so every octet shows as an escape."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    needs_quotes = any(c < " " or c > "~" for c in text)
    style = '"' if needs_quotes else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(document: dict[str, Any]) -> str:
    return yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, allow_unicode=False, width=10_000,
        default_flow_style=False,
    )  # fmt: skip


def case_id(oracle: str, case: Case, count: int) -> str:
    steps = steps_of(case, count)
    digest = hashlib.sha256(dump({"s": steps}).encode()).hexdigest()[:10]
    return f"fuzz.{oracle}-{digest}"


# -- the run -------------------------------------------------------------------


class Fuzzer:
    def __init__(
        self,
        runner: Runner,
        *,
        account: str,
        seed: int,
        out: Path,
        workdir: Path,
        progress: TextIO | None = sys.stderr,
        restart: Callable[[], None] | None = None,
    ) -> None:
        self.runner = runner
        #: restarts a wedged target (the embedded server's own restart, or
        #: --restart-command); None: a wedged target stays wedged
        self.restart = restart
        self.restarts = 0
        self.role = account
        self.account = runner.account(account)
        self.count = self.account.count
        self.seed = seed
        self.out = out
        self.workdir = workdir
        self.progress = progress
        self.report = FuzzReport()
        self._runs = 0
        self._errors_in_a_row = 0

    # -- one case ----------------------------------------------------------------

    def build(self, case: Case, scenario_id: str) -> Scenario:
        document = scenario_document(case, self.count, scenario_id, account=self.role)
        path = self.workdir / "case.yaml"
        path.write_text(dump(document), encoding="utf-8")
        (scenario,) = load_scenario_file(path)
        return scenario

    def judge(self, case: Case) -> tuple[str, Failure] | None:
        self._runs += 1
        scenario = self.build(case, f"fuzz.case-{self._runs}")
        result = self.runner.run(scenario)
        if result.verdict in (Verdict.ERROR, Verdict.SKIP):
            # SKIP: an account a case changed cannot be restored (provision: none)
            self.report.errors += 1
            self._errors_in_a_row += 1
            if self.runner.target_gone:
                raise TargetUnreachable(f"the target stopped answering: {result.message}")
            if self._errors_in_a_row >= MAX_ERRORS_IN_A_ROW:
                raise TargetUnreachable(
                    f"{MAX_ERRORS_IN_A_ROW} cases in a row could not be judged; "
                    f"the last: {result.verdict.value} {result.message}"
                )
            return None
        self._errors_in_a_row = 0
        return classify(result, scenario)

    # -- the loop ----------------------------------------------------------------

    def run(
        self, *, iterations: int | None, duration: float | None, max_findings: int | None
    ) -> FuzzReport:
        generator = Generator(self.seed, self.account.user, self.count)
        started = time.monotonic()
        last_progress = started
        seen: set[tuple[str, str | None]] = set()
        while True:
            elapsed = time.monotonic() - started
            if iterations is not None and self.report.iterations >= iterations:
                break
            if duration is not None and elapsed >= duration:
                break
            case = generator.case()
            self.report.iterations += 1
            try:
                verdict = self.judge(case)
                if verdict is not None:
                    oracle, failure = verdict
                    key = (oracle, failure.requirement)
                    if key not in seen:
                        seen.add(key)
                        if not self.record(case, self.minimise(case, oracle), oracle, failure):
                            seen.discard(key)  # did not reproduce: not a finding
                    if self.restart is not None and not self.healthy() and not self.restore():
                        self.report.stopped = "the target stays broken after a restart"
                        break
            except TargetUnreachable as gone:
                if not self.restore():
                    if not self.report.findings:
                        raise
                    self.report.stopped = str(gone)  # a finding may have killed it
                    break
            if max_findings is not None and len(self.report.findings) >= max_findings:
                self.report.stopped = f"{max_findings} finding(s) (--max-findings)"
                break
            now = time.monotonic()
            if self.progress is not None and now - last_progress >= PROGRESS_SECONDS:
                last_progress = now
                self._say(
                    f"fuzz: {self.report.iterations} cases, "
                    f"{len(self.report.findings)} findings, {now - started:.0f} s"
                )
        self.report.seconds = time.monotonic() - started
        return self.report

    def _say(self, text: str) -> None:
        if self.progress is not None:
            print(text, file=self.progress, flush=True)

    # -- minimising ----------------------------------------------------------------

    def minimise(self, case: Case, oracle: str) -> Case:
        """Shrink `case` while the same oracle still fails (a greedy pass
        over each simplification, repeated until nothing shrinks)."""
        budget_until = time.monotonic() + SHRINK_SECONDS
        runs = 0

        def fails(candidate: Case) -> bool:
            nonlocal runs
            if runs >= SHRINK_RUNS or time.monotonic() >= budget_until:
                return False
            runs += 1
            try:
                verdict = self.judge(candidate)
            except TargetUnreachable:
                verdict = None
                if not self.restore():
                    runs = SHRINK_RUNS  # the target is gone: keep what we have
                    return False
            if verdict is not None and self.restart is not None and not self.healthy():
                if not self.restore():  # wedged again: restart before the next attempt
                    runs = SHRINK_RUNS
            return verdict is not None and verdict[0] == oracle

        if not self.healthy() and not self.restore():
            # the case left the target broken and nothing restarts it: every
            # re-run would fail whatever it sent, so the case is kept as found
            self._say("fuzz: the target no longer passes a plain session; not minimised")
            return case
        changed = True
        while changed:
            changed = False
            for candidate in _simpler(case, self.count):
                if fails(candidate):
                    if self.restart is None and not self.healthy():
                        return case  # this candidate broke it: keep the last case
                    case, changed = candidate, True
                    break
        return case

    def restore(self) -> bool:
        """Restart the target (when a restart is possible) and check that a
        plain session passes again; False when it cannot be restored."""
        if self.restart is None:
            return False
        self.restarts += 1
        try:
            self.restart()
        except TargetUnreachable as failed:
            self._say(f"fuzz: restart failed: {failed}")
            return False
        self.runner.target_restarted()
        self._say(f"fuzz: target restarted ({self.restarts})")
        return self.healthy()

    def healthy(self) -> bool:
        """A plain session (greeting, NOOP, close, a new greeting) passes."""
        try:
            return self.judge(Case(Start.GREETED, (), End.DROP)) is None
        except TargetUnreachable:
            return False

    # -- writing -------------------------------------------------------------------

    def record(self, found: Case, case: Case, oracle: str, failure: Failure) -> bool:
        """Write the finding; False (and nothing written) when its scenario
        passes on replay against a healthy target (a passing stall)."""
        healthy = self.healthy() or self.restore()
        if case is not found and healthy:
            # the minimised case's own failure is the one to report
            final = self.judge(case)
            if final is not None and final[0] == oracle:
                failure = final[1]
        scenario_id = case_id(oracle, case, self.count)
        first = case.probes[0].data if case.probes else b""
        title = f"fuzz finding ({oracle}): {_shown(first)}"
        notes = (
            f"Found by mailspec fuzz --seed {self.seed} (case {self.report.iterations}), "
            + ("minimised. " if case is not found else "kept as found. ")
            + f"The target gave: {failure.one_line()}"
        )
        document = scenario_document(
            case, self.count, scenario_id, title=title, account=self.role, notes=notes
        )
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"{scenario_id}.yaml"
        try:
            path.write_text(dump(document), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--out: cannot write {path}: {exc.strerror}") from None
        (loaded,) = load_scenario_file(path)
        replays = False
        if healthy and self.restart is not None and not self.healthy():
            healthy = self.restore()  # the minimised case's own run wedged it
        if healthy:  # a broken target fails any replay: that would prove nothing
            replayed = classify(self.runner.run(loaded), loaded)  # never raises
            replays = replayed is not None and replayed[0] == oracle
            if not replays:
                path.unlink()
                self._say(
                    f"fuzz: case {self.report.iterations} failed ({failure.one_line()}) "
                    "but its scenario passes on replay: not a finding"
                )
                return False
        finding = Finding(oracle, failure, case, scenario_id, path, replays, self.report.iterations)
        self.report.findings.append(finding)
        self._say(
            f"fuzz: finding {scenario_id} ({failure.requirement}): {failure.one_line()}"
            + (
                ""
                if replays
                else " [replay not confirmed: the target no longer passes a plain session]"
            )
        )
        return True


def _shown(data: bytes, limit: int = 60) -> str:
    text = data.decode("latin-1")
    text = re.sub(r"(.)\1{15,}", lambda m: f"{m.group(1)}*{len(m.group(0))}", text)
    shown = text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _simpler(case: Case, count: int) -> Iterator[Case]:
    """Candidate simplifications of `case`, most drastic first."""
    probes = list(case.probes)
    for index in reversed(range(len(probes))):  # drop a probe
        if len(probes) > 1:
            yield _fixed_end(case.replace(probes=tuple(probes[:index] + probes[index + 1 :])))
    for index, probe in enumerate(probes):  # thin a burst, join a chopped write
        if probe.chop:
            yield case.replace(probes=_with(probes, index, replace(probe, chop=False)))
        for drop in reversed(range(len(probe.lines))):
            if len(probe.lines) > 1:
                lines = probe.lines[:drop] + probe.lines[drop + 1 :]
                yield case.replace(probes=_with(probes, index, replace(probe, lines=lines)))
    if case.end is End.QUIT:
        yield case.replace(end=End.DROP)
    for start in (Start.GREETED, Start.USER):  # a simpler start state
        if start is not case.start and _rank(start) < _rank(case.start):
            yield case.replace(start=start)
    for index, probe in enumerate(probes):  # shorten a long run or drop an argument
        for l_index, line in enumerate(probe.lines):
            for data in _shorter(line.data):
                lines = _with(list(probe.lines), l_index, replace(line, data=data))
                shorter = replace(probe, lines=lines)
                yield _fixed_end(case.replace(probes=_with(probes, index, shorter)))


def _rank(start: Start) -> int:
    return (Start.GREETED, Start.USER, Start.TRANSACTION).index(start)


def _fixed_end(case: Case) -> Case:
    return case if case.end is End.DROP or may_quit(case.probes) else case.replace(end=End.DROP)


def _with(items: list[Any], index: int, value: Any) -> tuple[Any, ...]:
    out = list(items)
    out[index] = value
    return tuple(out)


_LONG_RUN = re.compile(rb"(.)\1{7,}", re.DOTALL)


def _shorter(data: bytes) -> Iterator[bytes]:
    """Shorter versions of one line: each long run of one byte halved, then
    the last space-separated argument dropped."""
    for match in _LONG_RUN.finditer(data):
        run = match.group(0)
        half = run[: len(run) // 2]
        yield data[: match.start()] + half + data[match.end() :]
    body, end = (data[:-2], data[-2:]) if data.endswith(b"\r\n") else (data, b"")
    if b" " in body.strip():
        yield body.rstrip().rsplit(b" ", 1)[0] + end


# -- entry point -------------------------------------------------------------------


def fuzz_config(config: RunConfig, timeout: float | None) -> RunConfig:
    """Reply deadlines for fuzzing: `--timeout`, else the config file's, else
    a short one (a silence costs one deadline per case)."""
    if timeout is not None:
        config.read_timeout = timeout
    elif config.read_timeout == DEFAULT_READ_TIMEOUT:
        config.read_timeout = DEFAULT_READ_SECONDS
    if config.host is None and config.auth_timeout == DEFAULT_AUTH_TIMEOUT:
        # the embedded server answers failed logins at once; a target keeps
        # the generous default (verdict-principles 4) unless its config says
        config.auth_timeout = max(config.read_timeout, DEFAULT_READ_SECONDS)
    config.measure = False  # INFO measurements are for run reports; fuzzing writes none
    return config


def run_fuzz(
    config: RunConfig,
    *,
    seed: int,
    iterations: int | None,
    duration: float | None,
    out: Path,
    account: str = DEFAULT_ACCOUNT,
    max_findings: int | None = None,
    timeout: float | None = None,
    restart_command: str | None = None,
    progress: TextIO | None = sys.stderr,
    say: Callable[[str], None] = print,
) -> int:
    """Run the fuzzer; exit code 0 (nothing found) or 1 (findings).
    TargetUnreachable (exit 3) and ConfigError (exit 2) propagate."""
    config = fuzz_config(config, timeout)
    if restart_command is not None and config.host is None:
        raise ConfigError(
            "--restart-command needs --target or a config with a host: "
            "the embedded server is restarted without one"
        )
    if iterations is None and duration is None:
        iterations = DEFAULT_ITERATIONS
    where = "embedded reference server" if config.host is None else config.address
    with Runner(config) as runner, tempfile.TemporaryDirectory(prefix="mailspec-fuzz-") as tmp:
        try:
            runner.account(account)
        except Exception as exc:
            raise ConfigError(f"--account: {exc}") from None
        budget = f"{iterations} cases" if iterations is not None else f"{duration:g} s"
        say(f"mailspec fuzz: {where}, account {account}, seed {seed}, budget {budget}")
        restart: Callable[[], None] | None = None
        if runner.embedded:
            restart = runner.restart_embedded  # always possible: it is our process
        elif restart_command is not None:
            restart = CommandRestart(restart_command, runner.host, runner.port)
        fuzzer = Fuzzer(runner, account=account, seed=seed, out=out, workdir=Path(tmp),
                        progress=progress, restart=restart)  # fmt: skip
        report = fuzzer.run(iterations=iterations, duration=duration, max_findings=max_findings)
    for finding in report.findings:
        replay = "replays" if finding.replays else "replay not confirmed"
        say(
            f"FINDING {finding.scenario_id} [{finding.failure.requirement}] {replay}: "
            f"{finding.failure.one_line()}"
        )
        say(f"  -> {finding.path}")
    stopped = f" (stopped: {report.stopped})" if report.stopped else ""
    restarts = f", {fuzzer.restarts} restarts" if fuzzer.restarts else ""
    say(
        f"{report.iterations} cases in {report.seconds:.1f} s, {len(report.findings)} findings, "
        f"{report.errors} not judged{restarts}{stopped}"
    )
    if report.findings:
        say(f"replay: mailspec run --scenarios {out} --select 'fuzz.*'")
    return 1 if report.findings else 0
