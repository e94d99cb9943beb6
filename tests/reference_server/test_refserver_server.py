"""Integration over real sockets: in-process server, CLI subprocess, data safety."""

from __future__ import annotations

import poplib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from pop3_testlib import (
    APOP_USER,
    PASSWORD,
    SAMPLE_MESSAGES,
    LineClient,
    ServerProcess,
    maildir_names,
    write_maildir,
)

from reference_server import (
    MaildirMaildrop,
    MaildirStore,
    Pop3Session,
    Reply,
    StoredMessage,
    UserDirectory,
    err,
    start_server,
)
from reference_server.pop3.server import ServerHandle

StartProcess = Callable[..., ServerProcess]


@pytest.fixture
def handle(store: MaildirStore, users: UserDirectory) -> Iterator[ServerHandle]:
    with start_server(store=store, users=users, port=0) as running:
        yield running


def login(client: LineClient, user: str = "alice", password: str = PASSWORD) -> None:
    assert client.command(f"USER {user}").startswith(b"+OK")
    assert client.command(f"PASS {password}").startswith(b"+OK")


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_poplib_retrieves_exactly_the_stored_messages(handle: ServerHandle) -> None:
    client = poplib.POP3(handle.host, handle.port, timeout=10)
    client.user("alice")
    client.pass_(PASSWORD)
    count, size = client.stat()
    assert count == 3
    total = 0
    for number, stored in enumerate(SAMPLE_MESSAGES, start=1):
        response, lines, _ = client.retr(number)
        expected = stored.replace(b"\r\n", b"\n")
        expected = expected if expected.endswith(b"\n") else expected + b"\n"
        assert b"\n".join(lines) + b"\n" == expected
        wire_size = len(expected.replace(b"\n", b"\r\n"))
        assert response == b"+OK %d octets" % wire_size
        total += wire_size
    assert size == total
    assert client.capa()["PIPELINING"] == []
    client.quit()


def test_pipelined_dele_and_quit_in_one_write(handle: ServerHandle, maildir_root: Path) -> None:
    client = LineClient(handle.host, handle.port)
    client.send(f"USER alice\r\nPASS {PASSWORD}\r\nDELE 1\r\nDELE 3\r\nQUIT\r\n".encode())
    statuses = [client.readline()[:4] for _ in range(5)]
    assert statuses == [b"+OK "] * 5
    assert client.readline() == b""  # closed after QUIT
    client.close()
    assert maildir_names(maildir_root / "alice") == ["0002.test"]


def test_drop_without_quit_keeps_everything_and_releases_the_lock(
    handle: ServerHandle, maildir_root: Path
) -> None:
    client = LineClient(handle.host, handle.port)
    login(client)
    assert client.command("DELE 1").startswith(b"+OK")
    client.sock.shutdown(socket.SHUT_RDWR)
    client.close()

    # Once the server noticed, the next login works and sees all three messages.
    def relogin_sees_three() -> bool:
        again = LineClient(handle.host, handle.port)
        try:
            again.command("USER alice")
            return again.command(f"PASS {PASSWORD}").startswith(b"+OK alice has 3")
        finally:
            again.close()

    wait_until(relogin_sees_three)
    assert len(maildir_names(maildir_root / "alice")) == 3


def test_autologout_closes_silently_without_update(
    store: MaildirStore, users: UserDirectory, maildir_root: Path
) -> None:
    with start_server(store=store, users=users, port=0, autologout_seconds=1) as running:
        client = LineClient(running.host, running.port)
        login(client)
        assert client.command("DELE 1").startswith(b"+OK")
        started = time.monotonic()
        assert client.readline() == b""  # closed with no reply
        assert 0.8 < time.monotonic() - started < 5
        client.close()
        assert len(maildir_names(maildir_root / "alice")) == 3
        again = LineClient(running.host, running.port)
        login(again)
        again.close()


def test_partial_line_does_not_keep_the_session_alive(
    store: MaildirStore, users: UserDirectory
) -> None:
    with start_server(store=store, users=users, port=0, autologout_seconds=1) as running:
        client = LineClient(running.host, running.port)
        closed_after = None
        started = time.monotonic()
        for _ in range(40):
            try:
                client.send(b"N")
            except OSError:
                closed_after = time.monotonic() - started
                break
            time.sleep(0.1)
        else:
            closed_after = None if client.readline() != b"" else time.monotonic() - started
        assert closed_after is not None and closed_after < 4
        client.close()


def test_hostile_input_is_survived_and_other_sessions_keep_working(handle: ServerHandle) -> None:
    hostile = LineClient(handle.host, handle.port)
    hostile.send(b"\x00\xff\xfe\r\n" + b"A" * 100_000 + b"\r\n\r\n\n" + b"\x80STAT\r\n")
    replies = [hostile.readline() for _ in range(4)]
    assert all(reply.startswith(b"-ERR") for reply in replies), replies
    assert all(b"Error" not in reply and b"Traceback" not in reply for reply in replies)
    hostile.send(b"B" * 10_000)  # never finished
    other = LineClient(handle.host, handle.port)
    login(other)
    assert other.command("STAT").startswith(b"+OK 3 ")
    other.close()
    assert hostile.command("CAPA").startswith(b"-ERR")  # the unfinished line, discarded
    hostile.close()


def test_many_concurrent_sessions(tmp_path: Path) -> None:
    users = UserDirectory({f"user{i}": "pw" for i in range(50)})
    for i in range(50):
        write_maildir(tmp_path, f"user{i}", [b"Subject: %d\r\n\r\nbody\r\n" % i])
    failures: list[str] = []
    with start_server(store=f"maildir:{tmp_path}/{{user}}", users=users, port=0) as running:

        def fetch(i: int) -> None:
            try:
                client = poplib.POP3(running.host, running.port, timeout=10)
                client.user(f"user{i}")
                client.pass_("pw")
                assert client.retr(1)[1][0] == b"Subject: %d" % i
                client.quit()
            except Exception as problem:  # collected, asserted below
                failures.append(f"{i}: {problem!r}")

        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert failures == []


# --- Extension seam ---------------------------------------------------------------


class DeleteImmediatelySession(Pop3Session):
    """A deliberately faulty server: DELE removes the file at once."""

    def cmd_dele(self, args: list[str]) -> Reply:
        number = self.parse_message_number(args[0] if args else "")
        Path(self.message(number).location).unlink()
        return b"+OK gone for good\r\n"


def test_session_subclass_is_used_by_start_server(
    store: MaildirStore, users: UserDirectory, maildir_root: Path
) -> None:
    with start_server(
        store=store, users=users, port=0, session_class=DeleteImmediatelySession
    ) as running:
        client = LineClient(running.host, running.port)
        login(client)
        assert client.command("DELE 1") == b"+OK gone for good\r\n"
        assert len(maildir_names(maildir_root / "alice")) == 2
        client.close()


class CountsLfOctets(MaildirMaildrop):
    def octet_count(self, message: StoredMessage) -> int:
        return len(message.content.replace(b"\r\n", b"\n"))


class NeverCommits(MaildirMaildrop):
    def commit(self, deleted: Sequence[StoredMessage]) -> None:
        return None


class RefusesCapaSession(Pop3Session):
    def cmd_capa(self, args: list[str]) -> Reply:
        return err("no CAPA here")


@pytest.mark.parametrize("maildrop_class", [CountsLfOctets, NeverCommits])
def test_store_subclass_is_used_by_start_server(
    maildir_root: Path, users: UserDirectory, store: MaildirStore, maildrop_class: type
) -> None:
    faulty_store = type("FaultyStore", (MaildirStore,), {"maildrop_class": maildrop_class})(
        store.path_template
    )
    with start_server(
        store=faulty_store, users=users, port=0, session_class=RefusesCapaSession
    ) as running:
        client = LineClient(running.host, running.port)
        assert client.command("CAPA") == b"-ERR no CAPA here\r\n"
        login(client)
        stat = client.command("STAT")
        client.command("DELE 1")
        client.command("QUIT")
        client.close()
    if maildrop_class is CountsLfOctets:
        lf_total = sum(
            len(m.replace(b"\r\n", b"\n")) + (not m.endswith(b"\n")) for m in SAMPLE_MESSAGES
        )
        assert stat == b"+OK 3 %d\r\n" % lf_total
    else:
        assert len(maildir_names(maildir_root / "alice")) == 3


# --- The command line, as a subprocess ----------------------------------------------


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_ready_line_quickly_and_stops_on_signal(
    server_process: StartProcess, store_spec: str, users_file: Path, stop_signal: int
) -> None:
    server = server_process(
        "--listen", "127.0.0.1:0", "--store", store_spec, "--users", str(users_file)
    )
    assert server.startup_seconds < 1.5
    assert server.host == "127.0.0.1" and server.port > 0
    client = poplib.POP3(server.host, server.port, timeout=10)
    client.user("alice")
    client.pass_(PASSWORD)
    client.quit()
    returncode, stdout_rest, stderr = server.stop(stop_signal)
    assert returncode == 0
    assert stdout_rest == ""  # the ready line is the only stdout output
    assert "event=login user=alice" in stderr
    assert PASSWORD not in stderr and "s3cret" not in stderr


def test_cli_apop_and_no_last_switches(
    server_process: StartProcess, store_spec: str, users_file: Path
) -> None:
    server = server_process(
        "--listen",
        "127.0.0.1:0",
        "--store",
        store_spec,
        "--users",
        str(users_file),
        "--apop",
        "--no-last",
    )
    client = poplib.POP3(server.host, server.port, timeout=10)
    client.apop(APOP_USER, PASSWORD)
    with pytest.raises(poplib.error_proto):
        client._shortcmd("LAST")
    client.quit()
    server.stop()


def test_kill_9_mid_session_loses_nothing_and_frees_the_lock(
    server_process: StartProcess, store_spec: str, users_file: Path, maildir_root: Path
) -> None:
    arguments = ("--listen", "127.0.0.1:0", "--store", store_spec, "--users", str(users_file))
    first = server_process(*arguments)
    client = LineClient(first.host, first.port)
    login(client)
    assert client.command("DELE 1").startswith(b"+OK")
    assert client.command("DELE 2").startswith(b"+OK")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    client.close()
    assert len(maildir_names(maildir_root / "alice")) == 3
    second = server_process(*arguments)
    again = LineClient(second.host, second.port)
    login(again)
    assert again.command("STAT").startswith(b"+OK 3 ")
    again.close()


def test_two_server_processes_on_one_store_share_the_lock(
    server_process: StartProcess, store_spec: str, users_file: Path
) -> None:
    arguments = ("--listen", "127.0.0.1:0", "--store", store_spec, "--users", str(users_file))
    first, second = server_process(*arguments), server_process(*arguments)
    holder = LineClient(first.host, first.port)
    login(holder)
    intruder = LineClient(second.host, second.port)
    intruder.command("USER alice")
    assert intruder.command(f"PASS {PASSWORD}").startswith(b"-ERR [IN-USE]")
    holder.command("QUIT")
    holder.close()
    login(intruder)
    intruder.close()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--store", "bogus:/x/{user}"], "bad store spec"),
        (["--store", "maildir:/nonexistent-mailspec/{user}"], "does not exist"),
        (["--users", "/nonexistent-mailspec-users"], "does not exist"),
        (["--listen", "localhost"], "bad --listen"),
        (["--listen", "127.0.0.1:99999"], "bad --listen"),
    ],
)
def test_cli_configuration_errors_are_one_line_and_exit_2(
    arguments: list[str], message: str, store_spec: str, users_file: Path
) -> None:
    import subprocess
    import sys

    base = {"--store": store_spec, "--users": str(users_file), "--listen": "127.0.0.1:0"}
    base.update(dict(zip(arguments[::2], arguments[1::2], strict=True)))
    command = [sys.executable, "-m", "reference_server"]
    for option, value in base.items():
        command += [option, value]
    result = subprocess.run(
        command, capture_output=True, timeout=20, text=True, cwd=Path(__file__).resolve().parents[2]
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_cli_port_in_use(store_spec: str, users_file: Path) -> None:
    import subprocess
    import sys

    with socket.socket() as occupier:
        occupier.bind(("127.0.0.1", 0))
        occupier.listen()
        port = occupier.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "reference_server",
                "--listen",
                f"127.0.0.1:{port}",
                "--store",
                store_spec,
                "--users",
                str(users_file),
            ],
            capture_output=True,
            timeout=20,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
    assert result.returncode == 2
    assert "port already in use" in result.stderr and result.stderr.count("\n") == 1
