"""Unit tests of the sans-I/O core: every command, in every state, every argument error."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from pop3_testlib import APOP_USER, PASSWORD, Conversation, maildir_names

from reference_server.pop3.protocol import (
    MAX_COMMAND_LINE_OCTETS,
    Pop3Session,
    Reply,
    SessionConfig,
    State,
    UserDirectory,
    top_of_message,
)
from reference_server.store.maildrop import MaildropLock, MboxStore

Converse = Callable[..., Conversation]

TRANSACTION_ONLY = ["STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 0", "UIDL", "LAST"]


def body_lines(reply: bytes) -> list[bytes]:
    """Lines of a multi-line reply between the status line and the terminator."""
    assert reply.endswith(b"\r\n.\r\n") or reply.count(b"\r\n") == 2, reply
    lines = reply.split(b"\r\n")
    assert lines[-2:] == [b".", b""]
    return lines[1:-2]


def unstuff(reply: bytes) -> bytes:
    """The content of a multi-line reply, dot-unstuffed, CRLFs kept."""
    content = reply.split(b"\r\n", 1)[1]
    assert content.endswith(b".\r\n")
    content = content[: -len(b".\r\n")]
    return re.sub(rb"(?m)^\.", b"", content)


# --- Greeting, syntax -------------------------------------------------------------


def test_greeting_is_one_positive_line_without_timestamp_when_apop_is_off(
    converse: Converse,
) -> None:
    greeting = converse().greeting
    assert greeting.startswith(b"+OK") and greeting.endswith(b"\r\n")
    assert greeting.count(b"\r\n") == 1 and b"<" not in greeting


def test_apop_greeting_timestamp_is_a_msg_id_unique_per_session(converse: Converse) -> None:
    config = SessionConfig(enable_apop=True, hostname="mail.test")
    stamps = {
        re.search(rb"<\d+\.[0-9a-f]+@mail\.test>", converse(config).greeting).group(0)
        for _ in range(20)
    }
    assert len(stamps) == 20


@pytest.mark.parametrize("keyword", ["stat", "Stat", "sTaT", "STAT"])
def test_keywords_are_case_insensitive(converse: Converse, keyword: str) -> None:
    talk = converse()
    talk.login()
    assert talk.status(keyword).startswith("+OK 3 ")


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"XYZZY",
        b"AB",
        b"STATUS",
        b"ST\x00AT",
        b"STAT\x00",
        b"NO\x07OP",
        b"\xff\xfe",
        b"ST\xc3\xa9T",
        b"1234",
        b" STAT",
    ],
)
@pytest.mark.parametrize("logged_in", [False, True])
def test_unknown_or_malformed_commands_are_refused(
    converse: Converse, line: bytes, logged_in: bool
) -> None:
    talk = converse()
    if logged_in:
        talk.login()
    reply = talk.send(line)
    assert reply.startswith(b"-ERR") and reply.count(b"\r\n") == 1
    # The session stays usable afterwards (RFC 1939 section 3).
    assert talk.status("CAPA").startswith("+OK")


def test_nul_byte_never_leads_to_a_different_command(converse: Converse) -> None:
    talk = converse()
    talk.login()
    assert talk.status(b"DELE 1\x00").startswith("-ERR")
    assert talk.status(b"\x00DELE 1").startswith("-ERR")
    assert talk.session.deleted == set()


# --- State rules ------------------------------------------------------------------


@pytest.mark.parametrize("command", TRANSACTION_ONLY)
def test_transaction_commands_are_refused_in_authorization(
    converse: Converse, command: str
) -> None:
    talk = converse()
    assert talk.status(command).startswith("-ERR")
    assert talk.session.state is State.AUTHORIZATION


@pytest.mark.parametrize("command", [*TRANSACTION_ONLY, "APOP alice " + "0" * 32, "USER bob"])
def test_only_pass_capa_quit_follow_a_successful_user(converse: Converse, command: str) -> None:
    talk = converse()
    talk.status("USER alice")
    assert talk.status(command).startswith("-ERR")
    assert talk.status(f"PASS {PASSWORD}").startswith("-ERR"), "PASS no longer follows USER"


def test_capa_between_user_and_pass_is_answered_but_ends_the_user_pass_pair(
    converse: Converse,
) -> None:
    talk = converse()
    talk.status("USER alice")
    talk.send("CAPA")
    assert talk.status(f"PASS {PASSWORD}").startswith("-ERR")
    assert talk.session.state is State.AUTHORIZATION
    talk.status("USER alice")
    assert talk.status(f"PASS {PASSWORD}").startswith("+OK")


def test_last_starts_from_messages_retrieved_in_an_earlier_committed_session(
    converse: Converse,
) -> None:
    first = converse()
    first.login()
    first.send("RETR 2")
    assert first.status("LAST") == "+OK 2"
    first.status("QUIT")
    second = converse()
    second.login()
    assert second.status("LAST") == "+OK 2"
    second.send("RETR 1")
    assert second.status("LAST") == "+OK 2", "a lower RETR never lowers LAST"
    second.status("RSET")
    assert second.status("LAST") == "+OK 2", "RSET returns to the value at login"


def test_last_ignores_retrievals_of_a_session_that_ended_without_quit(
    converse: Converse,
) -> None:
    first = converse()
    first.login()
    first.send("RETR 2")
    first.session.connection_lost()
    second = converse()
    second.login()
    assert second.status("LAST") == "+OK 0"


@pytest.mark.parametrize(
    "command", ["USER alice", "USER bob", f"PASS {PASSWORD}", "PASS bobpw", "APOP bob " + "0" * 32]
)
def test_authorization_commands_are_refused_in_transaction(
    converse: Converse, command: str
) -> None:
    talk = converse()
    talk.login()
    assert talk.status(command).startswith("-ERR")
    assert talk.session.state is State.TRANSACTION
    assert talk.session.user_name == "alice"
    assert talk.status("STAT").startswith("+OK 3 ")


def test_pass_without_user_is_refused(converse: Converse) -> None:
    talk = converse()
    assert talk.status(f"PASS {PASSWORD}").startswith("-ERR")


def test_pass_after_refused_user_is_refused(converse: Converse) -> None:
    talk = converse()
    assert talk.status("USER").startswith("-ERR")
    assert talk.status(f"PASS {PASSWORD}").startswith("-ERR")


def test_unknown_user_gets_ok_then_auth_error_at_pass(converse: Converse) -> None:
    talk = converse()
    assert talk.status("USER nobody").startswith("+OK")
    assert talk.status("PASS whatever").startswith("-ERR [AUTH]")
    assert talk.session.state is State.AUTHORIZATION


def test_wrong_password_then_retry_succeeds(converse: Converse) -> None:
    talk = converse()
    talk.status("USER alice")
    assert talk.status("PASS wrong").startswith("-ERR [AUTH]")
    assert talk.session.state is State.AUTHORIZATION
    talk.login()
    assert talk.session.state is State.TRANSACTION


@pytest.mark.parametrize("line", ["USER", "USER a b", "PASS", "USER alice\r\nPASS"])
def test_user_and_pass_argument_errors(converse: Converse, line: str) -> None:
    talk = converse()
    assert talk.send(line).split(b"\r\n")[-2].startswith(b"-ERR")


def test_password_may_contain_spaces(converse: Converse) -> None:
    talk = converse()
    talk.status("USER alice")
    assert " " in PASSWORD
    assert talk.status(f"PASS {PASSWORD}").startswith("+OK")


def test_quit_in_authorization_closes_without_update(converse: Converse) -> None:
    talk = converse()
    assert talk.status("QUIT").startswith("+OK")
    assert talk.session.closed


# --- APOP -------------------------------------------------------------------------


def apop_digest(greeting: bytes, secret: str) -> str:
    stamp = re.search(rb"<[^>]+>", greeting).group(0)
    return hashlib.md5(stamp + secret.encode()).hexdigest()


def test_apop_accepts_the_right_digest(converse: Converse) -> None:
    talk = converse(SessionConfig(enable_apop=True, hostname="h"))
    reply = talk.status(f"APOP {APOP_USER} {apop_digest(talk.greeting, PASSWORD)}")
    assert reply.startswith("+OK") and talk.session.state is State.TRANSACTION


def test_a_user_logs_in_by_one_method_only(converse: Converse) -> None:
    pass_user = converse(SessionConfig(enable_apop=True, hostname="h"))
    digest = apop_digest(pass_user.greeting, PASSWORD)
    assert pass_user.status(f"APOP alice {digest}").startswith("-ERR [AUTH]")
    apop_user = converse(SessionConfig(enable_apop=True, hostname="h"))
    apop_user.status(f"USER {APOP_USER}")
    assert apop_user.status(f"PASS {PASSWORD}").startswith("-ERR [AUTH]")


def test_apop_digest_of_another_greeting_is_refused(converse: Converse) -> None:
    first = converse(SessionConfig(enable_apop=True, hostname="h"))
    second = converse(SessionConfig(enable_apop=True, hostname="h"))
    replayed = apop_digest(first.greeting, PASSWORD)
    assert second.status(f"APOP {APOP_USER} {replayed}").startswith("-ERR [AUTH]")


@pytest.mark.parametrize(
    "arguments", ["", "alice", "alice abc", "alice " + "g" * 32, "alice " + "0" * 33, "a b c"]
)
def test_apop_syntax_errors(converse: Converse, arguments: str) -> None:
    talk = converse(SessionConfig(enable_apop=True, hostname="h"))
    assert talk.status(f"APOP {arguments}".strip()).startswith("-ERR")
    assert talk.session.state is State.AUTHORIZATION


def test_apop_is_refused_when_disabled(converse: Converse) -> None:
    talk = converse()
    digest = hashlib.md5(PASSWORD.encode()).hexdigest()
    assert talk.status(f"APOP alice {digest}").startswith("-ERR")


# --- STAT / LIST / UIDL -----------------------------------------------------------


def test_stat_is_count_and_total_wire_octets(converse: Converse) -> None:
    talk = converse()
    talk.login()
    sizes = [len(unstuff(talk.send(f"RETR {n}"))) for n in (1, 2, 3)]
    assert talk.send("STAT") == f"+OK 3 {sum(sizes)}\r\n".encode()


def test_list_scan_listings_match_retr_octets(converse: Converse) -> None:
    talk = converse()
    talk.login()
    listing = body_lines(talk.send("LIST"))
    for number, line in enumerate(listing, start=1):
        retrieved = talk.send(f"RETR {number}")
        assert line == b"%d %d" % (number, len(unstuff(retrieved)))
        assert retrieved.startswith(b"+OK %d octets\r\n" % len(unstuff(retrieved)))
        assert talk.send(f"LIST {number}") == b"+OK " + line + b"\r\n"


@pytest.mark.parametrize("command", ["LIST", "UIDL", "RETR", "DELE", "TOP"])
@pytest.mark.parametrize(
    "argument",
    [
        "0",
        "-1",
        "4",
        "99999999999999999999",
        "4294967297",
        "18446744073709551617",
        "1x",
        "x",
        "+1",
        "1.0",
        "１",
    ],
)
def test_bad_message_numbers_are_refused(converse: Converse, command: str, argument: str) -> None:
    talk = converse()
    talk.login()
    suffix = " 0" if command == "TOP" else ""
    assert talk.status(f"{command} {argument}{suffix}").startswith("-ERR")
    assert talk.session.deleted == set()


def test_leading_zeros_are_a_plain_number(converse: Converse) -> None:
    talk = converse()
    talk.login()
    assert talk.status("LIST 01").startswith("+OK 1 ")


@pytest.mark.parametrize(
    "line",
    [
        "LIST 1 2",
        "UIDL 1 2",
        "RETR",
        "RETR 1 2",
        "DELE",
        "DELE 1 1",
        "TOP 1",
        "TOP",
        "TOP 1 2 3",
        "TOP 1 -1",
        "TOP 1 x",
        "STAT 1",
        "NOOP x",
        "RSET 1",
        "LAST 1",
        "QUIT now",
        "CAPA x",
        "LIST ",
        "STAT ",
    ],
)
def test_argument_count_errors(converse: Converse, line: str) -> None:
    talk = converse()
    talk.login()
    assert talk.status(line).startswith("-ERR")
    assert talk.session.state is State.TRANSACTION


def test_uidl_listing_shape_and_single(converse: Converse) -> None:
    talk = converse()
    talk.login()
    listing = body_lines(talk.send("UIDL"))
    assert [line.split(b" ")[0] for line in listing] == [b"1", b"2", b"3"]
    uids = [line.split(b" ")[1] for line in listing]
    assert len(set(uids)) == 3
    for uid in uids:
        assert re.fullmatch(rb"[\x21-\x7e]{1,70}", uid)
    assert talk.send("UIDL 2") == b"+OK 2 " + uids[1] + b"\r\n"


def test_empty_maildrop_lists_nothing(converse: Converse, maildir_root: Path) -> None:
    for path in (maildir_root / "bob" / "new").iterdir():
        path.unlink()
    talk = converse()
    talk.login("bob", "bobpw")
    assert talk.send("STAT") == b"+OK 0 0\r\n"
    assert body_lines(talk.send("LIST")) == []
    assert body_lines(talk.send("UIDL")) == []
    assert talk.status("LIST 1").startswith("-ERR")


# --- RETR / TOP -------------------------------------------------------------------


def test_retr_byte_stuffs_and_converts_lf_to_crlf(converse: Converse) -> None:
    talk = converse()
    talk.login()
    reply = talk.send("RETR 2")
    assert reply.split(b"\r\n", 1)[1] == (
        b"Subject: two\r\n\r\n..leading dot\r\n..\r\nlast line\r\n.\r\n"
    )


def test_retr_appends_crlf_to_a_message_without_final_newline(converse: Converse) -> None:
    talk = converse()
    talk.login()
    reply = talk.send("RETR 3")
    assert reply.endswith(b"no final newline\r\n.\r\n")
    assert not reply.endswith(b"\r\n\r\n.\r\n")


def test_retr_does_not_mark_and_repeats_identically(converse: Converse) -> None:
    talk = converse()
    talk.login()
    assert talk.send("RETR 1") == talk.send("RETR 1")
    assert talk.session.deleted == set()


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (0, b"Subject: three\r\n\r\n"),
        (1, b"Subject: three\r\n\r\nline1\r\n"),
        (3, b"Subject: three\r\n\r\nline1\r\nline2\r\nno final newline\r\n"),
        (10**30, b"Subject: three\r\n\r\nline1\r\nline2\r\nno final newline\r\n"),
    ],
)
def test_top_returns_header_blank_line_and_n_body_lines(
    converse: Converse, lines: int, expected: bytes
) -> None:
    talk = converse()
    talk.login()
    assert unstuff(talk.send(f"TOP 3 {lines}")) == expected


def test_top_is_byte_stuffed(converse: Converse) -> None:
    talk = converse()
    talk.login()
    assert talk.send("TOP 2 2").split(b"\r\n", 1)[1] == (
        b"Subject: two\r\n\r\n..leading dot\r\n..\r\n.\r\n"
    )


def test_top_of_message_without_body_separator_is_whole_message() -> None:
    assert top_of_message(b"Subject: x\r\nFrom: y\r\n", 0) == b"Subject: x\r\nFrom: y\r\n"
    assert top_of_message(b"\r\nbody\r\n", 0) == b"\r\n"


# --- DELE / RSET / NOOP / LAST ----------------------------------------------------


def test_deleted_message_is_refused_everywhere(converse: Converse) -> None:
    talk = converse()
    talk.login()
    before = talk.send("STAT")
    assert talk.status("DELE 2").startswith("+OK")
    for command in ["LIST 2", "RETR 2", "TOP 2 0", "UIDL 2", "DELE 2"]:
        assert talk.status(command).startswith("-ERR"), command
    assert [line.split()[0] for line in body_lines(talk.send("LIST"))] == [b"1", b"3"]
    assert [line.split()[0] for line in body_lines(talk.send("UIDL"))] == [b"1", b"3"]
    count, size = before.split()[1:3]
    stat_after = talk.send("STAT").split()
    assert int(stat_after[1]) == int(count) - 1
    assert int(stat_after[2]) < int(size)
    assert talk.status("RSET").startswith("+OK")
    assert talk.send("STAT") == before


def test_dele_does_not_touch_the_maildrop_before_quit(
    converse: Converse, maildir_root: Path
) -> None:
    talk = converse()
    talk.login()
    talk.send("DELE 1")
    assert len(maildir_names(maildir_root / "alice")) == 3
    assert talk.status("QUIT").startswith("+OK")
    assert maildir_names(maildir_root / "alice") == ["0002.test", "0003.test"]


def test_rset_then_quit_removes_nothing(converse: Converse, maildir_root: Path) -> None:
    talk = converse()
    talk.login()
    talk.send("DELE 1")
    talk.send("RSET")
    talk.send("QUIT")
    assert len(maildir_names(maildir_root / "alice")) == 3


def test_noop_replies_ok(converse: Converse) -> None:
    talk = converse()
    talk.login()
    assert talk.send("NOOP").startswith(b"+OK")
    assert talk.send("noop").endswith(b"\r\n")


def test_last_follows_rfc1225(converse: Converse) -> None:
    talk = converse()
    talk.login()
    assert talk.send("LAST") == b"+OK 0\r\n"
    talk.send("RETR 2")
    assert talk.send("LAST") == b"+OK 2\r\n"
    talk.send("TOP 3 0")
    assert talk.send("LAST") == b"+OK 2\r\n"
    talk.send("DELE 3")
    assert talk.send("LAST") == b"+OK 3\r\n"
    talk.send("RSET")
    assert talk.send("LAST") == b"+OK 0\r\n"


@pytest.mark.parametrize("logged_in", [False, True])
def test_last_switched_off_is_an_unknown_command(converse: Converse, logged_in: bool) -> None:
    talk = converse(SessionConfig(enable_last=False, hostname="h"))
    if logged_in:
        talk.login()
    assert talk.send("LAST") == talk.send("XLST")


# --- CAPA -------------------------------------------------------------------------


def test_capa_is_the_same_in_both_states(converse: Converse) -> None:
    talk = converse()
    before = body_lines(talk.send("CAPA"))
    talk.login()
    after = body_lines(talk.send("CAPA"))
    assert before == after
    for tag in [
        b"TOP",
        b"USER",
        b"UIDL",
        b"RESP-CODES",
        b"AUTH-RESP-CODE",
        b"PIPELINING",
        b"EXPIRE NEVER",
        b"LOGIN-DELAY 0",
    ]:
        assert tag in before
    assert any(line.startswith(b"IMPLEMENTATION ") for line in before)


# --- Response codes, locking, failures --------------------------------------------


def test_locked_maildrop_gets_in_use_only_for_right_credentials(
    converse: Converse, maildir_root: Path
) -> None:
    first = converse()
    first.login()
    second = converse()
    second.status("USER alice")
    assert second.status("PASS wrong").startswith("-ERR [AUTH]")
    second.status("USER alice")
    assert second.status(f"PASS {PASSWORD}").startswith("-ERR [IN-USE]")
    first.send("QUIT")
    second.login()


def test_corrupt_mbox_is_sys_perm_and_lock_is_released(
    tmp_path: Path, users: UserDirectory
) -> None:
    (tmp_path / "alice").write_bytes(b"this is not an mbox\n")
    store = MboxStore(str(tmp_path / "{user}"))
    talk = Conversation(Pop3Session(store, users))
    talk.status("USER alice")
    assert talk.status(f"PASS {PASSWORD}").startswith("-ERR [SYS/PERM]")
    lock = MaildropLock(tmp_path / "alice.mailspec-lock")  # would raise if still held
    lock.release()


def test_unreadable_maildrop_is_sys_temp(converse: Converse, maildir_root: Path) -> None:
    (maildir_root / "bob" / "cur").rmdir()
    (maildir_root / "bob" / "cur").write_text("a file where a directory belongs")
    talk = converse()
    talk.status("USER bob")
    assert talk.status("PASS bobpw").startswith("-ERR [SYS/TEMP]")


class ExplodingSession(Pop3Session):
    def cmd_noop(self, args: list[str]) -> Reply:
        raise KeyError("internal detail")


def test_handler_exception_is_a_plain_err_and_session_survives(converse: Converse) -> None:
    talk = converse(cls=ExplodingSession)
    talk.login()
    reply = talk.send("NOOP")
    assert reply.startswith(b"-ERR")
    assert b"KeyError" not in reply and b"internal detail" not in reply
    assert talk.status("STAT").startswith("+OK")


def test_autologout_and_connection_loss_delete_nothing(
    converse: Converse, maildir_root: Path
) -> None:
    for end in ("autologout", "connection_lost"):
        talk = converse()
        talk.login()
        talk.send("DELE 1")
        getattr(talk.session, end)()
        assert talk.session.closed
        assert len(maildir_names(maildir_root / "alice")) == 3
    converse().login()  # the lock was released


# --- Line handling ----------------------------------------------------------------


def test_longest_allowed_command_line_is_accepted(converse: Converse) -> None:
    talk = converse()
    name = "u" * (MAX_COMMAND_LINE_OCTETS - len("USER \r\n"))
    assert talk.status(f"USER {name}").startswith("+OK")


def test_one_octet_too_long_is_refused_whole(converse: Converse) -> None:
    talk = converse()
    name = "u" * (MAX_COMMAND_LINE_OCTETS - len("USER \r\n") + 1)
    assert talk.status(f"USER {name}").startswith("-ERR")
    assert talk.session.state is State.AUTHORIZATION


def test_huge_line_in_pieces_is_discarded_with_one_err(converse: Converse) -> None:
    talk = converse()
    talk.login()
    session = talk.session
    replies = b""
    for _ in range(100):
        replies += session.receive_data(b"DELE 1" * 1000)
        assert len(session._pending) <= MAX_COMMAND_LINE_OCTETS
    replies += session.receive_data(b"\r\nSTAT\r\n")
    lines = replies.split(b"\r\n")
    assert lines[0].startswith(b"-ERR") and lines[1].startswith(b"+OK 3 ") and lines[2] == b""
    assert session.deleted == set()


def test_bare_lf_terminates_a_command(converse: Converse) -> None:
    talk = converse()
    assert talk.session.receive_data(b"USER alice\n").startswith(b"+OK")
    assert talk.session.receive_data(f"PASS {PASSWORD}\n".encode()).startswith(b"+OK")


def test_nothing_happens_before_the_line_ends(converse: Converse) -> None:
    talk = converse()
    assert talk.session.receive_data(b"CAP") == b""
    assert talk.session.receive_data(b"A\r") == b""
    assert talk.session.receive_data(b"\n").startswith(b"+OK")


def test_pipelined_commands_answer_in_order_and_stop_after_quit(
    converse: Converse, maildir_root: Path
) -> None:
    talk = converse()
    batch = f"USER alice\r\nPASS {PASSWORD}\r\nSTAT\r\nDELE 1\r\nLIST 1\r\nQUIT\r\nNOOP\r\n"
    statuses = [line[:4] for line in talk.session.receive_data(batch.encode()).split(b"\r\n")[:-1]]
    assert statuses == [b"+OK ", b"+OK ", b"+OK ", b"+OK ", b"-ERR", b"+OK "]
    assert maildir_names(maildir_root / "alice") == ["0002.test", "0003.test"]


def test_byte_at_a_time_gives_the_same_replies(converse: Converse) -> None:
    batch = f"USER alice\r\nPASS {PASSWORD}\r\nLIST\r\nRETR 2\r\nUIDL\r\n".encode()
    first = converse().session
    whole = first.receive_data(batch)
    first.connection_lost()  # release the maildrop lock for the second session
    assert whole.count(b"+OK") == 5
    dribbled = converse().session
    pieces = b"".join(dribbled.receive_data(batch[i : i + 1]) for i in range(len(batch)))
    assert pieces == whole


def test_every_reply_line_ends_in_crlf(converse: Converse) -> None:
    talk = converse()
    talk.login()
    everything = b"".join(
        talk.send(c) for c in ["STAT", "LIST", "UIDL", "RETR 2", "TOP 3 1", "CAPA", "BOGUS"]
    )
    assert b"\n" not in everything.replace(b"\r\n", b"")


def test_replies_execute_pipelined_commands_one_at_a_time(converse: Converse) -> None:
    talk = converse()
    talk.login()
    talk.session.feed(b"RETR 1\r\nRETR 2\r\nRETR 3\r\n")
    replies = talk.session.replies()
    first = next(replies)
    assert first.startswith(b"+OK") and talk.session.highest_accessed == 1
    assert [reply[:3] for reply in replies] == [b"+OK", b"+OK"]
    assert talk.session.highest_accessed == 3
