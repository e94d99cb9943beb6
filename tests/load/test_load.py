"""`mailspec load` for real: Locust processes against the reference server
(embedded, or started here with a deliberate fault), bounded short runs.

The faulty servers are the reference server with one session method
replaced (tests/corpus/faults.py and two defined here); each must be
reported as a protocol finding and make the run exit 1."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from faults import EightBitMangled, NoStuffing, QuitRemovesWrong

from conformance.core.fixture import load_fixture
from conformance.load.client import (
    LoadError,
    is_finding,
    load_accounts,
)
from conformance.load.mix import parse_mix
from conformance.load.runner import verify_account
from conformance.provision import MaildirProvisioner
from reference_server.pop3.protocol import Pop3Session, SessionConfig, UserDirectory
from reference_server.pop3.server import Pop3Server, ServerHandle, ServerSettings
from reference_server.store.maildrop import MaildirStore

# find_spec, not importorskip: importing Locust monkey-patches this process
# with gevent, which would break every threaded or asyncio test after it
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None, reason="Locust not installed (mailspec[load])"
)

# Locust writes nothing we want into the working directory; run in an empty
# one of our own. Not the shared temp directory: a `conformance/` folder
# there (left by anything) shadows this editable install under `python -m`
# and every run dies with "cannot import name '__version__'".
RUN_CWD = tempfile.mkdtemp(prefix="mailspec-load-cwd-")
RUN_TIMEOUT = 180  # seconds; the runs below take 5-15
SHORT = ["--headless", "--users", "6", "--spawn-rate", "20", "--duration", "4"]


class AcceptsAnyPassword(Pop3Session):
    def cmd_pass(self, args):
        user = self.user_name
        self.user_name = None
        return self.open_maildrop(user, method="PASS")


def mailspec(*args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conformance", "load", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=RUN_CWD,
    )


@contextmanager
def faulty_server(session_class: type[Pop3Session], accounts: int = 8) -> Iterator[list[str]]:
    """A reference server on loopback with `session_class`, holding the load
    accounts msload1..N; yields the `--target/--provision` arguments."""
    with tempfile.TemporaryDirectory(prefix="mailspec-load-test-") as tmp:
        template = f"{tmp}/{{user}}"
        users = UserDirectory()
        for account in load_accounts(load_fixture(), accounts):
            users.set(account.user, account.password)
        server = Pop3Server(
            MaildirStore(template),
            users,
            session_class=session_class,
            settings=ServerSettings(session_config=SessionConfig()),
        )
        handle = ServerHandle(server, "127.0.0.1", 0)
        try:
            yield [
                "--target",
                f"{handle.host}:{handle.port}",
                "--provision",
                f"maildir:{template}",
                "--accounts",
                str(accounts),
            ]
        finally:
            handle.close()


def test_load_against_the_reference_server_passes_with_the_summary():
    done = mailspec(*SHORT, "--users", "10", "--duration", "5")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "mailspec load summary" in out
    for line in ("per command", "RETR", "UIDL", "TOP", "NOOP", "PASS (wrong)", "DELE"):
        assert line in out
    assert "protocol findings under load: none" in out
    assert "errors by class: none" in out
    assert "every maildrop as expected" in out
    assert out.rstrip().endswith("result: PASS")


def test_csv_and_html_from_locust_are_kept(tmp_path):
    done = mailspec(
        *SHORT,
        "--duration",
        "2",
        "--csv",
        str(tmp_path / "run"),
        "--html",
        str(tmp_path / "r.html"),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    stats = (tmp_path / "run_stats.csv").read_text()
    assert "RETR" in stats and "POP3" in stats
    assert (tmp_path / "r.html").read_text().lstrip().lower().startswith("<!doctype html")


def test_unstuffed_retr_body_is_a_framing_finding_and_exits_1():
    with faulty_server(NoStuffing) as target:
        done = mailspec(*SHORT, *target, "--mix", "leave-on-server=0,top-preview=0")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    # the unstuffed "." line ends the body early; the rest arrives unasked
    assert "framing: unsolicited (POP3-1939-GREET-02)" in done.stdout
    assert "result: FAIL" in done.stdout


def test_wrong_retr_content_is_a_content_finding():
    with faulty_server(EightBitMangled) as target:
        done = mailspec(*SHORT, *target, "--mix", "fetch-delete=0,top-preview=0")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "content: RETR differs from the fixture" in done.stdout
    assert "e.g. RETR" in done.stdout  # an example names the message


def test_quit_deleting_the_wrong_message_is_caught():
    with faulty_server(QuitRemovesWrong) as target:
        done = mailspec(*SHORT, *target, "--mix", "noop-keepalive=0,failed-login=0")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "result: FAIL" in done.stdout
    assert "content: RETR differs" in done.stdout or "lost" in done.stdout


def test_a_wrong_password_accepted_is_an_auth_finding():
    with faulty_server(AcceptsAnyPassword) as target:
        done = mailspec(*SHORT, *target, "--mix", "failed-login=5")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "auth: PASS (wrong) accepted" in done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_master_with_two_local_worker_processes():
    port = str(_free_port())
    command = [sys.executable, "-m", "conformance", "load"]
    workers = [
        subprocess.Popen(
            [*command, "--worker", "--master-host", "127.0.0.1", "--master-port", port],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=RUN_CWD,
        )
        for _ in range(2)
    ]
    try:
        done = mailspec(
            *SHORT, "--master", "--expect-workers", "2", "--master-port", port, "--users", "6"
        )
    finally:
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 workers" in done.stdout
    assert "every maildrop as expected" in done.stdout
    assert all(w.returncode == 0 for w in workers), [w.stderr.read() for w in workers if w.stderr]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--worker"], "--worker: --master-host HOST is required"),
        (["--mix", "bogus=1"], "argument --mix: expected FLOW=WEIGHT"),
        (
            [
                "--mix",
                "fetch-delete=0,leave-on-server=0,top-preview=0,noop-keepalive=0,failed-login=0",
            ],
            "every weight is 0",
        ),
        (["--users", "0"], "argument --users: expected a positive whole number"),
        (["--provision", "maildir:/x/{user}"], "--provision: only with --target"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args, message):
    done = mailspec(*args, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_target_whose_accounts_do_not_hold_the_fixture_is_refused_before_the_run():
    with faulty_server(Pop3Session) as target:
        without_provision = target[:2] + target[4:]  # --target, --accounts: nothing written
        done = mailspec(*SHORT, *without_provision, timeout=60)
    assert done.returncode == 3
    assert "do not hold the fixture's messages before the run" in done.stderr


# -- the pieces, without Locust ------------------------------------------------


def test_parse_mix_keeps_defaults_for_flows_not_named():
    mix = parse_mix("top-preview=7")
    assert mix["top-preview"] == 7 and mix["fetch-delete"] == 3
    with pytest.raises(ValueError, match="whole number"):
        parse_mix("top-preview=x")


def test_finding_classes_are_told_apart_from_errors():
    assert LoadError("framing: stuffing (POP3-1939-MULTI-02)").finding
    assert is_finding("maildrop: message count differs from the messages not deleted")
    assert not is_finding("timeout")
    assert not is_finding("connection closed")


def test_verification_reports_lost_duplicated_and_resurrected_messages():
    fixture = load_fixture()
    (account,) = load_accounts(fixture, 1)
    names = [m.name for m in account.messages]
    with faulty_server(Pop3Session, accounts=1) as target:
        host, port = target[1].rsplit(":", 1)
        template = target[3].partition(":")[2]
        provisioner = MaildirProvisioner(template)
        provisioner.reset(account)
        assert verify_account(host, int(port), account, names, [], exact=True) is None
        # the ledger says message 1 was deleted: the server still has it
        problem = verify_account(host, int(port), account, names[1:], [], exact=True)
        assert problem == f"deleted but still there: {names[0]}"
        # a pending deletion may or may not have been applied: both verify
        assert verify_account(host, int(port), account, names, names[:1], exact=True) is None
        # the store lost message 2 and holds message 1 twice
        doubled = type(account)(
            account.role,
            account.user,
            account.password,
            (account.messages[0], account.messages[0], *account.messages[2:]),
        )
        provisioner.reset(doubled)
        problem = verify_account(host, int(port), account, names, [], exact=True)
        assert problem == f"duplicated {names[0]}; lost {names[1]}"
    assert os.path.basename(template)  # the store was removed with the server
