"""Hardening of the reference server: streamed RETR, storage off the event
loop, the all-or-nothing UPDATE journal, and the abuse limits."""

from __future__ import annotations

import io
import itertools
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pop3_testlib import PASSWORD, LineClient, ServerProcess, maildir_names, write_maildir

from reference_server import cli
from reference_server.pop3.protocol import (
    DelayedReply,
    Pop3Session,
    Response,
    SessionConfig,
    UserDirectory,
    stuffed_pieces,
    top_of_message,
    top_pieces,
)
from reference_server.pop3.server import ServerSettings, start_server
from reference_server.store import maildrop as storage
from reference_server.store.maildrop import (
    JOURNAL_FILE_NAME,
    MaildirMaildrop,
    MaildirStore,
    MboxStore,
    to_wire_form,
    wire_chunks,
    wire_size,
)

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


WIRE_TEXT = st.lists(st.sampled_from([b"a", b".", b"\r", b"\r\n", b" ", b"From "]), max_size=30)


# --- piecewise helpers equal their whole-message forms ----------------------


@given(raw=st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"\r\r", b"."])))
def test_crlf_line_ends_turn_every_lf_into_crlf_and_keep_lone_crs(raw: list[bytes]) -> None:
    data = b"".join(raw)
    # the rule, written as the regular expression the server used before
    assert storage.crlf_line_ends(data) == re.sub(rb"\r?\n", b"\r\n", data)


def test_crlf_line_ends_examples() -> None:
    assert storage.crlf_line_ends(b"a\nb\r\nc\rd\r\r\n") == b"a\r\nb\r\nc\rd\r\r\n"
    assert storage.crlf_line_ends(b"") == b""


@given(raw=st.binary(max_size=200), chunk=st.integers(min_value=1, max_value=9))
def test_wire_chunks_equal_the_whole_conversion_for_any_read_size(raw: bytes, chunk: int) -> None:
    original = storage.STREAM_CHUNK_OCTETS
    storage.STREAM_CHUNK_OCTETS = chunk
    try:
        assert b"".join(wire_chunks(io.BytesIO(raw))) == to_wire_form(raw)
    finally:
        storage.STREAM_CHUNK_OCTETS = original


@given(
    parts=st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"."]), max_size=40),
    chunk=st.integers(min_value=1, max_value=9),
)
def test_the_octet_count_without_conversion_equals_the_converted_length(
    parts: list[bytes], chunk: int
) -> None:
    raw = b"".join(parts)
    original = storage.WIRE_SIZE_READ_OCTETS
    storage.WIRE_SIZE_READ_OCTETS = chunk
    try:
        assert wire_size(io.BytesIO(raw)) == len(to_wire_form(raw))
    finally:
        storage.WIRE_SIZE_READ_OCTETS = original


@given(parts=WIRE_TEXT, cuts=st.lists(st.integers(min_value=0), max_size=6))
def test_stuffing_in_pieces_equals_stuffing_the_whole_body(
    parts: list[bytes], cuts: list[int]
) -> None:
    content = to_wire_form(b"".join(parts))
    whole = Response(True, "x", body=content).to_bytes()
    assert Response(True, "x", stream=cut(content, cuts)).to_bytes() == whole
    expected = whole[len(b"+OK x\r\n") : -len(b".\r\n")]
    assert b"".join(stuffed_pieces(cut(content, cuts))) == expected


@given(
    parts=WIRE_TEXT,
    cuts=st.lists(st.integers(min_value=0), max_size=6),
    lines=st.integers(min_value=0, max_value=6),
)
def test_top_in_pieces_equals_top_of_the_whole_message(
    parts: list[bytes], cuts: list[int], lines: int
) -> None:
    content = to_wire_form(b"".join(parts))
    assert b"".join(top_pieces(cut(content, cuts), lines)) == top_of_message(content, lines)


def test_top_in_pieces_one_byte_at_a_time_and_with_trailing_body() -> None:
    content = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n"
    one_by_one = [content[i : i + 1] for i in range(len(content))]
    assert b"".join(top_pieces(one_by_one, 2)) == b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n"
    assert b"".join(top_pieces(one_by_one, 0)) == b"A: 1\r\nB: 2\r\n\r\n"


# --- lazy snapshots and streamed RETR ---------------------------------------


@pytest.fixture
def big_store(tmp_path: Path) -> tuple[MaildirStore, bytes]:
    line = b"x" * 70 + b"\n"
    body = b".dot first\n" + line * (storage.SMALL_MESSAGE_OCTETS // len(line) + 10)
    raw = b"Subject: big\n\n" + body
    write_maildir(tmp_path, "alice", [b"Subject: small\r\n\r\nhi\r\n", raw])
    return MaildirStore(str(tmp_path / "{user}")), to_wire_form(raw)


def _logged_in_as_alice(store: MaildirStore) -> Pop3Session:
    """A sans-I/O session over `store`, greeted and logged in as alice."""
    session = Pop3Session(store, UserDirectory({"alice": PASSWORD}), SessionConfig(hostname="t"))
    session.greeting()
    session.receive_data(f"USER alice\r\nPASS {PASSWORD}\r\n".encode())
    return session


def test_a_snapshot_holds_sizes_not_contents(big_store: tuple[MaildirStore, bytes]) -> None:
    store, wire = big_store
    maildrop = store.open("alice")
    try:
        assert [m.size for m in maildrop.messages] == [22, len(wire)]
        assert all(m._content is None for m in maildrop.messages)
        assert maildrop.messages[1].streamed and not maildrop.messages[0].streamed
    finally:
        maildrop.release()


def test_retr_of_a_large_message_comes_in_bounded_pieces(
    big_store: tuple[MaildirStore, bytes],
) -> None:
    store, wire = big_store
    session = _logged_in_as_alice(store)
    session.feed(b"RETR 2\r\nNOOP\r\n")
    pieces = list(session.replies())
    assert pieces[0] == f"+OK {len(wire)} octets\r\n".encode()
    assert max(len(piece) for piece in pieces) <= 2 * storage.STREAM_CHUNK_OCTETS
    assert len(pieces) > 10
    assert pieces[-1] == b"+OK\r\n"  # the NOOP after the streamed reply
    body = b"".join(pieces[1:-1])
    assert body == wire.replace(b"\n.", b"\n..").replace(b"Subject", b"Subject", 1) + b".\r\n"
    top = session.receive_data(b"TOP 2 1\r\n")
    assert top == b"+OK top of message follows\r\nSubject: big\r\n\r\n..dot first\r\n.\r\n"
    session.connection_lost()


def test_retr_of_a_message_removed_behind_the_lock_is_a_clean_error(
    big_store: tuple[MaildirStore, bytes],
) -> None:
    store, _ = big_store
    session = _logged_in_as_alice(store)
    for path in (store.path_for("alice") / "new").iterdir():
        path.unlink()
    assert session.receive_data(b"RETR 1\r\n").startswith(b"-ERR [SYS/TEMP]")
    assert session.receive_data(b"RETR 2\r\n").startswith(b"-ERR [SYS/TEMP]")
    session.connection_lost()


# --- storage runs off the event loop ------------------------------------------


class SlowReads(MaildirMaildrop):
    """A disk that takes two seconds per message read."""

    def _cached_chunks(self, path: str) -> Iterator[bytes]:
        time.sleep(2.0)
        return super()._cached_chunks(path)


class SlowStore(MaildirStore):
    maildrop_class = SlowReads


def test_a_slow_store_read_does_not_stall_other_sessions(
    maildir_root: Path, store: MaildirStore, users: UserDirectory
) -> None:
    slow = SlowStore(store.path_template)
    with start_server(store=slow, users=users) as handle:
        reader = LineClient(handle.host, handle.port)
        other = LineClient(handle.host, handle.port)
        for client, user, password in ((reader, "alice", PASSWORD), (other, "bob", "bobpw")):
            assert client.command(f"USER {user}").startswith(b"+OK")
            assert client.command(f"PASS {password}").startswith(b"+OK")
        reader.send(b"RETR 1\r\n")  # blocks its worker thread for 2 s
        time.sleep(0.2)
        started = time.monotonic()
        assert other.command("NOOP") == b"+OK\r\n"
        assert time.monotonic() - started < 1.0
        assert reader.readline().startswith(b"+OK")
        assert reader.multiline() == [b"Subject: one\r\n", b"\r\n", b"first body\r\n"]
        reader.close()
        other.close()


class SlowLogins(MaildirMaildrop):
    """A disk that takes two seconds to open a maildrop (the login scan)."""

    def load(self) -> list[storage.StoredMessage]:
        time.sleep(2.0)
        return super().load()


class SlowLoginStore(MaildirStore):
    maildrop_class = SlowLogins


def test_a_slow_login_scan_does_not_stall_other_sessions(
    store: MaildirStore, users: UserDirectory
) -> None:
    slow = SlowLoginStore(store.path_template)
    with start_server(store=slow, users=users) as handle:
        other = LineClient(handle.host, handle.port)
        login = LineClient(handle.host, handle.port)
        assert login.command("USER alice").startswith(b"+OK")
        login.send(f"PASS {PASSWORD}\r\n".encode())  # its worker thread sleeps 2 s
        time.sleep(0.2)
        started = time.monotonic()
        assert other.command("CAPA").startswith(b"+OK")
        assert b"USER\r\n" in other.multiline()
        assert time.monotonic() - started < 1.0
        assert login.readline().startswith(b"+OK")
        login.close()
        other.close()


class WhereStepsRun(Pop3Session):
    """Records the thread each command's handler ran on."""

    threads: ClassVar[dict[str, str]] = {}

    def _dispatch(self, line: bytes):  # type: ignore[no-untyped-def]
        self.threads[line.split(b" ")[0].decode()] = threading.current_thread().name
        return super()._dispatch(line)


def test_store_free_steps_run_on_the_loop_and_storage_steps_on_a_worker(
    store: MaildirStore, users: UserDirectory
) -> None:
    WhereStepsRun.threads = {}
    with start_server(store=store, users=users, session_class=WhereStepsRun) as handle:
        client = LineClient(handle.host, handle.port)
        for line in ("CAPA", "USER alice", f"PASS {PASSWORD}", "NOOP", "RETR 1", "DELE 1"):
            assert client.command(line).startswith(b"+OK"), line
            if line in ("CAPA", "RETR 1"):
                client.multiline()
        assert client.command("QUIT").startswith(b"+OK")
        client.close()
    on_loop = {k for k, v in WhereStepsRun.threads.items() if v.startswith(handle.thread_name)}
    on_worker = {k for k, v in WhereStepsRun.threads.items() if v.startswith("pop3-storage")}
    assert on_loop == {"CAPA", "USER", "NOOP", "DELE"}
    assert on_worker == {"PASS", "RETR", "QUIT"}


def test_without_storage_threads_every_step_runs_on_the_loop_and_answers_the_same(
    store: MaildirStore, users: UserDirectory
) -> None:
    dialogue = ("CAPA", "USER alice", f"PASS {PASSWORD}", "STAT", "RETR 1", "DELE 1", "QUIT")
    answers: dict[int, list[bytes]] = {}
    alice = Path(store.path_template.replace("{user}", "alice"))
    for threads in (0, 4):
        shutil.rmtree(alice)
        write_maildir(alice.parent, "alice", [b"Subject: a\r\n\r\na\r\n", b"b\r\n"])
        WhereStepsRun.threads = {}
        with start_server(
            store=store, users=users, session_class=WhereStepsRun, storage_threads=threads
        ) as handle:
            client = LineClient(handle.host, handle.port)
            answers[threads] = []
            for line in dialogue:
                answers[threads].append(client.command(line))
                if line in ("CAPA", "RETR 1"):
                    answers[threads].append(client.multiline())
            client.close()
        on_worker = {k for k, v in WhereStepsRun.threads.items() if v.startswith("pop3-storage")}
        assert on_worker == (set() if threads == 0 else {"PASS", "RETR", "QUIT"})
        assert maildir_names(alice) == ["0002.test"]  # UPDATE removed message 1
    # the same dialogue, wherever the steps ran (APOP is off: no timestamp)
    assert answers[0] == answers[4]


def test_a_negative_storage_thread_count_is_refused() -> None:
    with pytest.raises(ValueError, match="storage_threads"):
        ServerSettings(storage_threads=-1)


def test_next_step_may_block_names_the_steps_that_touch_the_store(
    store: MaildirStore, users: UserDirectory
) -> None:
    session = Pop3Session(store, users, SessionConfig(hostname="t"))
    session.greeting()
    assert not session.next_step_may_block()  # nothing buffered
    for partial in (b"PA", b"PASS x"):  # no complete line yet: nothing runs
        session._pending[:] = partial
        assert not session.next_step_may_block()
    session._pending.clear()
    authorization = {
        b"USER alice": False,
        b"CAPA": False,
        b"quit": False,
        b"NOOP": False,  # refused in this state: no handler runs
        b"XYZZY": False,
        b"\xff\xfe": False,
        b"A" * 300: False,
        b"AUTH PLAIN": True,
        b"APOP alice 0123": True,
    }
    for line, blocks in authorization.items():
        session._pending[:] = line + b"\r\n"
        assert session.next_step_may_block() is blocks, line
    session._pending.clear()
    session.receive_data(f"USER alice\r\nPASS {PASSWORD}\r\n".encode())
    transaction = {
        b"NOOP": False,
        b"DELE 1": False,
        b"UIDL": False,
        b"LAST": False,
        b"RETR 1": True,
        b"TOP 1 0": True,
        b"STAT": False,  # a Maildir's sizes are measured at login
        b"LIST": False,
        b"RSET": False,
        b"QUIT": False,  # nothing deleted or retrieved: UPDATE writes nothing
        b"USER bob": False,  # refused in TRANSACTION
    }
    for line, blocks in transaction.items():
        session._pending[:] = line + b"\r\n"
        assert session.next_step_may_block() is blocks, line
    session._pending.clear()
    session.connection_lost()


@pytest.mark.parametrize("command", ["DELE 1", "RETR 1"])
def test_quit_runs_on_a_storage_thread_once_update_has_something_to_write(
    store: MaildirStore, command: str
) -> None:
    session = _logged_in_as_alice(store)
    assert session.receive_data(f"{command}\r\n".encode()).startswith(b"+OK")
    session._pending[:] = b"QUIT\r\n"  # a removal, or RETR's LAST record (RFC 1225)
    assert session.next_step_may_block()
    session._pending.clear()
    session.connection_lost()


class StatFromElsewhere(Pop3Session):
    """Overrides the STAT handler (the cmd_<keyword> seam): it may read the store."""

    def cmd_stat(self, args: list[str]):  # type: ignore[no-untyped-def]
        return super().cmd_stat(args)


def test_a_session_subclass_that_overrides_a_handler_keeps_it_on_the_storage_threads(
    store: MaildirStore,
) -> None:
    session = StatFromElsewhere(
        store, UserDirectory({"alice": PASSWORD}), SessionConfig(hostname="t")
    )
    session.greeting()
    session.receive_data(f"USER alice\r\nPASS {PASSWORD}\r\n".encode())
    for keyword, blocks in (("STAT", True), ("LIST", False), ("RSET", False)):
        session._pending[:] = keyword.encode() + b"\r\n"
        assert session.next_step_may_block() is blocks, keyword
    session._pending.clear()
    session.connection_lost()


class CountsByReading(MaildirMaildrop):
    """Counts octets its own way (the octet_count seam): may read the store."""

    def octet_count(self, message: storage.StoredMessage) -> int:
        return len(message.content)


class CommitsAlways(MaildirMaildrop):
    """A commit of its own, which may write even when nothing is removed."""

    def commit(self, deleted: object) -> None:
        super().commit(deleted)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("maildrop_class", "blocking"),
    [(CountsByReading, {"STAT", "LIST", "RSET"}), (CommitsAlways, {"QUIT"})],
)
def test_a_maildrop_subclass_keeps_its_counting_and_update_on_the_storage_threads(
    store: MaildirStore, maildrop_class: type[MaildirMaildrop], blocking: set[str]
) -> None:
    subclassed = type("Subclassed", (MaildirStore,), {"maildrop_class": maildrop_class})
    session = _logged_in_as_alice(subclassed(store.path_template))
    for keyword in ("STAT", "LIST", "RSET", "QUIT"):
        session._pending[:] = keyword.encode() + b"\r\n"
        assert session.next_step_may_block() is (keyword in blocking), keyword
    session._pending.clear()
    session.connection_lost()


def test_next_step_may_block_while_a_streamed_body_is_pending(
    big_store: tuple[MaildirStore, bytes],
) -> None:
    store, _ = big_store
    session = _logged_in_as_alice(store)
    session.feed(b"RETR 2\r\nNOOP\r\n")
    replies = session.replies()
    assert next(replies).startswith(b"+OK")  # the status line; the body is to come
    while session.next_step_may_block():  # every body piece is read from the store
        piece = next(replies)
        if piece == b"+OK\r\n":
            break
    else:
        raise AssertionError("the NOOP's reply came before the body ended")
    assert not session.next_step_may_block()
    assert next(replies, None) is None
    session.connection_lost()


# --- UPDATE is all or nothing -------------------------------------------------


def test_a_journal_left_by_a_killed_server_is_finished_at_the_next_open(tmp_path: Path) -> None:
    maildir = write_maildir(tmp_path, "alice", [b"a\n", b"b\n", b"c\n"])
    (maildir / JOURNAL_FILE_NAME).write_text("new/0001.test\nnew/0003.test\n")
    store = MaildirStore(str(tmp_path / "{user}"))
    maildrop = store.open("alice")
    try:
        assert [m.uid for m in maildrop.messages] == ["0002.test"]
        assert not (maildir / JOURNAL_FILE_NAME).exists()
    finally:
        maildrop.release()


def test_an_unfinished_journal_write_removes_nothing(tmp_path: Path) -> None:
    maildir = write_maildir(tmp_path, "alice", [b"a\n", b"b\n"])
    (maildir / (JOURNAL_FILE_NAME + ".tmp")).write_text("new/0001.test\n")
    maildrop = MaildirStore(str(tmp_path / "{user}")).open("alice")
    try:
        assert len(maildrop.messages) == 2
        assert not (maildir / (JOURNAL_FILE_NAME + ".tmp")).exists()
    finally:
        maildrop.release()


def test_a_journal_cannot_name_files_outside_the_maildrop(tmp_path: Path) -> None:
    maildir = write_maildir(tmp_path, "alice", [b"a\n"])
    outside = tmp_path / "precious"
    outside.write_text("keep")
    (maildir / JOURNAL_FILE_NAME).write_text("../precious\nnew/../../precious\n")
    MaildirStore(str(tmp_path / "{user}")).open("alice").release()
    assert outside.exists() and maildir_names(maildir) == ["0001.test"]


def test_commit_leaves_no_journal_and_removes_exactly_the_marked(tmp_path: Path) -> None:
    maildir = write_maildir(tmp_path, "alice", [b"a\n", b"b\n", b"c\n"])
    maildrop = MaildirStore(str(tmp_path / "{user}")).open("alice")
    maildrop.commit([maildrop.messages[0], maildrop.messages[2]])
    maildrop.release()
    assert maildir_names(maildir) == ["0002.test"]
    assert not (maildir / JOURNAL_FILE_NAME).exists()


def test_mbox_rewrite_leftovers_are_removed_at_open(tmp_path: Path) -> None:
    mbox = tmp_path / "alice"
    mbox.write_bytes(b"From a@b Sat Jan  1 00:00:00 2000\nSubject: x\n\nhi\n")
    stale = tmp_path / ".alice.4242.rewrite"
    stale.write_bytes(b"half-written")
    maildrop = MboxStore(str(tmp_path / "{user}")).open("alice")
    maildrop.release()
    assert not stale.exists() and len(maildrop.messages) == 1


# --- abuse limits -------------------------------------------------------------


def test_the_bad_command_limit_closes_with_one_err_and_no_update(
    maildir_root: Path, store: MaildirStore, users: UserDirectory
) -> None:
    session = Pop3Session(store, users, SessionConfig(hostname="t", bad_command_limit=3))
    session.greeting()
    session.receive_data(f"USER alice\r\nPASS {PASSWORD}\r\nDELE 1\r\n".encode())
    assert session.receive_data(b"BOGUS\r\n").startswith(b"-ERR")
    assert session.receive_data(b"NOOP\r\n") == b"+OK\r\n"  # a success resets the count
    assert session.receive_data(b"BOGUS\r\nRETR 99\r\n").count(b"-ERR") == 2
    assert not session.closed
    final = session.receive_data(b"X" * 300 + b"\r\nNOOP\r\n")
    assert final.startswith(b"-ERR") and b"too many bad commands" in final
    assert final.count(b"\r\n") == 1  # one -ERR, nothing after it
    assert session.closed
    assert len(maildir_names(maildir_root / "alice")) == 3  # DELE 1 was not applied


def test_a_zero_bad_command_limit_never_closes(store: MaildirStore, users: UserDirectory) -> None:
    session = Pop3Session(store, users, SessionConfig(hostname="t", bad_command_limit=0))
    session.greeting()
    assert session.receive_data(b"BOGUS\r\n" * 100).count(b"-ERR") == 100
    assert not session.closed


def test_a_failed_login_reply_carries_the_delay_and_a_good_one_does_not(
    store: MaildirStore, users: UserDirectory
) -> None:
    session = Pop3Session(store, users, SessionConfig(hostname="t", failed_login_delay_seconds=2))
    session.greeting()
    session.feed(b"USER alice\r\nPASS wrong\r\nUSER alice\r\n")
    replies = list(session.replies())
    assert [isinstance(reply, DelayedReply) for reply in replies] == [False, True, False]
    assert replies[1].delay_seconds == 2 and replies[1].startswith(b"-ERR [AUTH]")
    session.feed(f"PASS {PASSWORD}\r\n".encode())
    assert not isinstance(next(session.replies()), DelayedReply)
    session.connection_lost()


def test_the_server_waits_out_the_failed_login_delay(
    store: MaildirStore, users: UserDirectory
) -> None:
    with start_server(store=store, users=users, failed_login_delay_seconds=0.6) as handle:
        client = LineClient(handle.host, handle.port)
        client.command("USER alice")
        started = time.monotonic()
        assert client.command("PASS wrong").startswith(b"-ERR [AUTH]")
        assert time.monotonic() - started >= 0.6
        client.command("USER alice")
        started = time.monotonic()
        assert client.command(f"PASS {PASSWORD}").startswith(b"+OK")
        assert time.monotonic() - started < 0.5
        client.close()


def test_the_per_address_cap_refuses_one_connection_too_many(
    store: MaildirStore, users: UserDirectory
) -> None:
    with start_server(store=store, users=users, max_connections_per_address=2) as handle:
        first = LineClient(handle.host, handle.port)
        second = LineClient(handle.host, handle.port)
        third = LineClient(handle.host, handle.port)
        assert first.greeting.startswith(b"+OK") and second.greeting.startswith(b"+OK")
        assert third.greeting == b"-ERR [SYS/TEMP] too many connections from your address\r\n"
        assert third.readline() == b""  # and closed
        first.command("QUIT")
        first.close()
        deadline = time.monotonic() + 5
        while True:
            fourth = LineClient(handle.host, handle.port)
            if fourth.greeting.startswith(b"+OK") or time.monotonic() > deadline:
                break
            fourth.close()
            time.sleep(0.05)
        assert fourth.greeting.startswith(b"+OK")
        for client in (second, third, fourth):
            client.close()


def test_the_login_timer_is_separate_from_the_autologout_timer(
    store: MaildirStore, users: UserDirectory
) -> None:
    with start_server(
        store=store, users=users, login_timeout_seconds=0.5, autologout_seconds=600
    ) as handle:
        idle = LineClient(handle.host, handle.port)
        logged_in = LineClient(handle.host, handle.port)
        logged_in.command("USER alice")
        assert logged_in.command(f"PASS {PASSWORD}").startswith(b"+OK")
        time.sleep(1.2)
        assert idle.readline() == b""  # closed before login
        assert logged_in.command("NOOP") == b"+OK\r\n"  # still there after login
        idle.close()
        logged_in.close()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--bad-command-limit", "-1", "--bad-command-limit must be 0"),
        ("--failed-login-delay", "-2", "--failed-login-delay must be 0"),
        ("--max-connections-per-address", "-5", "--max-connections-per-address must be 0"),
        ("--login-timeout", "0", "--login-timeout must be a positive"),
        ("--storage-threads", "-1", "--storage-threads must be 0"),
    ],
)
def test_bad_abuse_limit_flags_are_one_line_errors(
    flag: str,
    value: str,
    message: str,
    store: MaildirStore,
    users_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = cli.main(["--store", store.spec, "--users", str(users_file), flag, value])
    assert status == cli.EXIT_CONFIGURATION_ERROR
    error = capsys.readouterr().err.strip()
    assert error.startswith("reference_server: error: " + message) and "\n" not in error


def test_the_abuse_limit_flags_reach_the_running_server(
    store: MaildirStore, users_file: Path
) -> None:
    process = ServerProcess(
        "--listen",
        "127.0.0.1:0",
        "--store",
        store.spec,
        "--users",
        str(users_file),
        "--bad-command-limit",
        "2",
        "--max-connections-per-address",
        "1",
    )
    try:
        client = LineClient(process.host, process.port)
        refused = LineClient(process.host, process.port)
        assert refused.greeting.startswith(b"-ERR [SYS/TEMP]")
        assert client.command("BOGUS").startswith(b"-ERR")
        assert b"too many bad commands" in client.command("BOGUS")
        assert client.readline() == b""
        client.close()
        refused.close()
    finally:
        process.kill()


# --- the soak and the fuzzer, bounded -----------------------------------------


def run_script(*arguments: str, timeout: float) -> str:
    import subprocess

    completed = subprocess.run(
        [sys.executable, *arguments],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)},
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    return completed.stdout + completed.stderr


def test_thirty_kill_9s_lose_nothing_and_apply_every_committed_deletion() -> None:
    output = run_script("benchmarks/soak_kill9.py", "--kills", "30", "--users", "3", timeout=240)
    assert "kills=30 " in output
    assert "lost=0 duplicated=0 corrupted=0 unapplied_committed_deletions=0 " in output
    assert "half_applied_updates=0 retr_mismatches=0" in output


def test_a_short_fuzz_run_of_the_cores_finds_no_crash() -> None:
    output = run_script("benchmarks/fuzz_core.py", "--runs", "3000", "--seed", "1", timeout=240)
    assert "Done 3000 runs" in output or "runs=3000 crashes=0" in output


def test_loopback_only_in_the_soak_script() -> None:
    text = (REPOSITORY_ROOT / "benchmarks" / "soak_kill9.py").read_text()
    assert "127.0.0.1" in text and "0.0.0.0" not in text
    assert socket.AF_INET  # the soak uses IPv4 loopback
