"""End to end: the embedded reference server, started as its own process,
runs a small scenario file through Runner; commits are re-provisioned."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conformance import embedded
from conformance.core.config import RunConfig
from conformance.core.errors import TargetUnreachable
from conformance.core.fixture import load_fixture
from conformance.core.results import Verdict
from conformance.core.scenario import load_scenario_file
from conformance.pop3.engine import Runner

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("reference_server") is None, reason="reference_server not present"
)

SCENARIOS = """\
section: "end to end"
scenarios:
  - id: e2e.retr-and-sizes
    title: RETR sends fixture messages byte for byte; sizes agree
    requirements: [POP3-1939-RETR-01]
    level: MUST
    needs: [UIDL, TOP, APOP]
    steps:
      - open: a
      - S: +OK
      - login
      - C: STAT
      - S: "+OK {count} {size:int}"
      - C: LIST
      - S: +OK
        body: {each: "{msg:int} {octets:int}", count: count}
      - assert: sum(octets) == size
      - C: RETR 2
      - S: +OK
        body: {message: 2}
        octets: retr2
      - assert: retr2 == octets[1]
      - C: TOP 2 1
      - S: +OK
        body: {message: 2, top: 1}
      - C: UIDL
      - S: +OK
        body: {each: "{n:int} {uid:uid}"}
      - assert: unique(uid)
      - C: QUIT
      - S: +OK
      - expect_close
  - id: e2e.dele-commits
    title: DELE then QUIT removes a message
    requirements: [POP3-1939-DELE-01]
    level: MUST
    account: spare1
    commits: true
    steps:
      - open: a
      - S: +OK
      - login
      - C: DELE 1
      - S: +OK
      - C: QUIT
      - S: +OK
      - open: b
      - S: +OK
        session: b
      - login:
        session: b
      - C: STAT
        session: b
      - S: "+OK {count - 1} {n:int}"
        session: b
  - id: e2e.dele-was-undone
    title: The next scenario on the account sees the fixture again
    requirements: [POP3-1939-DELE-01]
    level: MUST
    account: spare1
    steps:
      - open: a
      - S: +OK
      - login
      - C: STAT
      - S: "+OK {count} {size:int}"
      - C: APOP {user} {apop_digest(password)}
      - S: -ERR
"""


def test_embedded_server_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "e2e.yaml"
    path.write_text(SCENARIOS, encoding="utf-8")
    scenarios = load_scenario_file(path)
    with Runner(RunConfig(read_timeout=5)) as runner:
        process = runner._embedded.process
        workdir = runner._embedded.workdir
        assert runner.fingerprint.embedded and "APOP" in runner.fingerprint.capabilities
        results = [runner.run(s) for s in scenarios]
    for result in results:
        assert result.verdict is Verdict.PASS, (result.scenario_id, result.message)
    assert process.poll() is not None  # stopped
    assert not workdir.exists()  # cleaned


def test_missing_reference_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TargetUnreachable, match=r"reference server .* is not importable"):
        with Runner(RunConfig()):
            pass


UNDECLARED_COMMIT = """\
section: "end to end"
scenarios:
  - id: e2e.sneaky-dele
    title: deletes a message without saying commits
    requirements: [POP3-1939-DELE-01]
    level: MUST
    account: spare2
    steps:
      - open: a
      - S: +OK
      - login
      - C: DELE 1
      - S: +OK
      - C: QUIT
      - S: +OK
  - id: e2e.no-login
    title: never logs in, so nothing is verified before it
    requirements: [POP3-1939-GREET-01]
    level: MUST
    account: spare2
    steps:
      - open: a
      - S: +OK
  - id: e2e.victim
    title: runs after the sneaky one
    requirements: [POP3-1939-DELE-01]
    level: MUST
    account: spare2
    steps:
      - open: a
      - S: +OK
      - login
  - id: e2e.recovered
    title: the account was re-provisioned after the change
    requirements: [POP3-1939-DELE-01]
    level: MUST
    account: spare2
    steps:
      - open: a
      - S: +OK
      - login
      - C: STAT
      - S: "+OK {count} {size:int}"
"""


def test_a_maildrop_changed_without_commits_fails_that_scenario_and_is_repaired(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sneaky.yaml"
    path.write_text(UNDECLARED_COMMIT, encoding="utf-8")
    with Runner(RunConfig(read_timeout=5)) as runner:
        sneaky, no_login, victim, recovered = (runner.run(s) for s in load_scenario_file(path))
    # the scenario that changed the maildrop is the one that fails ...
    assert sneaky.verdict is Verdict.FAIL
    changed = sneaky.failures[-1]
    assert changed.kind == "maildrop" and changed.requirement == "POP3-1939-DELE-05"
    assert "UIDL lists 2 messages where it listed 3" in changed.actual
    # ... and the next ones start from a re-provisioned account
    assert no_login.verdict is Verdict.PASS
    assert victim.verdict is Verdict.PASS, victim.message
    assert recovered.verdict is Verdict.PASS, recovered.message


def test_the_store_goes_to_a_roomy_ram_directory_unless_tmpdir_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ram = tmp_path / "ram"
    ram.mkdir()
    monkeypatch.delenv("TMPDIR", raising=False)
    monkeypatch.setattr(embedded, "RAM_STORE_PARENTS", (str(tmp_path / "absent"), str(ram)))
    monkeypatch.setattr(embedded, "RAM_STORE_SPARE_OCTETS", 0)
    assert embedded.store_parent(1000) == str(ram)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert embedded.store_parent(1000) is None  # the user's choice wins


def test_a_ram_directory_without_room_for_the_store_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TMPDIR", raising=False)
    monkeypatch.setattr(embedded, "RAM_STORE_PARENTS", (str(tmp_path),))
    free = embedded.shutil.disk_usage(tmp_path).free
    monkeypatch.setattr(embedded, "RAM_STORE_SPARE_OCTETS", free + (1 << 30))  # no room
    assert embedded.store_parent(1) is None


@pytest.mark.parametrize("in_ram", [True, False])
def test_a_store_in_ram_has_the_server_run_its_storage_steps_on_its_event_loop(
    in_ram: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ram = tmp_path / "ram"
    ram.mkdir()
    monkeypatch.setattr(embedded, "RAM_STORE_PARENTS", (str(ram),))
    monkeypatch.setattr(embedded, "RAM_STORE_SPARE_OCTETS", 0)
    if in_ram:
        monkeypatch.delenv("TMPDIR", raising=False)
    else:  # the user's TMPDIR: a disk, perhaps; the storage threads stay
        monkeypatch.setenv("TMPDIR", str(tmp_path))
    server = embedded.EmbeddedServer(load_fixture(), RunConfig())
    try:
        server.start()
        assert server.workdir is not None and (server.workdir.parent == ram) is in_ram
        command = server._command
        assert ("--storage-threads" in command) is in_ram
        if in_ram:
            assert command[command.index("--storage-threads") + 1] == "0"
    finally:
        server.stop()


def test_waiting_for_the_server_to_exit_ends_when_it_exits_and_says_when_it_did_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess
    import sys
    import time

    for pidfd in (True, False):
        if not pidfd:  # the fallback where os.pidfd_open is missing (not Linux)
            monkeypatch.delattr(embedded.os, "pidfd_open", raising=False)
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            started = time.monotonic()
            assert not embedded.wait_for_exit(sleeper, 0.2)  # still running
            assert 0.2 <= time.monotonic() - started < 2
            sleeper.terminate()
            started = time.monotonic()
            assert embedded.wait_for_exit(sleeper, 10)
            assert time.monotonic() - started < 2 and sleeper.returncode is not None
        finally:
            sleeper.kill()
            sleeper.wait()
