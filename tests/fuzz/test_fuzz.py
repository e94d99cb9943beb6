"""`mailspec fuzz`: finds every planted fault within its default budget and
writes a scenario that replays it (fails against the faulty server, passes
against the reference); finds nothing against the reference server; the
same seed gives the same cases."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import wedge_server
from planted_faults import FAULTS, PlantedFault, provision_spec, start

from conformance.cli import main
from conformance.core.config import RunConfig
from conformance.core.errors import TargetUnreachable
from conformance.core.patterns import render_segments
from conformance.core.scenario import SendStep, load_scenario_file
from conformance.fuzz import restart as restart_module
from conformance.fuzz.cases import Case, End, Generator, Line, Probe, Start, expectations
from conformance.fuzz.restart import CommandRestart, wait_for_greeting
from conformance.fuzz.runner import DEFAULT_ITERATIONS, Fuzzer, dump, scenario_document
from conformance.pop3.engine import Runner

#: A pinned fault must be found well inside this (measured: 0.3-7 s each).
FIND_SECONDS = 60.0


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fuzz_finds_the_planted_fault_and_writes_a_replaying_scenario(
    fault: PlantedFault, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, out = tmp_path / "maildirs", tmp_path / "findings"
    config = tmp_path / "target.yaml"
    config.write_text("timeouts:\n  auth: 2\n", encoding="utf-8")  # no login delay here
    handle = start(fault.session, root)
    try:
        target = ["--target", f"{handle.host}:{handle.port}", "--provision", provision_spec(root)]
        target += ["--config", str(config)]
        started = time.monotonic()
        code = main(["fuzz", *target, "--out", str(out), "--max-findings", "1"])
        seconds = time.monotonic() - started
        output = capsys.readouterr().out
        assert code == 1, output
        assert seconds < FIND_SECONDS
        (written,) = sorted(out.glob("*.yaml"))
        (scenario,) = load_scenario_file(written)
        oracle = scenario.id.removeprefix("fuzz.").rsplit("-", 1)[0]
        assert oracle in fault.oracles, scenario.id
        assert scenario.level == "MUST"
        if fault.breaks_server:  # kept as found; a fresh server replays it below
            assert f"{scenario.id} [" in output and "replay not confirmed:" in output
        else:
            assert f"{scenario.id} [" in output and "replays:" in output  # confirmed on replay
            assert sum(isinstance(s, SendStep) for s in scenario.steps) <= 4  # minimised
        replay = ["run", "--scenarios", str(out), "--select", "fuzz.*", "--timeout", "2"]
        reports = ["--junit", str(tmp_path / "j.xml"), "--json", str(tmp_path / "r.json"),
                   "--html", str(tmp_path / "r.html")]  # fmt: skip
    finally:
        handle.close()
    handle = start(fault.session, root)  # a fresh faulty server, as a vendor's CI has
    try:
        target[1] = f"{handle.host}:{handle.port}"
        assert main([*replay, *target, *reports]) == 1  # fails against the faulty server
    finally:
        handle.close()
    assert main([*replay, *reports]) == 0  # passes against the embedded reference server


def test_fuzz_finds_nothing_in_the_reference_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "findings"
    assert main(["fuzz", "--out", str(out)]) == 0  # the default budget
    captured = capsys.readouterr()
    assert f"{DEFAULT_ITERATIONS} cases in" in captured.out
    assert "0 findings, 0 not judged" in captured.out
    assert not out.exists() or not list(out.iterdir())


def test_the_same_seed_gives_the_same_cases() -> None:
    def cases(seed: int) -> list[Case]:
        generator = Generator(seed, "msspare1", 3)
        return [generator.case() for _ in range(200)]

    assert cases(5) == cases(5)
    assert cases(5) != cases(6)


def test_every_generated_case_is_a_loadable_scenario(tmp_path: Path) -> None:
    generator = Generator(11, "msspare1", 3)
    path = tmp_path / "case.yaml"
    kinds = set()
    for n in range(300):
        case = generator.case()
        kinds.update({case.start, case.end})
        kinds.update("chop" for p in case.probes if p.chop)
        kinds.update("burst" for p in case.probes if len(p.lines) > 1)
        path.write_text(dump(scenario_document(case, 3, f"fuzz.case-{n}")), encoding="utf-8")
        (scenario,) = load_scenario_file(path)
        sent = b"".join(
            render_segments(s.template, {}).encode("latin-1")
            for s in scenario.steps
            if isinstance(s, SendStep)
        )
        assert sent == b"".join(p.data for p in case.probes)  # octet for octet
    assert kinds >= {*Start, *End, "chop", "burst"}


def _line(data: bytes, clean: bool = True) -> Probe:
    return Probe((Line(data, clean),))


def test_refusals_are_judged_only_where_every_conforming_server_refuses() -> None:
    probes = (
        _line(b"RETR 0\r\n"),
        _line(b"RETR 4\r\n"),  # count + 1
        _line(b"RETR 4294967297\r\n"),
        _line(b"RETR 01\r\n"),  # leading zero: may mean 1 (verdict-principles 8)
        _line(b"retr 3\r\n"),
        _line(b"USER x\r\n"),
        _line(b"RETR 0\x00\r\n", clean=False),
    )
    case = Case(Start.TRANSACTION, probes, End.DROP)
    refused = [[e.refuse for e in probe] for probe in expectations(case, 3)]
    assert refused == [
        ["POP3-1939-RETR-04"], ["POP3-1939-RETR-04"], ["POP3-1939-RETR-04"], [None], [None],
        ["POP3-1939-AUTH-USER-05"], [None],
    ]  # fmt: skip
    before_login = Case(Start.GREETED, (_line(b"STAT\r\n"), _line(b"PASS x\r\n")), End.DROP)
    assert [[e.refuse for e in p] for p in expectations(before_login, 3)] == [
        ["POP3-1939-STAT-05"], ["POP3-1939-AUTH-PASS-01"],
    ]  # fmt: skip


def test_a_case_that_may_mark_a_message_never_ends_with_quit() -> None:
    generator = Generator(3, "msspare1", 3)
    for _ in range(500):
        case = generator.case()
        if case.end is End.QUIT:
            for probe in case.probes:
                for line in probe.lines:
                    if b"DELE" in line.data.upper():
                        assert (
                            line.clean
                            and expectations(
                                Case(Start.TRANSACTION, (Probe((line,)),), End.DROP), 3
                            )[0][0].refuse
                        )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--iterations", "5", "--duration", "3"], 2, "not allowed with argument"),
        (["--iterations", "0"], 2, "expected a positive whole number"),
        (["--target", "127.0.0.1:1"], 3, "cannot connect"),
    ],
)
def test_fuzz_usage_errors_and_an_unreachable_target(
    args: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        assert main(["fuzz", *args]) == code
    except SystemExit as exit_:  # argparse
        assert exit_.code == code
    assert message in capsys.readouterr().err


WEDGE_SERVER = Path(__file__).parent / "wedge_server.py"
WEDGE_ORACLES = {"silence", "alive-or-closed", "recover"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_fuzz_restarts_a_wedged_target_and_minimises_the_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A '%n' wedges the planted server (it accepts, then never sends a
    byte): without a restart the finding stays as found and unconfirmed;
    with --restart-command each attempt gets a fresh process, so the finding
    is minimised and confirmed on replay."""
    root, out, pidfile = tmp_path / "maildirs", tmp_path / "findings", tmp_path / "server.pid"
    port = _free_port()
    restart = [sys.executable, str(WEDGE_SERVER), "restart", str(port), str(root), str(pidfile)]
    config = tmp_path / "target.yaml"
    config.write_text("timeouts:\n  auth: 2\n", encoding="utf-8")
    target = ["--target", f"127.0.0.1:{port}", "--provision", provision_spec(root)]
    target += ["--config", str(config)]
    subprocess.run(restart, check=True, timeout=30)
    try:
        wait_for_greeting("127.0.0.1", port, 30)
        code = main(["fuzz", *target, "--out", str(out), "--max-findings", "1",
                     "--restart-command", shlex.join(restart)])  # fmt: skip
        output = capsys.readouterr().out
        assert code == 1, output
        (written,) = sorted(out.glob("*.yaml"))
        (scenario,) = load_scenario_file(written)
        assert scenario.id.removeprefix("fuzz.").rsplit("-", 1)[0] in WEDGE_ORACLES, scenario.id
        assert f"{scenario.id} [" in output and "replays:" in output, output  # confirmed
        assert re.search(r"findings, \d+ not judged, [1-9]\d* restarts", output), output
        sends = [s for s in scenario.steps if isinstance(s, SendStep)]
        assert len(sends) == 1 and "%n" in "".join(str(x) for x in sends[0].template)
        subprocess.run(restart, check=True, timeout=30)  # a fresh faulty server
        wait_for_greeting("127.0.0.1", port, 30)
        replay = ["run", "--scenarios", str(out), "--select", "fuzz.*", "--timeout", "2"]
        assert main([*replay, *target]) == 1  # fails against the faulty server
    finally:
        wedge_server.stop(pidfile)
    assert main([*replay]) == 0  # passes against the embedded reference server


def _probe(data: bytes) -> Probe:
    return Probe((Line(data, True),))


def test_a_wedging_case_is_minimised_only_with_a_restart(tmp_path: Path) -> None:
    """Four probes, one of which wedges the server: with restarts the case
    shrinks to that one probe (and replays); without, it is kept as found."""
    root, pidfile = tmp_path / "maildirs", tmp_path / "server.pid"
    port = _free_port()
    restart = [sys.executable, str(WEDGE_SERVER), "restart", str(port), str(root), str(pidfile)]
    case = Case(
        Start.TRANSACTION,
        (_probe(b"NOOP\r\n"), _probe(b"STAT\r\n"), _probe(b"XTND %n%n\r\n"), _probe(b"LIST\r\n")),
        End.DROP,
    )
    config = RunConfig(host="127.0.0.1", port=port, provision=provision_spec(root),
                       read_timeout=1.0, auth_timeout=2.0, measure=False)  # fmt: skip
    subprocess.run(restart, check=True, timeout=30)
    try:
        wait_for_greeting("127.0.0.1", port, 30)
        with Runner(config) as runner:
            command = CommandRestart(shlex.join(restart), "127.0.0.1", port)
            # with restarts: the wedging probe, and the one whose silence it
            # causes if dropping that changes the oracle (silence -> alive-or-closed)
            for restarts, most_probes in ((None, 4), (command, 2)):
                fuzzer = Fuzzer(runner, account="spare1", seed=1, out=tmp_path / "out",
                                workdir=tmp_path, progress=None, restart=restarts)  # fmt: skip
                if restarts is not None:
                    assert fuzzer.restore()  # the run without restarts left it wedged
                found = fuzzer.judge(case)
                assert found is not None and found[0] in WEDGE_ORACLES, found
                smaller = fuzzer.minimise(case, found[0])
                if restarts is None:
                    assert smaller == case  # kept as found: every re-run fails
                else:
                    assert len(smaller.probes) <= most_probes, smaller
            assert b"%n" in smaller.probes[0].data and smaller.start is Start.GREETED
            assert fuzzer.record(case, smaller, found[0], found[1])
            (finding,) = fuzzer.report.findings
            assert finding.replays and command.restarts >= 2
    finally:
        wedge_server.stop(pidfile)


def test_embedded_target_is_restarted_on_its_port_with_its_store(tmp_path: Path) -> None:
    config = RunConfig(read_timeout=2.0, measure=False)
    with Runner(config) as runner:
        process = runner._embedded.process  # type: ignore[union-attr]
        before = (runner.host, runner.port, process.pid if process else None)
        store = runner._embedded.workdir  # type: ignore[union-attr]
        runner.restart_embedded()
        process = runner._embedded.process  # type: ignore[union-attr]
        assert (runner.host, runner.port) == before[:2]
        assert process is not None and process.pid != before[2]
        assert runner._embedded.workdir == store  # type: ignore[union-attr]
        wait_for_greeting(runner.host, runner.port, 10)


def test_restart_command_that_fails_is_named(tmp_path: Path) -> None:
    failing = CommandRestart(f"{shlex.quote(sys.executable)} -c 'import sys; sys.exit(4)'",
                             "127.0.0.1", _free_port())  # fmt: skip
    with pytest.raises(TargetUnreachable, match="exited with status 4"):
        failing()
    silent = CommandRestart("true", "127.0.0.1", _free_port())
    with pytest.raises(TargetUnreachable, match="did not greet with \\+OK"):
        restart_module.wait_for_greeting("127.0.0.1", silent.port, 0.5)


def test_restart_command_is_refused_for_the_embedded_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["fuzz", "--iterations", "1", "--restart-command", "true"]) == 2
    assert "--restart-command needs --target" in capsys.readouterr().err
