"""No traceback, ever, and no wasted run: every CLI error path ends in one
line naming the flag or the file (exit 2) or the target (exit 3), report
paths are checked before the first scenario, and Ctrl-C writes the reports
of what ran, marked incomplete."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import jsonschema
import pytest
from cli_testlib import PYTHON, REPO, SELFTEST, run_mailspec

SCHEMA = json.loads((REPO / "docs" / "results.schema.json").read_text("utf-8"))


_mailspec = run_mailspec


@contextmanager
def _silent_server() -> Iterator[int]:
    """Accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for s in held:
            s.close()
        listener.close()


@contextmanager
def _never_connects() -> Iterator[int]:
    """A listener whose backlog is full: new SYNs are dropped, so a connect
    times out without a connection ever opening (like an unroutable host)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    try:
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "afile").write_text("not a directory\n", "utf-8")
    (tmp_path / "bad.yaml").write_text("target: [unclosed\n", "utf-8")
    (tmp_path / "stale.yaml").write_text("- {id: no.such.scenario, reason: x}\n", "utf-8")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "b.yaml").write_text("scenarios:\n  - id: x\n    steps: 3\n", "utf-8")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "selftest.yaml").write_text(SELFTEST, "utf-8")
    (tmp_path / "notjson.json").write_text("{", "utf-8")
    (tmp_path / "notarget.yaml").write_text("provision: none\n", "utf-8")
    return {"tmp": tmp_path, "broken": broken, "mine": mine}


USAGE_CASES: list[tuple[list[str], str]] = [
    (["run", "--json", "afile/x.json"], "--json: cannot write afile/x.json"),
    (["run", "--junit", "/"], "--junit: cannot write /: it is a directory"),
    (["run", "--html", "/proc/nope/r.html"], "--html: cannot write /proc/nope/r.html"),
    (["run", "--update-expectations", "/proc/nope/k.yaml"], "--update-expectations: cannot"),
    (["run", "--target", "no-port"], "argument --target"),
    (["run", "--target", "127.0.0.1:99999"], "argument --target"),
    (["run", "--timeout", "-1"], "argument --timeout"),
    (["run", "--autologout", "0"], "argument --autologout"),
    (["run", "--provision", "bogus:x"], "argument --provision"),
    (["run", "--config", "missing.yaml"], "missing.yaml"),
    (["run", "--config", "bad.yaml"], "bad.yaml"),
    (["run", "--select", "nothing-matches-*"], "--select"),
    (["run", "--scenarios", "no-such-dir"], "argument --scenarios"),
    (["run", "--scenarios", "broken"], "b.yaml"),
    (["run", "--expectations", "missing.yaml"], "missing.yaml"),
    (["run", "--expectations", "stale.yaml"], "no.such.scenario"),
    (["run", "--no-such-flag"], "unrecognized arguments"),
    (["list", "--select", "zzz*"], "--select"),
    (["coverage", "--protocol", "imap"], "argument --protocol"),
    (["matrix"], "RESULTS.json"),
    (["matrix", "missing.json"], "cannot read missing.json"),
    (["matrix", "notjson.json"], "not JSON"),
    (["nosuchcommand"], "invalid choice"),
    (["verify"], "--config"),
    (["verify", "--config", "missing.yaml"], "missing.yaml"),
    (["provision", "--config", "bad.yaml"], "bad.yaml"),
    (["provision", "--config", "notarget.yaml"], "'target:' is required"),
]


def test_every_usage_error_is_one_line_naming_the_flag_or_file(
    files: dict[str, Path], subprocess_env: dict[str, str]
) -> None:
    cwd = files["tmp"]

    def attempt(case: tuple[list[str], str]) -> tuple[list[str], str, int, str, str]:
        args, wanted = case
        done = _mailspec(cwd, subprocess_env, *args)
        return args, wanted, done.returncode, done.stdout, done.stderr

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(attempt, USAGE_CASES))
    for args, wanted, code, out, err in outcomes:
        assert "Traceback" not in err + out, (args, err)
        assert code == 2, (args, code, err)
        assert wanted in err, (args, err)
        assert "PASS" not in out, (args, "a scenario ran before the error")
    assert not (cwd / "reports" / "results.json").exists()  # nothing ran, nothing written


def test_two_runs_checking_one_report_path_at_once_both_go_ahead(tmp_path: Path) -> None:
    """Two runs started in one directory check reports/junit.xml at the same
    moment (CI saw one fail with 'No such file or directory'): the check must
    neither refuse a writable path nor leave a file behind."""
    from conformance.cli import check_output_path

    target = tmp_path / "reports" / "junit.xml"
    errors: list[BaseException] = []

    def check_many() -> None:
        for _ in range(300):
            try:
                check_output_path("--junit", target)
            except BaseException as exc:  # collected for the assert below
                errors.append(exc)
                return

    threads = [threading.Thread(target=check_many) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert list(target.parent.iterdir()) == []


def test_matrix_output_path_error_names_the_flag(
    files: dict[str, Path], subprocess_env: dict[str, str]
) -> None:
    cwd = files["tmp"]
    ok = _mailspec(cwd, subprocess_env, "run", "--scenarios", "mine", "--select", "*greets*")
    assert ok.returncode == 0, ok.stderr
    bad = _mailspec(
        cwd, subprocess_env, "matrix", "reports/results.json", "--html", "/proc/nope/m.html"
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "cannot write /proc/nope/m.html" in bad.stderr


def test_target_errors_say_what_happened(
    files: dict[str, Path], subprocess_env: dict[str, str]
) -> None:
    cwd = files["tmp"]
    run = ("run", "--scenarios", "mine", "--select", "selftest.*", "--timeout", "1")
    refused = _mailspec(cwd, subprocess_env, *run, "--target", f"127.0.0.1:{_closed_port()}")
    with _never_connects() as port:
        unroutable = _mailspec(cwd, subprocess_env, *run, "--target", f"127.0.0.1:{port}")
    with _silent_server() as port:
        silent = _mailspec(cwd, subprocess_env, *run, "--target", f"127.0.0.1:{port}")
    for done in (refused, unroutable, silent):
        assert done.returncode == 3, done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "connection refused" in refused.stderr
    assert "no answer within 1.0 s" in unroutable.stderr
    assert "did not greet" not in unroutable.stderr and "greeting" not in unroutable.stderr
    assert "the connection opened but no greeting arrived" in silent.stderr


def test_a_dns_failure_is_not_hinted_as_a_missing_server(
    monkeypatch: pytest.MonkeyPatch, cli, files: dict[str, Path]
) -> None:
    def no_such_name(*_args: object, **_kw: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.chdir(files["tmp"])
    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    result = cli("run", "--target", "mail.example.invalid:110", "--select", "stat.*")
    assert result.code == 3
    assert "cannot resolve 'mail.example.invalid'" in result.err
    assert "POP3 server running" not in result.err


@pytest.mark.usefixtures("sigint_reaches_children")
def test_ctrl_c_writes_the_reports_of_what_ran_marked_incomplete(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it
    (the embedded server gets it too)."""
    child = subprocess.Popen(
        [PYTHON, "-m", "conformance", "run"],
        cwd=tmp_path,
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert child.stdout is not None
    seen = 0
    for line in child.stdout:
        seen += line.startswith("  PASS")
        if seen == 20:
            break
    os.killpg(child.pid, signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert "Traceback" not in err + out, err
    assert child.returncode != 0
    assert "incomplete run: interrupted" in out
    report = json.loads((tmp_path / "reports" / "results.json").read_text("utf-8"))
    jsonschema.validate(report, SCHEMA)
    assert report["incomplete"] == "interrupted"
    assert 20 <= len([r for r in report["results"] if r["verdict"] == "PASS"])
    junit = (tmp_path / "reports" / "junit.xml").read_text("utf-8")
    assert 'name="mailspec.incomplete" value="interrupted"' in junit
    html = (tmp_path / "reports" / "report.html").read_text("utf-8")
    assert 'id="incomplete"' in html and "interrupted" in html
