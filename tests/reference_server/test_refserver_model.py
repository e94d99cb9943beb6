"""Stateful model test: random POP3 dialogues against a model of the maildrop.

Hypothesis drives :class:`Pop3Session` over a real Maildir with commands in
every state (USER/PASS/STAT/LIST/UIDL/RETR/TOP/DELE/RSET/NOOP/QUIT, good
and bad message numbers, reconnects).  The model, written independently of
the server's code, says what every reply must be (status, and the exact
multi-line content), when the bad-command limit closes the session, and
what the Maildir holds after each UPDATE (RFC 1939 sections 3-7).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from reference_server.pop3.protocol import Pop3Session, Reply, SessionConfig, UserDirectory
from reference_server.store.maildrop import MaildirStore

BAD_COMMAND_LIMIT = 6
LINE = st.text(alphabet="ab .>From", max_size=12)
MESSAGE = st.tuples(
    st.lists(LINE.filter(lambda line: line.strip() != ""), min_size=0, max_size=3),  # header
    st.booleans(),  # with a blank line after the header
    st.lists(LINE, min_size=0, max_size=4),  # body
    st.sampled_from(["\n", "\r\n"]),  # stored line end
    st.booleans(),  # last line ends with a line end
)
NUMBERS = st.one_of(st.integers(min_value=0, max_value=8), st.sampled_from([4294967297, 10**30]))


def wire_lines(message: tuple[list[str], bool, list[str], str, bool]) -> list[str]:
    header, blank, body, _, _ = message
    return [*header, *([""] if blank else []), *body]


def stored_bytes(message: tuple[list[str], bool, list[str], str, bool]) -> bytes:
    lines = wire_lines(message)
    _, _, _, end, final = message
    text = end.join(lines) + (end if final and lines else "")
    return text.encode()


def wire(lines: list[str]) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


def model_wire(message: tuple[list[str], bool, list[str], str, bool]) -> bytes:
    lines = wire_lines(message)
    final = message[4]
    if not lines:
        return b""
    if not final and lines[-1] == "":
        lines = lines[:-1]  # "a\n" + "" unterminated: the stored text is just "a\n"
    return wire(lines)


def model_top(content: bytes, body_lines: int) -> bytes:
    lines = content.decode().split("\r\n")[:-1]
    if "" not in lines:
        return content
    header_end = lines.index("") + 1
    return wire(lines[: header_end + body_lines])


def stuffed(content: bytes) -> bytes:
    lines = content.decode().split("\r\n")[:-1]
    return wire(["." + line if line.startswith(".") else line for line in lines])


class MaildropMachine(RuleBasedStateMachine):
    @initialize(messages=st.lists(MESSAGE, min_size=1, max_size=5))
    def make_maildrop(self, messages: list[tuple[list[str], bool, list[str], str, bool]]) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mailspec-model-"))
        self.store = MaildirStore(f"{self.root}/{{user}}")
        maildir = self.root / "alice"
        for subdirectory in ("cur", "new", "tmp"):
            (maildir / subdirectory).mkdir(parents=True)
        #: The model's maildrop: (uid, wire form) in maildrop order.
        self.stored: list[tuple[str, bytes]] = []
        for n, message in enumerate(messages):
            name = f"{n:03d}.model"
            (maildir / "new" / name).write_bytes(stored_bytes(message))
            self.stored.append((name, model_wire(message)))
        self.users = UserDirectory({"alice": "pw"})
        self.config = SessionConfig(bad_command_limit=BAD_COMMAND_LIMIT, hostname="model")
        self.connect()

    session_class: type[Pop3Session] = Pop3Session

    def connect(self) -> None:
        self.session = self.session_class(self.store, self.users, self.config)
        assert self.session.greeting().startswith(b"+OK")
        self.state = "AUTHORIZATION"
        self.deleted: set[int] = set()
        self.bad = 0

    def teardown(self) -> None:
        if hasattr(self, "session"):
            self.session.connection_lost()
        if hasattr(self, "root"):
            shutil.rmtree(self.root, ignore_errors=True)

    # --- the driver --------------------------------------------------------

    def send(self, line: str) -> bytes:
        return self.session.receive_data(line.encode() + b"\r\n")

    def expect(self, line: str, ok: bool, body: bytes | None = None) -> bytes:
        reply = self.send(line)
        if ok:
            self.bad = 0
            assert reply.startswith(b"+OK"), (line, reply)
            if body is not None:
                status_end = reply.index(b"\r\n") + 2
                assert reply[status_end:] == stuffed(body) + b".\r\n", (line, reply)
            else:
                assert reply.count(b"\r\n") == 1, (line, reply)
        else:
            self.bad += 1
            assert reply.startswith(b"-ERR") and reply.count(b"\r\n") == 1, (line, reply)
            if self.bad >= BAD_COMMAND_LIMIT:
                # The limit closes the session without UPDATE.
                assert b"too many bad commands" in reply
                self.closed_without_update()
                return reply
            if self.state == "USER_ACCEPTED":
                self.state = "AUTHORIZATION"  # a refusal ends the USER/PASS pair
        return reply

    def closed_without_update(self) -> None:
        assert self.session.closed
        self.state = "CLOSED"

    def live(self) -> list[int]:
        return [n for n in range(1, len(self.stored) + 1) if n not in self.deleted]

    def valid(self, number: int) -> bool:
        return self.state == "TRANSACTION" and number in self.live()

    def content(self, number: int) -> bytes:
        return self.stored[number - 1][1]

    # --- rules --------------------------------------------------------------

    @precondition(lambda self: self.state == "CLOSED")
    @rule()
    def reconnect(self) -> None:
        self.connect()

    @precondition(lambda self: self.state == "AUTHORIZATION")
    @rule()
    def login(self) -> None:
        """USER and PASS in a row, so TRANSACTION is reached often."""
        self.user("alice")
        if self.state == "USER_ACCEPTED":
            self.password("pw")

    @precondition(lambda self: self.state != "CLOSED")
    @rule(name=st.sampled_from(["alice", "mallory"]))
    def user(self, name: str) -> None:
        accepted = self.state == "AUTHORIZATION"
        self.expect(f"USER {name}", accepted)
        if accepted:
            self.state = "USER_ACCEPTED"
            self.user_name = name

    @precondition(lambda self: self.state != "CLOSED")
    @rule(password=st.sampled_from(["pw", "wrong"]))
    def password(self, password: str) -> None:
        accepted = self.state == "USER_ACCEPTED" and self.user_name == "alice" and password == "pw"
        was_user_accepted = self.state == "USER_ACCEPTED"
        self.expect(f"PASS {password}", accepted)
        if accepted:
            self.state = "TRANSACTION"
            self.deleted = set()
        elif was_user_accepted and self.state != "CLOSED":
            self.state = "AUTHORIZATION"

    @precondition(lambda self: self.state != "CLOSED")
    @rule()
    def stat(self) -> None:
        reply = self.expect("STAT", self.state == "TRANSACTION")
        if self.state == "TRANSACTION":
            size = sum(len(self.content(n)) for n in self.live())
            assert reply == f"+OK {len(self.live())} {size}\r\n".encode()

    @precondition(lambda self: self.state != "CLOSED")
    @rule(number=st.none() | NUMBERS)
    def list_(self, number: int | None) -> None:
        if number is None:
            listing = b"".join(b"%d %d\r\n" % (n, len(self.content(n))) for n in self.live())
            self.expect("LIST", self.state == "TRANSACTION", listing)
        else:
            reply = self.expect(f"LIST {number}", self.valid(number))
            if reply.startswith(b"+OK"):
                assert reply == b"+OK %d %d\r\n" % (number, len(self.content(number)))

    @precondition(lambda self: self.state != "CLOSED")
    @rule(number=st.none() | NUMBERS)
    def uidl(self, number: int | None) -> None:
        if number is None:
            listing = "".join(f"{n} {self.stored[n - 1][0]}\r\n" for n in self.live()).encode()
            self.expect("UIDL", self.state == "TRANSACTION", listing)
        else:
            reply = self.expect(f"UIDL {number}", self.valid(number))
            if reply.startswith(b"+OK"):
                assert reply == f"+OK {number} {self.stored[number - 1][0]}\r\n".encode()

    @precondition(lambda self: self.state != "CLOSED")
    @rule(number=NUMBERS)
    def retr(self, number: int) -> None:
        valid = self.valid(number)
        self.expect(f"RETR {number}", valid, self.content(number) if valid else None)

    @precondition(lambda self: self.state != "CLOSED")
    @rule(number=NUMBERS, lines=st.integers(min_value=0, max_value=5))
    def top(self, number: int, lines: int) -> None:
        valid = self.valid(number)
        body = model_top(self.content(number), lines) if valid else None
        self.expect(f"TOP {number} {lines}", valid, body)

    @precondition(lambda self: self.state != "CLOSED")
    @rule(number=NUMBERS)
    def dele(self, number: int) -> None:
        valid = self.valid(number)
        self.expect(f"DELE {number}", valid)
        if valid:
            self.deleted.add(number)

    @precondition(lambda self: self.state != "CLOSED")
    @rule()
    def rset(self) -> None:
        self.expect("RSET", self.state == "TRANSACTION")
        if self.state == "TRANSACTION":
            self.deleted = set()

    @precondition(lambda self: self.state != "CLOSED")
    @rule()
    def noop(self) -> None:
        self.expect("NOOP", self.state == "TRANSACTION")

    @precondition(lambda self: self.state != "CLOSED")
    @rule()
    def quit(self) -> None:
        update = self.state == "TRANSACTION"
        self.expect("QUIT", True)
        assert self.session.closed
        if update:
            # UPDATE: exactly the marked messages are gone, the rest untouched.
            self.stored = [m for n, m in enumerate(self.stored, start=1) if n not in self.deleted]
        self.state = "CLOSED"
        self.bad = 0

    @precondition(lambda self: self.state == "CLOSED")
    @invariant()
    def store_matches_model(self) -> None:
        maildir = self.root / "alice"
        on_disk = sorted(
            (path.name, path) for sub in ("cur", "new") for path in (maildir / sub).iterdir()
        )
        assert [name for name, _ in on_disk] == [uid for uid, _ in self.stored]
        maildrop = self.store.open("alice")
        try:
            assert [(m.uid, m.content) for m in maildrop.messages] == self.stored
        finally:
            maildrop.release()


MaildropMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPop3SessionAgainstMaildropModel = MaildropMachine.TestCase


class RsetKeepsMarks(Pop3Session):
    def cmd_rset(self, args: list[str]) -> Reply:
        marks = set(self.deleted)
        reply = super().cmd_rset(args)
        self.deleted = marks
        return reply


class DeleZeroDeletesLast(Pop3Session):
    def cmd_dele(self, args: list[str]) -> Reply:
        if args == ["0"] and self.messages:
            args = [str(len(self.messages))]
        return super().cmd_dele(args)


@pytest.mark.parametrize("faulty", [RsetKeepsMarks, DeleZeroDeletesLast])
def test_the_model_catches_a_faulty_session(faulty: type[Pop3Session]) -> None:
    machine = type("FaultyMachine", (MaildropMachine,), {"session_class": faulty})
    with pytest.raises(AssertionError):
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=300,
                # the same examples every run: a random search that can miss the
                # fault would make this test flaky (seen once under load)
                derandomize=True,
                phases=[Phase.generate],  # finding it is the point; no shrinking
                stateful_step_count=40,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
            ),
        )
