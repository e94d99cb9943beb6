"""Faults planted in the reference server for `mailspec fuzz` to find: each
a `Pop3Session` subclass with one classic bug (security-catalogue §8), and
the oracle that must catch it. They live only here; the shipped server
stays correct. Servers start in-process as tests/corpus/harness.py does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from conformance.core.fixture import load_fixture
from reference_server.pop3.protocol import (
    CRLF,
    CommandError,
    LoginMethod,
    Pop3Session,
    SessionConfig,
    State,
    UserDirectory,
    ok,
    parse_decimal,
)
from reference_server.pop3.server import Pop3Server, ServerHandle, ServerSettings
from reference_server.store.maildrop import MaildirStore


class CrashOnLongLine(Pop3Session):
    """A fixed 1,000-octet line buffer: a longer line kills the session
    without a reply (the long USER/PASS overflow class, catalogue R01)."""

    BUFFER_OCTETS = 1000

    def feed(self, data: bytes) -> None:
        text = getattr(self, "_tail", b"") + data
        self._tail = text.rsplit(b"\n", 1)[-1][-(self.BUFFER_OCTETS + 1) :]
        if max(len(part) for part in text.split(b"\n")) > self.BUFFER_OCTETS:
            self._close_without_update()
            return
        super().feed(data)


class HangOnNul(Pop3Session):
    """A C string parser that stops at NUL and then waits for a line end
    that already went by: a command with a NUL is never answered (R06)."""

    def handle_line(self, line: bytes) -> bytes:
        if b"\x00" in line:
            return b""
        return super().handle_line(line)


class WrapsAt32Bits(Pop3Session):
    """Message numbers kept in 32 bits: `RETR 4294967297` is message 1 (M03)."""

    def parse_message_number(self, token: str) -> int:
        number = parse_decimal(token)
        if number is not None and number >= 2**32:
            token = str(number % 2**32)
        return super().parse_message_number(token)


class DeleZeroMarksLast(Pop3Session):
    """`DELE 0` indexes messages[-1]: the last message is marked (M01)."""

    def cmd_dele(self, args: list[str]) -> object:
        if args == ["0"] and self.live_numbers():
            self.deleted.add(self.live_numbers()[-1])
            return ok("message 0 marked deleted")
        return super().cmd_dele(args)


class UnstuffedRetr(Pop3Session):
    """RETR sends the message without byte-stuffing (RFC 1939 §3)."""

    def cmd_retr(self, args: list[str]) -> object:
        reply = super().cmd_retr(args)
        if not getattr(reply, "ok", False):
            return reply
        number = int(args[0])
        return b"+OK message follows\r\n" + self.message(number).content + b".\r\n"


class BareLfOnRefusal(Pop3Session):
    """'no such message' refusals end in a bare LF, not CRLF (RFC 1939 §3)."""

    def handle_line(self, line: bytes) -> bytes:
        reply = super().handle_line(line)
        if reply.startswith(b"-ERR no such message"):
            return reply.replace(CRLF, b"\n")
        return reply


class DoubleErrOnUnknown(Pop3Session):
    """An unknown command is answered twice: two status lines for one
    command shift every later reply (one status per command)."""

    def handle_line(self, line: bytes) -> bytes:
        reply = super().handle_line(line)
        if reply.startswith(b"-ERR unknown command"):
            return reply + b"-ERR unknown command\r\n"
        return reply


class SecondUserSwitches(Pop3Session):
    """USER and PASS work in TRANSACTION and switch to another maildrop
    (verdict-principles: a second USER/PASS that switches maildrops)."""

    allowed_commands: ClassVar[Mapping[State, frozenset[str]]] = {
        **Pop3Session.allowed_commands,
        State.TRANSACTION: Pop3Session.allowed_commands[State.TRANSACTION] | {"USER", "PASS"},
    }

    def cmd_user(self, args: list[str]) -> object:
        if self.state is not State.TRANSACTION:
            return super().cmd_user(args)
        self.expect_arguments(args, 1, 1)
        self._switch_to = args[0]
        return ok("send PASS")

    def cmd_pass(self, args: list[str]) -> object:
        user = getattr(self, "_switch_to", None)
        if self.state is not State.TRANSACTION or user is None:
            return super().cmd_pass(args)
        if not args or self.users.secret_for(user) != args[0]:
            raise CommandError("invalid password")
        if self.maildrop is not None:
            self.maildrop.release()
            self.maildrop = None
        self.deleted.clear()
        return self.open_maildrop(user, method="PASS")


class BareCrSplits(Pop3Session):
    """A bare CR ends a command too: `CAPA\\rNOOP\\r\\n` runs two commands
    and gets two replies (the smuggling class, catalogue R09)."""

    def handle_line(self, line: bytes) -> bytes:
        if line.endswith(b"\r"):
            line = line[:-1]
        if b"\r" not in line:
            return super().handle_line(line)
        return b"".join(super(BareCrSplits, self).handle_line(part) for part in line.split(b"\r"))


class DeleRemovesAtOnce(Pop3Session):
    """DELE removes the message from the store at once, not at UPDATE:
    a dropped connection loses it (RFC 1939 §6, catalogue M09)."""

    def cmd_dele(self, args: list[str]) -> object:
        reply = super().cmd_dele(args)
        if getattr(reply, "ok", False) and self.maildrop is not None:
            self.maildrop.commit([self.message(int(args[0]))])
        return reply


class FormatStringKillsService(Pop3Session):
    """A format string (`%n`) in any command crashes the service: every
    later connection is refused with -ERR (the Courier/Snort 2250 class)."""

    broken: ClassVar[bool] = False  # per server: start() makes a subclass

    def greeting(self) -> bytes:
        if type(self).broken:
            self._close_without_update()
            return b"-ERR service unavailable\r\n"
        return super().greeting()

    def handle_line(self, line: bytes) -> bytes:
        if b"%n" in line:
            type(self).broken = True
        return super().handle_line(line)


class WedgedByFormatString(FormatStringKillsService):
    """A format string (`%n`) wedges the whole service: it still accepts
    connections but never sends another byte, greeting included, until it
    is restarted (for `mailspec fuzz --restart-command`)."""

    def greeting(self) -> bytes:
        return b"" if type(self).broken else Pop3Session.greeting(self)

    def handle_line(self, line: bytes) -> bytes:
        if type(self).broken:
            return b""
        return super().handle_line(line)


@dataclass(frozen=True)
class PlantedFault:
    name: str
    session: type[Pop3Session]
    oracles: frozenset[str]  # the oracle(s) a finding of this fault may be pinned on
    #: the fault leaves the server broken: the finding cannot be minimised or
    #: confirmed in the same run (a fresh server replays it)
    breaks_server: bool = False


FAULTS = [
    PlantedFault("crash-on-long-line", CrashOnLongLine, frozenset({"silence"})),
    PlantedFault("hang-on-nul", HangOnNul, frozenset({"silence"})),
    PlantedFault("wraps-at-32-bits", WrapsAt32Bits, frozenset({"refused"})),
    PlantedFault("dele-0-marks-last", DeleZeroMarksLast, frozenset({"refused", "mailbox-same"})),
    # an unstuffed lone '.' line ends the body early: the rest arrives unasked
    PlantedFault("unstuffed-retr", UnstuffedRetr, frozenset({"framing", "one-status"})),
    PlantedFault("bare-lf-on-refusal", BareLfOnRefusal, frozenset({"framing"})),
    PlantedFault("double-err-on-unknown", DoubleErrOnUnknown, frozenset({"one-status"})),
    PlantedFault("second-user-switches", SecondUserSwitches, frozenset({"refused"})),
    # the second reply shifts the next: a refusal may see the other command's +OK
    PlantedFault("bare-cr-splits", BareCrSplits, frozenset({"one-status", "refused"})),
    PlantedFault("dele-removes-at-once", DeleRemovesAtOnce, frozenset({"mailbox-same"})),
    PlantedFault(
        "format-string-kills-service",
        FormatStringKillsService,
        frozenset({"recover"}),
        breaks_server=True,
    ),
]


def start(session: type[Pop3Session], root: Path, port: int = 0) -> ServerHandle:
    """The reference server with `session` over a Maildir root the suite
    provisions (`maildir,exact=yes:ROOT/{user}`)."""
    users = UserDirectory()
    for account in load_fixture().accounts.values():
        method = LoginMethod.APOP if account.login == "apop" else LoginMethod.PASS
        users.set(account.user, account.password, method)
    settings = ServerSettings(session_config=SessionConfig(enable_apop=True, enable_last=True))
    session = type(session.__name__, (session,), {})  # class-level state per server
    server = Pop3Server(MaildirStore(str(root / "{user}")), users, session_class=session,
                        settings=settings)  # fmt: skip
    return ServerHandle(server, "127.0.0.1", port)


def provision_spec(root: Path) -> str:
    return f"maildir,exact=yes:{root}/{{user}}"
