"""Real servers: start/stop by PID under a temp dir, provisioning in fixture
order, re-provisioning after a commit, and a full suite run against
Dovecot (and Mailutils) with every scenario given a verdict and no ERROR
caused by the harness."""

from __future__ import annotations

import json
import os
import poplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance.core.fixture import load_fixture
from conformance.provision import verify_listing
from interop.servers import SERVERS, DovecotServer, MailutilsServer, ManagedServer

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.interop


def need(cls: type[ManagedServer]) -> None:
    if cls.binary_path() is None:
        pytest.skip(f"{cls.binary} not installed (apt-get install {' '.join(cls.packages)})")
    if os.geteuid() != 0 and cls is MailutilsServer:
        pytest.skip("Mailutils harness needs root (mail files owned by the mail user)")


def pop3(server: ManagedServer, account) -> poplib.POP3:
    conn = poplib.POP3(server.host, server.port, timeout=30)
    if account.login == "apop" and b"<" in conn.getwelcome():
        conn.apop(account.user, account.password)
    else:
        conn.user(account.user)
        conn.pass_(account.password)
    return conn


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child still answers kill(0); look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_start_provision_reprovision_stop(name: str):
    cls = SERVERS[name]
    need(cls)
    fixture = load_fixture()
    server = cls(fixture)
    server.start()
    workdir = server.workdir
    try:
        pid = server.process.pid
        for account in fixture.accounts.values():
            conn = pop3(server, account)
            stat = conn.stat()
            sizes = [int(line.split()[1]) for line in conn.list()[1]]
            conn.quit()
            assert verify_listing(account, stat, sizes, byte_exact=False) == [], account.role
        # commit a deletion, re-provision: the fixture order comes back
        spare = fixture.account("spare1")
        conn = pop3(server, spare)
        conn.dele(1)
        conn.quit()
        time.sleep(0.2)
        conn = pop3(server, spare)
        assert conn.stat()[0] == spare.count - 1
        conn.quit()
        time.sleep(0.2)
        server.provisioner().reset(spare)
        conn = pop3(server, spare)
        sizes = [int(line.split()[1]) for line in conn.list()[1]]
        body = b"\r\n".join(conn.retr(1)[1])
        conn.quit()
        assert verify_listing(spare, None, sizes, byte_exact=False) == []
        assert spare.messages[0].body.rstrip(b"\r\n") in body
    finally:
        server.stop()
    assert not alive(pid), f"{name} (pid {pid}) still running after stop()"
    assert not workdir.exists()


def run_suite_against(cls: type[ManagedServer], tmp_path: Path) -> tuple[dict, str]:
    need(cls)
    # Dovecot's failed-login delay (2 s, growing under its auth penalty) is a
    # deployment choice that only costs time here: the matrix keeps it
    options = {"fast_failures": True} if cls is DovecotServer else {}
    server = cls(load_fixture(), **options)
    server.start()
    report = tmp_path / f"{server.name}.json"
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "conformance",
                "run",
                "--target",
                server.address,
                "--provision",
                server.provision_spec,
                "--json",
                str(report),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=220,  # under the test's own 240 s
            cwd=tmp_path,
        )
    finally:
        server.stop()
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(report.read_text()), done.stdout


GOLDEN = REPO / "tests" / "interop" / "golden"


def changed_verdicts(data: dict, name: str) -> list[str]:
    """Scenarios whose verdict differs from the recorded one (golden/NAME.json,
    recorded before the layout move of issue 11 and kept since). A change
    of the corpus or the engine that moves a verdict must say so: re-record
    with `python scripts/compare-verdicts.py --write-golden REPORT GOLDEN`."""
    golden = json.loads((GOLDEN / f"{name}.json").read_text("utf-8"))
    now = {r["id"]: r["verdict"] for r in data["results"]}
    return [
        f"{sid}: {golden.get(sid, '(new)')} -> {now.get(sid, '(gone)')}"
        for sid in sorted(golden.keys() | now.keys())
        if golden.get(sid) != now.get(sid)
    ]


def harness_errors(data: dict) -> list[str]:
    """ERROR verdicts: every one is a harness problem (provisioning,
    verification, an unreachable server), never the server's verdict."""
    return [f"{r['id']}: {r['message']}" for r in data["results"] if r["verdict"] == "ERROR"]


@pytest.mark.timeout(240)
def test_suite_against_dovecot(tmp_path: Path):
    data, out = run_suite_against(DovecotServer, tmp_path)
    results = data["results"]
    assert len(results) > 20
    verdicts = {"PASS", "FAIL", "WARN", "SKIP", "XFAIL", "XPASS"}
    assert all(r["verdict"] in verdicts | {"ERROR"} for r in results)
    assert harness_errors(data) == [], out[-2000:]
    assert data["target"]["greeting"].startswith("+OK Dovecot")
    # the bulk of the suite passes against a mature server
    counts = data["counts"]
    assert counts["PASS"] > counts["FAIL"] * 5, counts
    assert changed_verdicts(data, "dovecot") == [], out[-2000:]


@pytest.mark.timeout(240)
def test_suite_against_mailutils(tmp_path: Path):
    data, out = run_suite_against(MailutilsServer, tmp_path)
    results = data["results"]
    assert len(results) > 20
    assert data["target"]["greeting"].startswith("+OK POP3 Ready <")
    # Mailutils holds its mailbox lock for a moment after a session ends: the
    # engine retries such an [IN-USE]; no ERROR may remain
    assert harness_errors(data) == [], out[-2000:]
    in_use = [r["id"] for r in results if r["verdict"] == "FAIL" and "[IN-USE]" in r["message"]]
    assert in_use == [], in_use
    assert changed_verdicts(data, "mailutils") == [], out[-2000:]


def run_suite_tls(server: DovecotServer, tmp_path: Path, mode: str, *select: str) -> dict:
    address = server.tls_address if mode == "implicit" else server.address
    report = tmp_path / f"dovecot-{mode}.json"
    selectors = [a for s in select for a in ("--select", s)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "conformance", "run", "--target", address]
    argv += ["--tls", mode, "--tls-ca", str(server.ca_path)]
    argv += ["--provision", server.provision_spec, "--json", str(report), *selectors]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=150, cwd=tmp_path)
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(report.read_text())
    assert harness_errors(data) == [], done.stdout[-2000:]
    return data


@pytest.mark.timeout(200)
def test_dovecot_over_stls_and_implicit_tls_gives_every_scenario_a_verdict(tmp_path: Path):
    need(DovecotServer)
    # no failed-login delay or penalty, so the whole corpus fits in the time budget
    server = DovecotServer(load_fixture(), tls=True, fast_failures=True)
    server.start()
    try:
        stls = run_suite_tls(server, tmp_path, "stls", "stls.*")
        implicit = run_suite_tls(server, tmp_path, "implicit")
    finally:
        server.stop()
    ran = [r for r in stls["results"] if r["verdict"] != "SKIP"]
    assert ran, "no STLS scenario ran against a server that offers STLS"
    assert stls["target"]["tls"] == "stls"
    # STLS is no longer offered inside TLS (RFC 2595 section 4), as the CAPA read
    # after the handshake shows
    assert "STLS" not in stls["target"]["capa_authorization"], stls["target"]
    assert implicit["target"]["tls"] == "implicit"
    assert implicit["target"]["greeting"].startswith("+OK Dovecot")
    assert len(implicit["results"]) > 100
    counts = implicit["counts"]
    assert counts["PASS"] > counts["FAIL"] * 5, counts


# --- account pools (mailspec run --jobs N) -------------------------------------


def test_pool_accounts_are_the_users_the_run_config_names(tmp_path: Path):
    from conformance.core.config import load_config
    from conformance.core.pools import templated_accounts

    fixture = load_fixture()
    server = DovecotServer(fixture, workdir=str(tmp_path / "dovecot"), pools=3)
    server.port = 1100
    config = load_config(server.write_run_config(tmp_path / "pools.yaml"))
    assert (config.host, config.port, config.pool) == ("127.0.0.1", 1100, 3)
    assert config.provision == server.provision_spec
    held = {(a.user, a.password) for a in server.accounts()}
    named = {
        (entry["user"], entry["password"])
        for n in range(1, 4)
        for entry in templated_accounts(config.accounts, n).values()
    }
    assert held == named
    assert len(held) == 3 * len(fixture.accounts)  # disjoint pools
    assert {a.user for a in server.accounts() if a.role == "main"} == {
        "msmain1",
        "msmain2",
        "msmain3",
    }


def test_one_pool_keeps_the_fixture_names(tmp_path: Path):
    fixture = load_fixture()
    server = DovecotServer(fixture, workdir=str(tmp_path / "dovecot"))
    assert [a.user for a in server.accounts()] == [a.user for a in fixture.accounts.values()]


@pytest.mark.timeout(240)
def test_parallel_run_against_dovecot_gives_the_serial_golden_verdicts(tmp_path: Path):
    need(DovecotServer)
    server = DovecotServer(load_fixture(), fast_failures=True, pools=8)
    server.start()
    report = tmp_path / "dovecot-parallel.json"
    try:
        config = server.write_run_config(tmp_path / "pools.yaml")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        argv = [sys.executable, "-m", "conformance", "run", "--config", str(config)]
        done = subprocess.run(
            [*argv, "--json", str(report)],
            env=env,
            capture_output=True,
            text=True,
            timeout=220,
            cwd=tmp_path,
        )
    finally:
        server.stop()
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["config"].get("pool") == 8, data["config"]
    assert harness_errors(data) == [], done.stdout[-2000:]
    assert changed_verdicts(data, "dovecot") == [], done.stdout[-2000:]
