"""Deliberately faulty POP3 servers, built on the reference server's
extension seam (session subclasses and maildrop subclasses).

Each `Fault` names the bug class, the scenarios worth running against it
(`select`, fnmatch globs) and the scenarios that must catch it (`catches`).
The faults live only here: the shipped reference server stays correct.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import ClassVar

from reference_server.pop3.protocol import (
    CRLF,
    CommandError,
    LoginMethod,
    Pop3Session,
    State,
    err,
    ok,
    parse_decimal,
    top_of_message,
)
from reference_server.store.maildrop import (
    MaildirMaildrop,
    MaildirStore,
    StoredMessage,
)

TRANSACTION_ONLY = frozenset(
    {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "LAST"}
)


@dataclass
class Fault:
    name: str
    description: str
    select: list[str]
    catches: list[str]
    session: type[Pop3Session] = Pop3Session
    maildrop: type[MaildirMaildrop] | None = None
    exact: bool = True  # byte-exact provisioner (False: size faults would fail verification)
    apop: bool = True  # greeting timestamp + APOP (False only for faults about its absence)
    autologout: float = 600
    slow: bool = False
    store_lock: bool = True
    extra: dict[str, object] = field(default_factory=dict)


def stuffed(body: bytes) -> bytes:
    return re.sub(rb"(?m)^\.", b"..", body)


def multiline(text: str, body: bytes, *, stuff=stuffed, terminator: bytes = b".\r\n") -> bytes:
    return b"+OK " + text.encode() + CRLF + stuff(body) + terminator


def _base_receive(session, data):
    Pop3Session.feed(session, data)
    return b"".join(Pop3Session.replies(session))


class _ReceiveFault(Pop3Session):
    """Faults in line handling: `fault_receive(data) -> bytes` replaces the
    transport's feed()/replies() pair."""

    def feed(self, data):
        self._fault_out = getattr(self, "_fault_out", b"") + self.fault_receive(data)

    def replies(self):
        out, self._fault_out = getattr(self, "_fault_out", b""), b""
        if out:
            yield out

    def fault_receive(self, data):
        return _base_receive(self, data)


# --- multi-line framing -----------------------------------------------------


class NoStuffing(Pop3Session):
    def cmd_retr(self, args):
        n = self.parse_message_number(args[0] if args else "")
        return multiline("message follows", self.message(n).content, stuff=lambda b: b)


class LoneDotUnstuffed(Pop3Session):
    def cmd_retr(self, args):
        n = self.parse_message_number(args[0] if args else "")
        body = re.sub(rb"(?m)^\.(?!\r\n)", b"..", self.message(n).content)
        return multiline("message follows", body, stuff=lambda b: b)


class MissingTerminator(Pop3Session):
    def cmd_uidl(self, args):
        reply = super().cmd_uidl(args)
        if args or not reply.ok:
            return reply
        return reply.to_bytes()[: -len(b".\r\n")]


class DoubledTerminator(Pop3Session):
    def cmd_retr(self, args):
        reply = super().cmd_retr(args)
        return reply.to_bytes() + b".\r\n" if reply.ok else reply


class BareLfReplies(Pop3Session):
    def handle_line(self, line):
        return super().handle_line(line).replace(b"\r\n", b"\n")


class NoFinalCrlf(MaildirMaildrop):
    """Sends a message without final newline glued to the terminator."""

    def load(self):
        out = []
        for m in super().load():
            raw = open(m.location, "rb").read()
            if not raw.endswith(b"\n"):
                out.append(StoredMessage(m.location, m.uid, m.content[:-2]))
            else:
                out.append(m)
        return out


class EightBitMangled(Pop3Session):
    def cmd_retr(self, args):
        n = self.parse_message_number(args[0] if args else "")
        body = bytes(b if b < 0x80 else 0x3F for b in self.message(n).content)
        return multiline("message follows", body)


class LfContent(MaildirMaildrop):
    """Sends stored bare-LF messages as they are (no CRLF conversion)."""

    def load(self):
        out = []
        for m in super().load():
            raw = open(m.location, "rb").read()
            out.append(StoredMessage(m.location, m.uid, m.content if b"\r\n" in raw else raw))
        return out


class AddedHeader(Pop3Session):
    def cmd_retr(self, args):
        n = self.parse_message_number(args[0] if args else "")
        return multiline("message follows", b"X-Fault: added\r\n" + self.message(n).content)


# --- sizes ---------------------------------------------------------------------


class CountsLf(MaildirMaildrop):
    def octet_count(self, message):
        return len(message.content.replace(b"\r\n", b"\n"))


class CountsStuffing(MaildirMaildrop):
    def octet_count(self, message):
        return len(stuffed(message.content))


class StatSizeWrong(Pop3Session):
    def cmd_stat(self, args):
        count, size = self._drop_listing()
        return ok(f"{count} {size + 1}")


class StatCountsDeleted(Pop3Session):
    def cmd_stat(self, args):
        n = len(self.messages)
        return ok(f"{n} {sum(self.octets(i) for i in range(1, n + 1))}")


class StatExtraText(Pop3Session):
    def cmd_stat(self, args):
        count, size = self._drop_listing()
        return ok(f"{count} {size} messages")

    def cmd_list(self, args):
        reply = super().cmd_list(args)
        if not reply.ok:
            return reply
        if args:
            return ok(reply.text + " octets")
        return ok(reply.text, reply.body.replace(b"\r\n", b" octets\r\n"))


class SizeDrifts(Pop3Session):
    """Like servers that write a Status: header into a message once read."""

    def cmd_retr(self, args):
        reply = super().cmd_retr(args)
        if reply.ok:
            n = int(args[0])
            m = self.messages[n - 1]
            if not m.content.startswith(b"Status: RO"):
                self.messages[n - 1] = StoredMessage(
                    m.location, m.uid, b"Status: RO\r\n" + m.content
                )
        return reply


# --- deletion and UPDATE ---------------------------------------------------------


class ListIncludesDeleted(Pop3Session):
    def cmd_list(self, args):
        if args:
            return super().cmd_list(args)
        body = b"".join(
            b"%d %d\r\n" % (n, self.octets(n)) for n in range(1, len(self.messages) + 1)
        )
        return ok("scan listing", body)

    def cmd_uidl(self, args):
        if args:
            return super().cmd_uidl(args)
        body = b"".join(f"{n} {m.uid}\r\n".encode() for n, m in enumerate(self.messages, 1))
        return ok("uidl", body)


class Renumbers(Pop3Session):
    """DELE removes the message from the session's list at once."""

    def cmd_dele(self, args):
        self.expect_arguments(args, 1, 1)
        n = self.parse_message_number(args[0])
        self._removed = [*getattr(self, "_removed", []), self.messages.pop(n - 1)]
        return ok("deleted")

    def cmd_rset(self, args):
        self.messages = list(self.maildrop.messages)
        self._removed = []
        return super().cmd_rset(args)

    def enter_update(self):
        self.maildrop.commit(getattr(self, "_removed", []))
        return ok("bye", close=True)


class DeleImmediate(Pop3Session):
    def cmd_dele(self, args):
        reply = super().cmd_dele(args)
        if reply.ok:
            self.maildrop.commit([self.message(int(args[0]))])
        return reply


class CommitOnDrop(Pop3Session):
    def connection_lost(self):
        if self.state is State.TRANSACTION and self.deleted:
            self.maildrop.commit([self.message(n) for n in sorted(self.deleted)])
        super().connection_lost()


_PENDING: dict[str, list[str]] = {}


class StaleMarksOnQuit(Pop3Session):
    """Keeps a dropped session's marks and applies them at the next QUIT."""

    def connection_lost(self):
        if self.state is State.TRANSACTION and self.deleted:
            _PENDING[self.user_name] = [self.message(n).location for n in self.deleted]
        super().connection_lost()

    def cmd_quit(self, args):
        import os

        user = self.user_name
        for path in _PENDING.pop(user or "", []):
            try:
                os.unlink(path)
            except OSError:
                pass
        return super().cmd_quit(args)


class RsetNoop(Pop3Session):
    def cmd_rset(self, args):
        return ok("maildrop reset")


class _DoomedAtUpdate(Pop3Session):
    """Remembers message numbers (`doom`) and adds them to the deleted
    marks at UPDATE, whatever RSET did in between."""

    def doom(self, number):
        self._doomed = getattr(self, "_doomed", set()) | {number}

    def enter_update(self):
        self.deleted |= getattr(self, "_doomed", set())
        return super().enter_update()


class RsetCosmetic(_DoomedAtUpdate):
    """RSET shows the messages again but QUIT still removes them."""

    def cmd_dele(self, args):
        reply = super().cmd_dele(args)
        if reply.ok:
            self.doom(int(args[0]))
        return reply


class DeletedAccessible(Pop3Session):
    def parse_message_number(self, token):
        saved, self.deleted = self.deleted, set()
        try:
            return super().parse_message_number(token)
        finally:
            self.deleted = saved


class QuitRemovesWrong(Pop3Session):
    def enter_update(self):
        self.deleted = {n + 1 for n in self.deleted if n + 1 <= len(self.messages)} or self.deleted
        return super().enter_update()


class RetrDeletesOnQuit(_DoomedAtUpdate):
    def cmd_retr(self, args):
        reply = super().cmd_retr(args)
        if reply.ok:
            self.doom(int(args[0]))
        return reply


class ProcessesAfterQuit(_ReceiveFault):
    def fault_receive(self, data):
        out = bytearray()
        for line in data.split(b"\n"):
            if line:
                out += self.handle_line(line)
        return bytes(out)


class QuitTransactionNoClose(Pop3Session):
    """QUIT from TRANSACTION runs UPDATE and answers +OK, but leaves the
    connection open (back in AUTHORIZATION) until the client closes it."""

    def cmd_quit(self, args):
        if self.state is not State.TRANSACTION:
            return super().cmd_quit(args)
        reply = self.enter_update()
        if self.maildrop is not None:
            self.maildrop.release()
            self.maildrop = None
        self.state = State.AUTHORIZATION
        return ok(reply.text) if reply.ok else reply


class QuitAuthNoClose(Pop3Session):
    def cmd_quit(self, args):
        if self.state is not State.TRANSACTION:
            return ok("bye")
        return super().cmd_quit(args)


class NoopErr(Pop3Session):
    def cmd_noop(self, args):
        return err("noop failed")


# --- message numbers and arguments -------------------------------------------


class ZeroIsOne(Pop3Session):
    def parse_message_number(self, token):
        return super().parse_message_number("1" if token == "0" else token)


class Wraps32(Pop3Session):
    """Numbers are parsed into 32 bits; the range check only tests n > count,
    so a number that wraps to 0 reaches messages[n - 1], the last message."""

    def parse_message_number(self, token):
        n = parse_decimal(token)
        if n is not None and n >= 2**32 and n % 2**32 == 0 and self.live_numbers():
            return len(self.messages)
        return super().parse_message_number(str(n % 2**32) if n is not None else token)


class RangeOffByOne(Pop3Session):
    def parse_message_number(self, token):
        n = parse_decimal(token)
        if n is not None and n == len(self.messages) + 1:
            return 1
        return super().parse_message_number(token)


class TrailingGarbage(Pop3Session):
    def parse_message_number(self, token):
        m = re.search(r"\d+", token)
        return super().parse_message_number(m.group(0) if m else token)


class MissingArgsAccepted(Pop3Session):
    """A missing argument defaults: USER/PASS to empty, RETR/DELE/TOP to 1."""

    def cmd_user(self, args):
        self.user_name = args[0] if args else ""
        self.state = State.USER_ACCEPTED
        return ok()

    def cmd_retr(self, args):
        return super().cmd_retr(args or ["1"])

    def cmd_dele(self, args):
        return super().cmd_dele(args or ["1"])

    def cmd_top(self, args):
        # "TOP 10" as the kcope seed shows it: the one argument is the line count of message 1
        return super().cmd_top(["1", args[0]] if len(args) == 1 else args or ["1", "10"])

    def cmd_apop(self, args):
        if not args:
            return ok("apop")
        return super().cmd_apop(args)


class ExtraArgsIgnored(Pop3Session):
    def expect_arguments(self, args, minimum, maximum):
        if len(args) < minimum:
            raise CommandError("missing argument")
        del args[maximum:]


class EchoNumberToken(Pop3Session):
    def cmd_list(self, args):
        reply = super().cmd_list(args)
        if args and reply.ok:
            return ok(f"{args[0]} {reply.text.split()[1]}")
        return reply


class ListReversed(Pop3Session):
    """The scan listing comes newest first (numbers and sizes right, order not)."""

    def cmd_list(self, args):
        reply = super().cmd_list(args)
        if args or not reply.ok or not reply.body:
            return reply
        lines = reply.body.split(b"\r\n")[:-1]
        return ok(reply.text, b"".join(line + b"\r\n" for line in reversed(lines)))


class ListSingleDiskSize(Pop3Session):
    """LIST n reports the message's Unix (LF) size, the listing the CRLF size."""

    def cmd_list(self, args):
        reply = super().cmd_list(args)
        if args and reply.ok:
            n = int(reply.text.split()[0])
            unix_size = len(self.message(n).content.replace(CRLF, b"\n"))
            return ok(f"{n} {unix_size}")
        return reply


class EmptyListTwoTerminators(Pop3Session):
    """LIST on an empty maildrop: the special case writes '+OK' and '.' and
    then falls through to the general terminator (a missing return)."""

    def cmd_list(self, args):
        reply = super().cmd_list(args)
        if not args and reply.ok and not self.live_numbers():
            return reply.to_bytes() + b".\r\n"
        return reply


class EmptyMaildropBugs(Pop3Session):
    def cmd_list(self, args):
        if not self.messages and args:
            return ok("1 0")
        return super().cmd_list(args)


# --- state machine --------------------------------------------------------------


class TransactionCommandsBeforeLogin(Pop3Session):
    allowed_commands: ClassVar = {
        **Pop3Session.allowed_commands,
        State.AUTHORIZATION: Pop3Session.allowed_commands[State.AUTHORIZATION] | TRANSACTION_ONLY,
        State.USER_ACCEPTED: Pop3Session.allowed_commands[State.USER_ACCEPTED] | TRANSACTION_ONLY,
    }

    def _dispatch(self, line):
        keyword = line.split(b" ")[0].decode("ascii", "replace").upper()
        if self.state is not State.TRANSACTION and keyword in TRANSACTION_ONLY:
            if self.state is State.USER_ACCEPTED:
                self.state = State.AUTHORIZATION
            return ok("0 0")
        return super()._dispatch(line)


class NoopBeforeLogin(Pop3Session):
    def _dispatch(self, line):
        if line.upper() == b"NOOP" and self.state is not State.TRANSACTION:
            return ok()
        return super()._dispatch(line)


class AuthInTransaction(Pop3Session):
    """USER/PASS after login switch to another maildrop; APOP is accepted."""

    allowed_commands: ClassVar = {
        **Pop3Session.allowed_commands,
        State.TRANSACTION: Pop3Session.allowed_commands[State.TRANSACTION]
        | {"USER", "PASS", "APOP"},
    }

    def cmd_user(self, args):
        if self.state is State.TRANSACTION:
            self._next_user = args[0] if args else ""
            return ok()
        return super().cmd_user(args)

    def cmd_pass(self, args):
        if self.state is State.TRANSACTION:
            user = getattr(self, "_next_user", self.user_name)
            self.maildrop.release()
            self.maildrop = None
            return self.open_maildrop(user, method="PASS")
        return super().cmd_pass(args)

    def cmd_apop(self, args):
        if self.state is State.TRANSACTION:
            return ok("already in")
        return super().cmd_apop(args)


class LaxPassSequencing(Pop3Session):
    """PASS without USER logs in whoever owns the password; a second PASS
    after a failed one is tried again; APOP and USER after USER accepted."""

    allowed_commands: ClassVar = {
        **Pop3Session.allowed_commands,
        State.AUTHORIZATION: Pop3Session.allowed_commands[State.AUTHORIZATION] | {"PASS"},
        State.USER_ACCEPTED: Pop3Session.allowed_commands[State.USER_ACCEPTED] | {"USER", "APOP"},
    }

    def cmd_pass(self, args):
        if self.user_name is None:
            self.user_name = getattr(self, "_last_user", None)
            if self.user_name is None:
                for name in self.users.names():
                    if args and self.users.secret_for(name) == args[0]:
                        self.user_name = name
            if self.user_name is None:
                return err("who?")
        self._last_user = self.user_name
        return super().cmd_pass(args)


class AnyPassword(Pop3Session):
    def cmd_pass(self, args):
        user = self.user_name
        self.state = State.AUTHORIZATION
        return self.open_maildrop(user or "nobody", method="PASS")


class StuckAfterFailedPass(Pop3Session):
    def cmd_pass(self, args):
        reply = super().cmd_pass(args)
        if not reply.ok:
            self._stuck = True
        return reply

    def _dispatch(self, line):
        if getattr(self, "_stuck", False):
            return err("too many failures")
        return super()._dispatch(line)


class RefusedUserCloses(Pop3Session):
    def cmd_user(self, args):
        if args and args[0].startswith("msspare4"):
            return err("no plaintext for you", close=True)
        return super().cmd_user(args)


class PassWithSpaceHangs(Pop3Session):
    def cmd_pass(self, args):
        if args and " " in args[0]:
            return b""
        return super().cmd_pass(args)


class CaseSensitive(Pop3Session):
    def _dispatch(self, line):
        keyword = line.split(b" ")[0]
        if keyword != keyword.upper():
            return err("unknown command")
        return super()._dispatch(line)


class UnknownCommandOk(Pop3Session):
    def _dispatch(self, line):
        keyword = line.split(b" ")[0].decode("ascii", "replace").upper()
        if keyword not in self.known_commands:
            return ok("sure")
        return super()._dispatch(line)


class PrefixKeywords(Pop3Session):
    """STATS runs STAT; control characters and TABs are stripped."""

    def _dispatch(self, line):
        line = re.sub(rb"[\x00-\x1f\x7f]", b"", line)
        head, sep, rest = line.partition(b" ")
        if len(head) == 5:
            head = head[:4]
        return super()._dispatch(head + sep + rest)


class NulTruncates(Pop3Session):
    def _dispatch(self, line):
        return super()._dispatch(line.split(b"\x00")[0])


class EmptyLineIgnored(Pop3Session):
    def _dispatch(self, line):
        if not line:
            return b""
        return super()._dispatch(line)


class ActsBeforeCrlf(_ReceiveFault):
    def fault_receive(self, data):
        if b"\n" not in data and data:
            return self.handle_line(data)
        return _base_receive(self, data)


class ShortLineLimit(_ReceiveFault):
    def fault_receive(self, data):
        if any(len(line) > 44 for line in data.split(b"\n")):
            self._close_without_update()
            return b""
        return _base_receive(self, data)


class ChunkedLongLines(_ReceiveFault):
    def fault_receive(self, data):
        out = bytearray()
        for line in data.split(b"\n"):
            for i in range(0, len(line), 200):
                if not self.closed:
                    out += self.handle_line(line[i : i + 200])
        return bytes(out)


class NoPipelining(_ReceiveFault):
    """Advertises PIPELINING but drops everything after the first command of a read."""

    def fault_receive(self, data):
        first, sep, _ = data.partition(b"\n")
        return _base_receive(self, first + sep)


# --- greeting and unsolicited output -------------------------------------------------


_CONNECTIONS: dict[int, int] = {}


class LeakedConnectionSlots(Pop3Session):
    """A connection limit of 2 whose slots are never given back: from the
    3rd connection on (after the capability probe and one verification) the
    server greets -ERR although nothing else is connected."""

    def greeting(self):
        key = id(self.store)
        _CONNECTIONS[key] = _CONNECTIONS.get(key, 0) + 1
        if _CONNECTIONS[key] > 2:
            return b"-ERR [SYS/TEMP] too many connections\r\n"
        return super().greeting()


class GreetingTwoLines(Pop3Session):
    def greeting(self):
        return super().greeting() + b"+OK and a second line\r\n"


class GreetingAngles(Pop3Session):
    def greeting_text(self):
        return "<ready> " + super().greeting_text()


class LowercaseStatus(Pop3Session):
    """NOOP's reply is a hand-written literal '+ok' (the other replies are built correctly)."""

    def cmd_noop(self, args):
        return b"+ok\r\n"


class StatusWithoutCrlf(Pop3Session):
    def cmd_noop(self, args):
        return b"+OK"


class UnsolicitedLine(Pop3Session):
    def cmd_dele(self, args):
        reply = super().cmd_dele(args)
        return reply.to_bytes() + b"+OK by the way\r\n" if reply.ok else reply


# --- TOP ----------------------------------------------------------------------------


class TopIgnoresN(Pop3Session):
    def cmd_top(self, args):
        self.expect_arguments(args, 2, 2)
        n = self.parse_message_number(args[0])
        return ok("top", self.message(n).content)


class TopZeroGivesBody(Pop3Session):
    def cmd_top(self, args):
        self.expect_arguments(args, 2, 2)
        n = self.parse_message_number(args[0])
        lines = parse_decimal(args[1])
        if lines is None:
            raise CommandError("bad count")
        return ok("top", top_of_message(self.message(n).content, lines + 1))


class TopDropsSeparator(Pop3Session):
    def cmd_top(self, args):
        reply = super().cmd_top(args)
        if reply.ok:
            return ok("top", reply.body.replace(b"\r\n\r\n", b"\r\n", 1))
        return reply


class TopBroken(Pop3Session):
    def cmd_top(self, args):
        return err("TOP is not available")


class TopUnstuffed(Pop3Session):
    def cmd_top(self, args):
        reply = super().cmd_top(args)
        return multiline("top", reply.body, stuff=lambda b: b) if reply.ok else reply


# --- UIDL ---------------------------------------------------------------------------

_SESSION_COUNTER = itertools.count(1)


class UidlUnstable(Pop3Session):
    def open_maildrop(self, user, *, method):
        reply = super().open_maildrop(user, method=method)
        tag = next(_SESSION_COUNTER)
        self.messages = [
            StoredMessage(m.location, f"{m.uid}.{tag}", m.content) for m in self.messages
        ]
        return reply


class UidlDuplicates(Pop3Session):
    def open_maildrop(self, user, *, method):
        reply = super().open_maildrop(user, method=method)
        self.messages = [StoredMessage(m.location, "same-uid", m.content) for m in self.messages]
        return reply


class UidlBadChars(Pop3Session):
    def cmd_uidl(self, args):
        reply = super().cmd_uidl(args)
        if reply.ok and not args:
            return ok("uidl", reply.body.replace(b"\r\n", b"-" + b"x" * 70 + b"\r\n", 1))
        return reply


class UidlSingleDiffers(Pop3Session):
    def cmd_uidl(self, args):
        reply = super().cmd_uidl(args)
        if reply.ok and args:
            return ok(reply.text + "-single")
        return reply


class UidIsNumber(Pop3Session):
    def open_maildrop(self, user, *, method):
        reply = super().open_maildrop(user, method=method)
        self.messages = [
            StoredMessage(m.location, f"msg{i}", m.content) for i, m in enumerate(self.messages, 1)
        ]
        return reply


# --- lock -----------------------------------------------------------------------------


class _NoLock:
    def release(self):
        pass


class LazyNoLockMaildrop(MaildirMaildrop):
    """No lock, and content read at RETR time from the file."""

    def load(self):
        return [_LazyMessage(m.location, m.uid, m.content) for m in super().load()]


class _LazyMessage(StoredMessage):
    @property  # type: ignore[override]
    def content(self):
        return open(self.location, "rb").read().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")

    @content.setter
    def content(self, value):
        pass


class NoLockStore(MaildirStore):
    maildrop_class = LazyNoLockMaildrop

    def open(self, user):
        path = self.path_for(user)
        self.prepare(path)
        return self.maildrop_class(self, user, path, _NoLock())


class LockKeptAfterDrop(Pop3Session):
    def connection_lost(self):
        if self.maildrop is not None:
            self.maildrop = None  # lock object leaks: never released
            _LEAKED.append(self)
        super().connection_lost()


_LEAKED: list[object] = []


class LockAtUser(Pop3Session):
    """Takes the lock at USER and forgets it when QUIT comes before PASS."""

    def cmd_user(self, args):
        reply = super().cmd_user(args)
        try:
            self._early = self.store.open(args[0])
        except Exception:
            self._early = None
        return reply

    def cmd_pass(self, args):
        early = getattr(self, "_early", None)
        if early is not None:
            early.release()
            self._early = None
        return super().cmd_pass(args)

    def cmd_quit(self, args):
        if getattr(self, "_early", None) is not None:
            _LEAKED.append(self._early)
            self._early = None
        return super().cmd_quit(args)


class LockLeakedOnCleanQuit(Pop3Session):
    """The lock is released inside the "remove the marked messages" branch
    of UPDATE, so a QUIT that deleted nothing leaves the maildrop locked."""

    def enter_update(self):
        if not self.deleted and self.maildrop is not None:
            _LEAKED.append(self.maildrop.lock)  # never released
            self.maildrop.lock = _NoLock()
        return super().enter_update()


_HOLDERS: dict[str, Pop3Session] = {}


class NewestLoginWins(Pop3Session):
    """A second login takes the maildrop away from the live session: the
    first session's view is emptied and its lock handed over."""

    def open_maildrop(self, user, *, method):
        key = str(self.store.path_for(user))
        holder = _HOLDERS.get(key)
        if holder is not None and holder.maildrop is not None and holder is not self:
            holder.maildrop.release()
            holder.messages, holder.deleted = [], set()
        reply = super().open_maildrop(user, method=method)
        if reply.ok:
            _HOLDERS[key] = self
        return reply


class LockedButOk(Pop3Session):
    """A locked maildrop answers PASS with +OK and then a useless session."""

    def open_maildrop(self, user, *, method):
        reply = super().open_maildrop(user, method=method)
        if not reply.ok and "IN-USE" in reply.text:
            self.state = State.TRANSACTION
            self.messages = []
            self.allowed_commands = {
                **self.allowed_commands,
                State.TRANSACTION: frozenset({"QUIT"}),
            }
            return ok("welcome")
        return reply


class InUseForWrongPassword(Pop3Session):
    def cmd_pass(self, args):
        user = self.user_name
        reply = super().cmd_pass(args)
        if not reply.ok and user and self.store.path_for(user).joinpath(".mailspec-lock").exists():
            return err("[IN-USE] locked")
        return reply


class InUseWithoutCode(Pop3Session):
    def open_maildrop(self, user, *, method):
        reply = super().open_maildrop(user, method=method)
        if not reply.ok:
            return err("maildrop busy")
        return reply


class BadRespCodes(Pop3Session):
    def cmd_pass(self, args):
        reply = super().cmd_pass(args)
        return reply if reply.ok else err("[AUTH invalid password")

    def _refuse(self, text):
        reply = super()._refuse(text)
        return err("[WRONG//STATE] " + text) if "state" in text else reply


class CodesWithoutRespCodes(Pop3Session):
    def capabilities(self):
        return [c for c in super().capabilities() if c not in ("RESP-CODES", "AUTH-RESP-CODE")]


# --- CAPA -----------------------------------------------------------------------------


class BadCapaListing(Pop3Session):
    def capabilities(self):
        caps = [c for c in super().capabilities() if not c.startswith(("EXPIRE", "IMPLEMENTATION"))]
        caps += ["X.DOTTED", "EXPIRE soon", "APOP"]
        if self.state is not State.TRANSACTION:
            caps.append("IMPLEMENTATION fault")
        return caps


class ExpireSpaceMissing(Pop3Session):
    """'EXPIRE NEVER' written without its space (as Mailutils 3.15 does): an
    unregistered tag, so no retention policy is announced."""

    def capabilities(self):
        return ["EXPIRENEVER" if c == "EXPIRE NEVER" else c for c in super().capabilities()]


class OverlongCapaLine(Pop3Session):
    """An IMPLEMENTATION line built from an unbounded build string: a CAPA
    line of 600 octets, over RFC 2449's 512 (POP3-2449-LEN-04)."""

    def capabilities(self):
        return [
            "IMPLEMENTATION " + "build-" + "x" * 579 if c.startswith("IMPLEMENTATION") else c
            for c in super().capabilities()
        ]


class ApopTagWithoutApop(Pop3Session):
    """A hard-coded APOP line in CAPA although APOP is switched off (no timestamp)."""

    def capabilities(self):
        return [*super().capabilities(), "APOP"]


class CapaTransactionDropsTop(Pop3Session):
    def capabilities(self):
        caps = super().capabilities()
        return [c for c in caps if c != "TOP"] if self.state is State.TRANSACTION else caps


class CapaUnterminated(Pop3Session):
    """The TRANSACTION-state CAPA (a separate code path) forgets the '.' line."""

    def cmd_capa(self, args):
        reply = super().cmd_capa(args)
        if reply.ok and self.state is State.TRANSACTION:
            return reply.to_bytes()[: -len(b".\r\n")]
        return reply


class CapaArgumentCloses(Pop3Session):
    def cmd_capa(self, args):
        if args:
            return err("no", close=True)
        return super().cmd_capa(args)


class UidlAdvertisedBroken(Pop3Session):
    def cmd_uidl(self, args):
        return err("UIDL not available")


# --- LAST ---------------------------------------------------------------------------------


class LastBroken(Pop3Session):
    """LAST is the last accessed number (not the highest), starts at 1,
    ignores DELE and survives RSET."""

    def open_maildrop(self, user, *, method):
        reply = super().open_maildrop(user, method=method)
        self.highest_accessed = 1
        return reply

    def cmd_retr(self, args):
        reply = super().cmd_retr(args)
        if reply.ok:
            self.highest_accessed = int(args[0])
        return reply

    def cmd_dele(self, args):
        saved = self.highest_accessed
        reply = super().cmd_dele(args)
        self.highest_accessed = saved
        return reply

    def cmd_rset(self, args):
        saved = self.highest_accessed
        reply = super().cmd_rset(args)
        self.highest_accessed = saved
        return reply


_SEEN: dict[str, int] = {}


class LastPersisting(Pop3Session):
    """The reference plus LAST persistence across sessions (RFC 1225)."""

    def open_maildrop(self, user, *, method):
        reply = super().open_maildrop(user, method=method)
        self.highest_accessed = self._start = _SEEN.get(user, 0) if reply.ok else 0
        return reply

    def cmd_retr(self, args):
        reply = super().cmd_retr(args)
        if reply.ok:
            self._retrieved = max(getattr(self, "_retrieved", 0), int(args[0]))
        return reply

    def cmd_rset(self, args):
        reply = super().cmd_rset(args)
        self.highest_accessed = getattr(self, "_start", 0)
        return reply

    def enter_update(self):
        _SEEN[self.user_name] = max(_SEEN.get(self.user_name, 0), getattr(self, "_retrieved", 0))
        return super().enter_update()


# --- APOP ----------------------------------------------------------------------------------


class ApopFixedTimestamp(Pop3Session):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        if self.apop_timestamp:
            self.apop_timestamp = "<1896.697170952@dbc.mtview.ca.us>"


class ApopAnyDigest(Pop3Session):
    def cmd_apop(self, args):
        if len(args) != 2:
            raise CommandError("APOP needs a name and a digest")
        return self.open_maildrop(args[0], method="APOP")


class ApopBadTimestamp(Pop3Session):
    """The timestamp lacks '@host' (hostname unknown): '<pid.clock>' is no
    msg-id. APOP digests are checked against it, so APOP itself works."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        if self.apop_timestamp:
            self.apop_timestamp = self.apop_timestamp.split("@")[0] + ">"


class ApopOnlyForApopUsers(Pop3Session):
    """The correct APOP variant for SEC-01: PASS refused where APOP is on."""

    def cmd_pass(self, args):
        if self.apop_timestamp:
            self.state = State.AUTHORIZATION
            self.user_name = None
            return err("use APOP")
        return super().cmd_pass(args)


# --- autologout ----------------------------------------------------------------------------


class CommitOnAutologout(Pop3Session):
    def autologout(self):
        if self.state is State.TRANSACTION and self.deleted:
            self.maildrop.commit([self.message(n) for n in sorted(self.deleted)])
        super().autologout()


class _WithFarewell:
    pass


def _farewell(reply):
    from reference_server.pop3.protocol import Response

    class Farewell(Response):
        def to_bytes(self):
            return super().to_bytes() + b"-ERR autologout\r\n"

    return Farewell(reply.ok, reply.text, reply.body, True)


_LATEST_TIMESTAMP: dict[int, str] = {}


class ApopServerWideTimestamp(Pop3Session):
    """The timestamp lives in a server-wide variable: APOP checks the digest
    against the most recent greeting sent to anyone, not this session's."""

    def greeting(self):
        reply = super().greeting()
        if self.apop_timestamp:
            _LATEST_TIMESTAMP[id(self.store)] = self.apop_timestamp
        return reply

    def cmd_apop(self, args):
        own, self.apop_timestamp = self.apop_timestamp, _LATEST_TIMESTAMP.get(id(self.store), "")
        try:
            return super().cmd_apop(args)
        finally:
            self.apop_timestamp = own


class _EveryMethod:
    """A user directory that lets every user log in by `method`."""

    def __init__(self, users, method):
        self.users, self.method = users, method

    def secret_for(self, user):
        return self.users.secret_for(user)

    def method_for(self, user):
        return self.method


class LoginMethodNotEnforced(Pop3Session):
    """APOP users may also use PASS and PASS users APOP (RFC 1939 §13: one method per user)."""

    def _with_method(self, method, command, args):
        real, self.users = self.users, _EveryMethod(self.users, method)
        try:
            return command(args)
        finally:
            self.users = real

    def cmd_pass(self, args):
        return self._with_method(LoginMethod.PASS, super().cmd_pass, args)

    def cmd_apop(self, args):
        return self._with_method(LoginMethod.APOP, super().cmd_apop, args)


class ApopCloses(Pop3Session):
    """APOP (not offered) drops the connection without any reply. A '-ERR'
    and then a close would be an allowed abuse limit (verdict-principles 3)."""

    def cmd_apop(self, args):
        self._close_without_update()
        return b""


class TopLenientCount(Pop3Session):
    def cmd_top(self, args):
        if len(args) == 2 and parse_decimal(args[1]) is None:
            args = [args[0], "10"]
        return super().cmd_top(args)


# ---------------------------------------------------------------------------------------------

F = Fault
FAULTS: list[Fault] = [
    # framing
    F(
        "no-dot-stuffing",
        "RETR sends lines starting with '.' unstuffed",
        ["retr.dot-stuffing", "sizes.dot-lines-not-counted"],
        ["retr.dot-stuffing"],
        NoStuffing,
    ),
    F(
        "lone-dot-unstuffed",
        "a lone '.' content line is sent unstuffed (body ends early)",
        ["retr.dot-stuffing", "retr.large-message"],
        ["retr.dot-stuffing"],
        LoneDotUnstuffed,
    ),
    F(
        "missing-terminator",
        "UIDL without argument never sends the '.' line",
        ["uidl.listing-format", "uidl.unique"],
        ["uidl.listing-format", "uidl.unique"],
        MissingTerminator,
    ),
    F(
        "doubled-terminator",
        "RETR ends with two '.' lines",
        [
            "retr.plain-message",
            "retr.eight-bit-body",
            "seed.rfc1939-example-session",
            "seed.rfc1939-example-session-apop",
        ],
        ["retr.plain-message", "retr.eight-bit-body", "seed.rfc1939-example-session-apop"],
        DoubledTerminator,
    ),
    F(
        "bare-lf-replies",
        "reply lines end in LF instead of CRLF",
        ["greeting.positive-first", "auth.user-pass-login"],
        ["greeting.positive-first"],
        BareLfReplies,
    ),
    F(
        "no-final-crlf",
        "a message without final newline is glued to the terminator",
        ["retr.no-final-newline", "top.beyond-body"],
        ["retr.no-final-newline"],
        maildrop=NoFinalCrlf,
    ),
    F(
        "eight-bit-mangled",
        "RETR replaces 8-bit octets",
        ["retr.eight-bit-body"],
        ["retr.eight-bit-body"],
        EightBitMangled,
    ),
    F(
        "bare-lf-content",
        "a message stored with LF is sent with bare LF",
        ["retr.bare-lf-message", "sizes.bare-lf-counted-as-crlf"],
        ["retr.bare-lf-message"],
        maildrop=LfContent,
        exact=False,
    ),
    F(
        "added-header",
        "RETR adds a header to a byte-exact mailbox",
        [
            "retr.plain-message",
            "retr.*",
            "seed.kcope-noop-retr-dele-rset-quit",
            "rset.unmarks-all",
            "top.zero-lines",
            "top.beyond-body",
            "capa.top-works",
            "pipelining.in-order",
            "seed.monstrvb-top",
            "top.dot-stuffing",
        ],
        [
            "retr.plain-message",
            "top.zero-lines",
            "top.beyond-body",
            "capa.top-works",
            "seed.kcope-noop-retr-dele-rset-quit",
            "rset.unmarks-all",
            "pipelining.in-order",
            "seed.monstrvb-top",
            "top.dot-stuffing",
        ],
        AddedHeader,
    ),
    # sizes
    F(
        "octets-over-lf",
        "sizes count LF line ends as one octet",
        [
            "sizes.*",
            "retr.large-message",
            "seed.monstrvb-transaction-examples",
            "seed.full-session",
            "seed.rfc1939-example-session",
            "seed.kcope-noop-retr-dele-rset-quit",
        ],
        [
            "sizes.list-matches-retr",
            "sizes.bare-lf-counted-as-crlf",
            "retr.large-message",
            "seed.monstrvb-transaction-examples",
            "seed.full-session",
            "seed.rfc1939-example-session",
            "seed.kcope-noop-retr-dele-rset-quit",
        ],
        maildrop=CountsLf,
        exact=False,
    ),
    F(
        "octets-count-stuffing",
        "sizes count the stuffing dots",
        ["sizes.dot-lines-not-counted", "sizes.list-matches-retr"],
        ["sizes.dot-lines-not-counted"],
        maildrop=CountsStuffing,
        exact=False,
    ),
    F(
        "stat-size-wrong",
        "STAT size is one more than the sum of LIST sizes",
        ["stat.*", "seed.kcope-login-stat-list", "seed.lowercase-session", "seed.monstrvb-*"],
        [
            "stat.drop-listing",
            "seed.kcope-login-stat-list",
            "seed.lowercase-session",
            "seed.monstrvb-transaction-examples",
            "stat.excludes-deleted",
        ],
        StatSizeWrong,
        exact=False,
    ),
    F(
        "stat-counts-deleted",
        "STAT ignores deletion marks",
        ["stat.excludes-deleted", "dele.marks-message", "dele.drop-commits-nothing"],
        ["stat.excludes-deleted", "dele.marks-message", "dele.drop-commits-nothing"],
        StatCountsDeleted,
    ),
    F(
        "stat-list-extra-text",
        "STAT and LIST replies carry text after the size",
        ["stat.nothing-after-size", "list.nothing-after-size"],
        ["stat.nothing-after-size", "list.nothing-after-size"],
        StatExtraText,
    ),
    F(
        "size-drifts",
        "a message grows (Status: header) once retrieved",
        ["list.fixed-during-session", "retr.repeatable"],
        ["list.fixed-during-session"],
        SizeDrifts,
    ),
    # deletion / update
    F(
        "list-includes-deleted",
        "LIST and UIDL without argument show deleted messages",
        ["list.excludes-deleted", "stat.excludes-deleted", "dele.*", "uidl.after-dele-and-rset"],
        [
            "list.excludes-deleted",
            "stat.excludes-deleted",
            "dele.marks-message",
            "dele.then-uidl",
            "uidl.after-dele-and-rset",
        ],
        ListIncludesDeleted,
    ),
    F(
        "renumber-after-dele",
        "DELE renumbers the remaining messages",
        ["dele.*", "list.excludes-deleted", "list.deleted-message", "retr.deleted-message"],
        ["dele.marks-message", "dele.retr-after-dele-other", "list.excludes-deleted"],
        Renumbers,
    ),
    F(
        "dele-immediate",
        "DELE removes the message from the maildrop at once",
        [
            "dele.drop-commits-nothing",
            "rset.then-quit-keeps",
            "quit.authorization-applies-no-stale-marks",
        ],
        ["dele.drop-commits-nothing", "rset.then-quit-keeps"],
        DeleImmediate,
    ),
    F(
        "commit-on-drop",
        "deletions are applied when the connection drops",
        ["dele.drop-commits-nothing"],
        ["dele.drop-commits-nothing"],
        CommitOnDrop,
    ),
    F(
        "stale-marks-on-quit",
        "a dropped session's marks are applied by a QUIT in AUTHORIZATION",
        ["quit.authorization-applies-no-stale-marks"],
        ["quit.authorization-applies-no-stale-marks"],
        StaleMarksOnQuit,
    ),
    F(
        "rset-noop",
        "RSET does not unmark",
        [
            "rset.*",
            "seed.kcope-noop-retr-dele-rset-quit",
            "seed.monstrvb-dele-rset",
            "uidl.after-dele-and-rset",
        ],
        [
            "rset.unmarks-all",
            "rset.then-quit-keeps",
            "seed.kcope-noop-retr-dele-rset-quit",
            "seed.monstrvb-dele-rset",
            "uidl.after-dele-and-rset",
        ],
        RsetNoop,
    ),
    F(
        "rset-cosmetic",
        "RSET unmarks in the view but QUIT still removes",
        ["rset.then-quit-keeps", "seed.kcope-noop-retr-dele-rset-quit"],
        ["rset.then-quit-keeps", "seed.kcope-noop-retr-dele-rset-quit"],
        RsetCosmetic,
    ),
    F(
        "deleted-accessible",
        "RETR/LIST/TOP/UIDL/DELE of a deleted message succeed",
        [
            "retr.deleted-message",
            "list.deleted-message",
            "dele.then-top",
            "dele.then-uidl",
            "dele.twice",
            "seed.*dele*",
            "uidl.after-dele-and-rset",
        ],
        [
            "retr.deleted-message",
            "list.deleted-message",
            "dele.then-top",
            "dele.then-uidl",
            "dele.twice",
            "seed.monstrvb-dele-rset",
            "seed.kcope-noop-retr-dele-rset-quit",
            "uidl.after-dele-and-rset",
        ],
        DeletedAccessible,
    ),
    F(
        "quit-removes-wrong",
        "UPDATE removes the message after the marked one",
        [
            "update.*",
            "uidl.moves-with-message",
            "seed.full-session",
            "seed.lowercase-session",
            "seed.rfc1939-example-session",
        ],
        [
            "update.quit-commits",
            "update.quit-all-empties",
            "uidl.moves-with-message",
            "seed.full-session",
            "seed.lowercase-session",
            "seed.rfc1939-example-session",
        ],
        QuitRemovesWrong,
    ),
    F(
        "retr-deletes-on-quit",
        "retrieved messages are removed at QUIT (no EXPIRE 0 announced)",
        ["retr.repeatable"],
        ["retr.repeatable"],
        RetrDeletesOnQuit,
    ),
    F(
        "processes-after-quit",
        "commands after QUIT in the same write are executed",
        ["update.nothing-after-quit"],
        ["update.nothing-after-quit"],
        ProcessesAfterQuit,
    ),
    F(
        "quit-transaction-no-close",
        "QUIT in TRANSACTION commits and answers +OK but keeps the connection",
        ["seed.monstrvb-user-pass", "update.quit-commits", "seed.full-session"],
        ["seed.monstrvb-user-pass", "update.quit-commits", "seed.full-session"],
        QuitTransactionNoClose,
    ),
    F(
        "quit-auth-no-close",
        "QUIT in AUTHORIZATION answers +OK but keeps the connection",
        [
            "quit.*",
            "auth.quit-after-failed-pass",
            "auth.user-refusal-keeps-session",
            "lock.released-after-quit-in-authorization",
            "greeting.apop-timestamp-unique",
            "apop.replay",
            "seed.monstrvb-user-pass",
        ],
        [
            "quit.authorization",
            "quit.after-user-commits-nothing",
            "auth.quit-after-failed-pass",
            "auth.user-refusal-keeps-session",
            "lock.released-after-quit-in-authorization",
            "greeting.apop-timestamp-unique",
            "apop.replay",
        ],
        QuitAuthNoClose,
    ),
    F(
        "noop-err",
        "NOOP in TRANSACTION answers -ERR",
        ["noop.*", "args.retr-*", "args.top-*", "seed.kcope-top-one-argument"],
        ["noop.transaction", "noop.needs-crlf"],
        NoopErr,
    ),
    # numbers and arguments
    F(
        "zero-is-one",
        "message number 0 is taken as 1",
        ["list.zero", "args.retr-zero", "args.dele-zero", "uidl.zero", "top.message-zero"],
        ["list.zero", "args.retr-zero", "args.dele-zero", "uidl.zero", "top.message-zero"],
        ZeroIsOne,
    ),
    F(
        "number-wraps",
        "numbers wrap modulo 2**32 (4294967297 -> 1; 4294967296 -> 0 -> the last message)",
        ["args.*wraps*", "uidl.wraps-32bit"],
        [
            "args.list-wraps-32bit",
            "args.list-wraps-to-zero",
            "args.retr-wraps-32bit",
            "args.dele-wraps-32bit",
            "uidl.wraps-32bit",
        ],
        Wraps32,
    ),
    F(
        "number-wraps-64",
        "numbers wrap modulo 2**64 via the 32-bit rule too",
        ["args.list-wraps-64bit"],
        ["args.list-wraps-64bit"],
        Wraps32,
    ),
    F(
        "range-off-by-one",
        "message n+1 is answered (as message 1)",
        [
            "list.beyond-last",
            "args.*beyond-last",
            "top.beyond-last",
            "uidl.beyond-last",
            "seed.kcope-login-stat-list",
            "seed.monstrvb-transaction-examples",
            "seed.monstrvb-uidl",
            "seed.lowercase-session",
        ],
        [
            "list.beyond-last",
            "args.retr-beyond-last",
            "args.dele-beyond-last",
            "top.beyond-last",
            "uidl.beyond-last",
            "seed.kcope-login-stat-list",
            "seed.monstrvb-transaction-examples",
            "seed.monstrvb-uidl",
            "seed.lowercase-session",
        ],
        RangeOffByOne,
    ),
    F(
        "trailing-garbage",
        "DELE 1x acts on message 1; LIST -1 on message 1",
        [
            "args.*trailing-garbage",
            "args.list-negative",
            "args.dele-negative",
            "args.top-negative-count",
        ],
        [
            "args.dele-trailing-garbage",
            "args.list-trailing-garbage",
            "args.list-negative",
            "args.dele-negative",
        ],
        TrailingGarbage,
    ),
    F(
        "missing-args-accepted",
        "missing arguments default instead of -ERR (TOP n: n lines of message 1)",
        [
            "args.*-missing*",
            "auth.user-missing-argument",
            "state.pass-after-failed-user",
            "apop.missing-arguments",
            "seed.kcope-top-*",
        ],
        [
            "args.retr-missing",
            "args.dele-missing",
            "args.top-missing-count",
            "auth.user-missing-argument",
            "state.pass-after-failed-user",
            "apop.missing-arguments",
            "seed.kcope-top-one-argument",
            "seed.kcope-top-100",
        ],
        MissingArgsAccepted,
    ),
    F(
        "extra-args-ignored",
        "extra arguments are silently ignored",
        ["*extra-argument*"],
        [
            "stat.extra-argument",
            "list.extra-argument",
            "args.noop-extra-argument",
            "args.quit-extra-argument",
            "rset.extra-argument",
        ],
        ExtraArgsIgnored,
    ),
    F(
        "echo-number-token",
        "LIST 01 answers '+OK 01 size'",
        ["list.leading-zero"],
        ["list.leading-zero"],
        EchoNumberToken,
    ),
    F(
        "list-reversed",
        "the scan listing comes newest first",
        ["list.scan-listing"],
        ["list.scan-listing"],
        ListReversed,
    ),
    F(
        "list-single-disk-size",
        "LIST n reports the LF (on-disk) size, the listing the CRLF size",
        ["list.single-message"],
        ["list.single-message"],
        ListSingleDiskSize,
    ),
    F(
        "empty-list-two-terminators",
        "LIST on an empty maildrop sends '.' twice (missing return)",
        ["list.empty-maildrop"],
        ["list.empty-maildrop"],
        EmptyListTwoTerminators,
    ),
    F(
        "empty-maildrop-bugs",
        "an empty maildrop breaks STAT/LIST",
        ["list.empty-maildrop-one"],
        ["list.empty-maildrop-one"],
        EmptyMaildropBugs,
    ),
    F(
        "top-non-numeric",
        "TOP 1 x / TOP 1 -1 take the count leniently (as 10 lines)",
        ["args.top-*"],
        ["args.top-non-numeric-count", "args.top-negative-count"],
        TopLenientCount,
    ),
    # state machine
    F(
        "transaction-before-login",
        "transaction commands answered +OK before login",
        [
            "state.*before-login",
            "state.stat-after-user",
            "greeting.positive-first",
            "respcodes.*",
            "resp*",
        ],
        [
            "state.stat-before-login",
            "state.stat-after-user",
            "state.list-before-login",
            "state.list-arg-before-login",
            "state.retr-before-login",
            "state.dele-before-login",
            "state.rset-before-login",
            "state.top-before-login",
            "state.uidl-before-login",
            "state.uidl-arg-before-login",
            "state.last-before-login",
            "greeting.positive-first",
            "respcodes.advertised-when-used",
        ],
        TransactionCommandsBeforeLogin,
    ),
    F(
        "noop-before-login",
        "NOOP accepted in AUTHORIZATION",
        ["state.noop-before-login"],
        ["state.noop-before-login"],
        NoopBeforeLogin,
    ),
    F(
        "auth-in-transaction",
        "USER/PASS in TRANSACTION switch maildrops; APOP accepted",
        ["state.*-in-transaction"],
        ["state.user-in-transaction", "state.pass-in-transaction", "state.apop-in-transaction"],
        AuthInTransaction,
    ),
    F(
        "lax-pass-sequencing",
        "PASS without USER / after failure logs in; USER and APOP after USER",
        ["state.pass-*", "state.second-user", "state.apop-after-user"],
        [
            "state.pass-without-user",
            "state.pass-after-failed-pass",
            "state.second-user",
            "state.apop-after-user",
        ],
        LaxPassSequencing,
    ),
    F(
        "any-password",
        "every password is accepted",
        ["auth.*", "seed.monstrvb-user-unknown", "apop.pass-for-apop-user"],
        [
            "auth.wrong-password",
            "auth.user-unknown-name",
            "auth.pass-missing-argument",
            "seed.monstrvb-user-unknown",
        ],
        AnyPassword,
    ),
    F(
        "stuck-after-failed-pass",
        "after a failed PASS every command gets -ERR (QUIT too)",
        ["auth.retry-after-failed-pass", "auth.quit-after-failed-pass"],
        ["auth.retry-after-failed-pass", "auth.quit-after-failed-pass"],
        StuckAfterFailedPass,
    ),
    F(
        "refused-user-closes",
        "a refused USER closes the connection",
        ["auth.user-refusal-keeps-session"],
        ["auth.user-refusal-keeps-session"],
        RefusedUserCloses,
    ),
    F(
        "pass-with-space-hangs",
        "PASS with a space in it is never answered",
        ["auth.pass-with-space"],
        ["auth.pass-with-space"],
        PassWithSpaceHangs,
    ),
    F(
        "case-sensitive",
        "lower-case keywords are refused",
        ["auth.lowercase-commands", "seed.lowercase-session"],
        ["auth.lowercase-commands", "seed.lowercase-session"],
        CaseSensitive,
    ),
    F(
        "unknown-command-ok",
        "unknown keywords answered +OK",
        ["args.unknown-command-*"],
        ["args.unknown-command-authorization", "args.unknown-command-transaction"],
        UnknownCommandOk,
    ),
    F(
        "lenient-keywords",
        "STATS runs STAT; control characters and TABs are stripped",
        ["args.five-letter-keyword", "args.control-character", "args.trailing-tab"],
        ["args.five-letter-keyword", "args.control-character", "args.trailing-tab"],
        PrefixKeywords,
    ),
    F(
        "nul-truncates",
        "a NUL ends the command (DELE 1\\0x runs DELE 1)",
        ["args.nul-truncation"],
        ["args.nul-truncation"],
        NulTruncates,
    ),
    F(
        "empty-line-ignored",
        "an empty line gets no reply",
        ["args.empty-line"],
        ["args.empty-line"],
        EmptyLineIgnored,
    ),
    F(
        "acts-before-crlf",
        "a partial line is executed before its CRLF",
        ["noop.needs-crlf"],
        ["noop.needs-crlf"],
        ActsBeforeCrlf,
    ),
    F(
        "short-line-limit",
        "lines over 44 octets close the connection",
        ["auth.forty-char-argument", "capa.long-command-line"],
        ["auth.forty-char-argument", "capa.long-command-line"],
        ShortLineLimit,
    ),
    F(
        "chunked-long-lines",
        "an overlong line is executed in 200-octet pieces",
        ["capa.overlong-line-refused-whole"],
        ["capa.overlong-line-refused-whole"],
        ChunkedLongLines,
    ),
    F(
        "no-pipelining",
        "PIPELINING advertised but later commands of a write are dropped",
        ["pipelining.*"],
        ["pipelining.in-order", "pipelining.login", "pipelining.large-burst"],
        NoPipelining,
    ),
    # greeting and framing of status lines
    F(
        "greeting-err",
        "connection slots leak: from the 3rd connection on the greeting is -ERR",
        ["greeting.positive-first"],
        ["greeting.positive-first"],
        LeakedConnectionSlots,
    ),
    F(
        "greeting-two-lines",
        "an extra line follows the greeting",
        ["greeting.positive-first"],
        ["greeting.positive-first"],
        GreetingTwoLines,
    ),
    F(
        "greeting-angles",
        "the greeting has '<...>' besides the timestamp",
        ["greeting.rfc2449-grammar"],
        ["greeting.rfc2449-grammar"],
        GreetingAngles,
    ),
    F(
        "lowercase-status",
        "NOOP's status is '+ok' in lower case",
        ["noop.transaction", "auth.lowercase-commands"],
        ["noop.transaction", "auth.lowercase-commands"],
        LowercaseStatus,
    ),
    F(
        "status-without-crlf",
        "NOOP's '+OK' has no line end",
        ["noop.transaction"],
        ["noop.transaction"],
        StatusWithoutCrlf,
    ),
    F(
        "unsolicited-line",
        "DELE sends an extra line",
        ["dele.twice", "dele.marks-message"],
        ["dele.twice", "dele.marks-message"],
        UnsolicitedLine,
    ),
    # TOP
    F(
        "top-ignores-n",
        "TOP returns the whole message",
        ["top.*", "seed.monstrvb-top", "capa.top-works"],
        [
            "top.header-and-lines",
            "top.zero-lines",
            "seed.monstrvb-top",
            "capa.top-works",
            "top.dot-stuffing",
        ],
        TopIgnoresN,
    ),
    F(
        "top-zero-gives-body",
        "TOP n returns n+1 body lines (n=0 includes body)",
        ["top.zero-lines", "top.header-and-lines"],
        ["top.zero-lines", "top.header-and-lines"],
        TopZeroGivesBody,
    ),
    F(
        "top-drops-separator",
        "TOP drops the blank line between header and body",
        ["top.zero-lines", "top.header-and-lines"],
        ["top.zero-lines", "top.header-and-lines"],
        TopDropsSeparator,
    ),
    F(
        "top-unstuffed",
        "TOP output is not byte-stuffed",
        ["top.dot-stuffing"],
        ["top.dot-stuffing"],
        TopUnstuffed,
    ),
    F(
        "top-advertised-broken",
        "CAPA advertises TOP but TOP answers -ERR",
        ["capa.top-works", "top.header-and-lines"],
        ["capa.top-works", "top.header-and-lines"],
        TopBroken,
    ),
    # UIDL
    F(
        "uidl-unstable",
        "UIDs change between sessions",
        ["uidl.stable-*", "uidl.moves-with-message"],
        ["uidl.stable-across-sessions", "uidl.stable-after-drop"],
        UidlUnstable,
    ),
    F(
        "uidl-duplicates",
        "every message has the same UID",
        ["uidl.unique", "uidl.after-dele-and-rset"],
        ["uidl.unique"],
        UidlDuplicates,
    ),
    F(
        "uidl-bad-chars",
        "a UID longer than 70 octets",
        ["uidl.listing-format"],
        ["uidl.listing-format"],
        UidlBadChars,
    ),
    F(
        "uidl-single-differs",
        "UIDL n disagrees with the listing",
        ["uidl.single-message", "seed.monstrvb-uidl", "capa.uidl-works", "pipelining.in-order"],
        ["uidl.single-message", "seed.monstrvb-uidl", "capa.uidl-works"],
        UidlSingleDiffers,
    ),
    F(
        "uid-is-number",
        "the UID is derived from the message number",
        ["uidl.moves-with-message"],
        ["uidl.moves-with-message"],
        UidIsNumber,
    ),
    F(
        "uidl-advertised-broken",
        "CAPA advertises UIDL but UIDL answers -ERR",
        ["capa.uidl-works", "uidl.listing-format"],
        ["capa.uidl-works", "uidl.listing-format"],
        UidlAdvertisedBroken,
    ),
    # lock
    F(
        "no-lock",
        "no maildrop lock: a second session deletes under the first",
        ["lock.*", "auth.lock-held-after-login", "seed.monstrvb-maildrop-locked"],
        ["lock.second-session-cannot-remove"],
        store_lock=False,
    ),
    F(
        "lock-kept-after-drop",
        "a dropped connection never releases the lock",
        ["lock.released-after-drop"],
        ["lock.released-after-drop"],
        LockKeptAfterDrop,
    ),
    F(
        "lock-kept-after-drop-2",
        "a dropped connection never releases the lock (other accounts)",
        ["uidl.stable-after-drop", "dele.drop-commits-nothing"],
        ["uidl.stable-after-drop", "dele.drop-commits-nothing"],
        LockKeptAfterDrop,
    ),
    F(
        "lock-at-user-leaked",
        "USER takes the lock and QUIT before PASS leaks it",
        ["lock.released-after-quit-in-authorization", "quit.after-user-commits-nothing"],
        ["lock.released-after-quit-in-authorization", "quit.after-user-commits-nothing"],
        LockAtUser,
    ),
    F(
        "newest-login-wins",
        "a second login takes the maildrop from the live session (its view empties)",
        [
            "auth.lock-held-after-login",
            "seed.monstrvb-maildrop-locked",
            "lock.second-session-cannot-remove",
        ],
        [
            "auth.lock-held-after-login",
            "seed.monstrvb-maildrop-locked",
            "lock.second-session-cannot-remove",
        ],
        NewestLoginWins,
    ),
    F(
        "lock-leaked-on-clean-quit",
        "a QUIT that deleted nothing never releases the lock",
        ["lock.released-after-quit"],
        ["lock.released-after-quit"],
        LockLeakedOnCleanQuit,
    ),
    F(
        "locked-but-ok",
        "PASS on a locked maildrop answers +OK and a session that cannot work",
        ["lock.refusal-keeps-authorization", "auth.lock-held-after-login"],
        ["lock.refusal-keeps-authorization", "auth.lock-held-after-login"],
        LockedButOk,
    ),
    F(
        "in-use-for-wrong-password",
        "[IN-USE] sent for a wrong password",
        ["lock.in-use-not-for-wrong-password"],
        ["lock.in-use-not-for-wrong-password"],
        InUseForWrongPassword,
    ),
    F(
        "in-use-without-code",
        "a locked maildrop is refused without [IN-USE]",
        ["lock.in-use-code"],
        ["lock.in-use-code"],
        InUseWithoutCode,
    ),
    F(
        "bad-resp-codes",
        "malformed response codes",
        ["respcodes.*"],
        ["respcodes.failed-login-grammar", "respcodes.wrong-state-grammar"],
        BadRespCodes,
    ),
    F(
        "codes-without-resp-codes",
        "response codes sent but RESP-CODES not advertised",
        ["respcodes.advertised-when-used"],
        ["respcodes.advertised-when-used"],
        CodesWithoutRespCodes,
    ),
    # CAPA
    F(
        "bad-capa-listing",
        "dotted tag, bad EXPIRE, APOP tag, IMPLEMENTATION only before login",
        ["capa.*"],
        [
            "capa.authorization-listing",
            "capa.transaction-listing",
            "capa.parameter-formats",
            "capa.implementation-placement",
            "capa.both-states",
        ],
        BadCapaListing,
    ),
    F(
        "expire-space-missing",
        "CAPA announces 'EXPIRENEVER' (an unregistered tag) instead of 'EXPIRE NEVER'",
        ["capa.expire-never", "capa.parameter-formats"],
        ["capa.expire-never"],
        ExpireSpaceMissing,
    ),
    F(
        "capa-line-over-512",
        "a CAPA line of 600 octets (RFC 2449 limits each to 512 with CRLF)",
        ["capa.authorization-listing", "capa.transaction-listing"],
        ["capa.authorization-listing", "capa.transaction-listing"],
        OverlongCapaLine,
    ),
    F(
        "apop-tag-without-apop",
        "CAPA lists an APOP tag while the greeting has no timestamp (APOP off)",
        ["capa.no-apop-tag", "apop.not-offered-refused"],
        ["capa.no-apop-tag"],
        ApopTagWithoutApop,
        apop=False,
    ),
    F(
        "capa-transaction-drops-top",
        "TOP announced only before login",
        ["capa.both-states"],
        ["capa.both-states"],
        CapaTransactionDropsTop,
    ),
    F(
        "capa-unterminated",
        "the TRANSACTION-state CAPA listing has no '.' line",
        ["capa.transaction-listing"],
        ["capa.transaction-listing"],
        CapaUnterminated,
    ),
    F(
        "capa-argument-closes",
        "CAPA X closes the connection",
        ["capa.argument"],
        ["capa.argument"],
        CapaArgumentCloses,
    ),
    # LAST
    F(
        "last-broken",
        "LAST starts at 1, is the last (not highest) number, ignores DELE, survives RSET",
        ["last.*"],
        ["last.initial-zero", "last.retr-raises", "last.dele-raises", "last.rset-restores"],
        LastBroken,
    ),
    # APOP
    F(
        "apop-fixed-timestamp",
        "the APOP timestamp never changes",
        ["greeting.apop-timestamp-unique", "apop.replay"],
        ["greeting.apop-timestamp-unique", "apop.replay"],
        ApopFixedTimestamp,
    ),
    F(
        "apop-any-digest",
        "APOP accepts any digest",
        ["apop.wrong-digest", "apop.short-digest"],
        ["apop.wrong-digest", "apop.short-digest"],
        ApopAnyDigest,
    ),
    F(
        "apop-bad-timestamp",
        "the timestamp has no '@host' ('<pid.clock>' is not a msg-id)",
        ["greeting.apop-timestamp-msgid", "seed.rfc1939-example-session-apop", "apop.login"],
        ["greeting.apop-timestamp-msgid"],
        ApopBadTimestamp,
    ),
    F(
        "apop-broken-login",
        "APOP checks the digest against the latest greeting sent to anyone "
        "(a server-wide timestamp), so a connection greeted meanwhile breaks the login",
        ["apop.login", "seed.rfc1939-example-session-apop"],
        ["apop.login"],
        ApopServerWideTimestamp,
    ),
    F(
        "login-method-not-enforced",
        "APOP users may use PASS and PASS users APOP",
        ["apop.pass-for-apop-user", "apop.for-pass-user"],
        ["apop.pass-for-apop-user", "apop.for-pass-user"],
        LoginMethodNotEnforced,
    ),
    F(
        "apop-off-refuses-badly",
        "without APOP, APOP closes the connection without replying",
        ["apop.not-offered-refused"],
        ["apop.not-offered-refused"],
        ApopCloses,
        apop=False,
    ),
    # autologout (slow scenarios, short configured timer)
    F(
        "autologout-too-short",
        "the autologout fires after 2 s",
        [
            "autologout.not-before-ten-minutes",
            "autologout.not-before-ten-minutes-authorization",
            "autologout.activity-restarts-timer",
        ],
        [
            "autologout.not-before-ten-minutes",
            "autologout.not-before-ten-minutes-authorization",
            "autologout.activity-restarts-timer",
        ],
        autologout=2,
        slow=True,
    ),
    F(
        "commit-on-autologout",
        "the autologout runs UPDATE",
        ["autologout.closes-without-update"],
        ["autologout.closes-without-update"],
        CommitOnAutologout,
        autologout=2,
        slow=True,
    ),
    F(
        "noisy-logout",
        "the server sends a line before logging the client out",
        ["autologout.silent-close"],
        ["autologout.silent-close"],
        autologout=2,
        slow=True,
        extra={"farewell": True},
    ),
]

# The security category's faults (scenarios/pop3/security/).
from security_faults import SECURITY_FAULTS  # noqa: E402

FAULTS += SECURITY_FAULTS
FAULTS += __import__("corpus_faults").CORPUS_FAULTS  # issue 8: tests/corpus/corpus_faults.py

# --- STLS (RFC 2595 §4) and the command-injection class (issue 10) ------------------------------

from reference_server.pop3.protocol import Response  # noqa: E402
from reference_server.pop3.server import Pop3Server  # noqa: E402


class KeepsPipelinedAcrossTls(Pop3Session):
    """The STARTTLS injection bug: lines that arrived with STLS stay buffered
    and run inside TLS (here on the next data the client sends)."""

    def handle_line(self, line):
        buffered = bytes(self._pending)
        reply = super().handle_line(line)
        if self.tls_pending:
            self._kept_after_stls = buffered
        return reply

    def tls_started(self, **kwargs):
        super().tls_started(**kwargs)
        self._pending += getattr(self, "_kept_after_stls", b"")


class AnswersBufferedAfterHandshake(Pop3Server):
    """With KeepsPipelinedAcrossTls: the kept lines are answered right after
    the handshake, before the client says anything (the classic form)."""

    async def _start_tls(self, session, writer):
        await super()._start_tls(session, writer)
        if session.tls_active:
            for reply in session.replies():
                writer.write(reply)
            await writer.drain()


class AnswersPipelinedBeforeTls(Pop3Session):
    """+OK to STLS, then the next pipelined command is answered in plaintext
    before the TLS handshake starts (plaintext after +OK)."""

    def handle_line(self, line):
        if line.rstrip(b"\r").upper() == b"STLS" and not self.tls_active:
            self._stls_deferred = True
            return b"+OK begin TLS negotiation\r\n"
        reply = super().handle_line(line)
        if getattr(self, "_stls_deferred", False) and not self.closed:
            self._stls_deferred = False
            self.tls_pending = True
            self._pending.clear()
        return reply


class StlsAfterLogin(Pop3Session):
    """STLS accepted in TRANSACTION (the session-fixation precondition)."""

    allowed_commands: ClassVar = {
        **Pop3Session.allowed_commands,
        State.TRANSACTION: Pop3Session.allowed_commands[State.TRANSACTION] | {"STLS"},
    }

    def cmd_stls(self, args):
        if self.state is State.TRANSACTION:
            return Response(True, "begin TLS negotiation", start_tls=True)
        return super().cmd_stls(args)


class StlsTwice(Pop3Session):
    """A second STLS inside TLS answered +OK."""

    def cmd_stls(self, args):
        if self.tls_active:
            return ok("begin TLS negotiation")
        return super().cmd_stls(args)


class StlsListedInsideTls(Pop3Session):
    """CAPA keeps listing STLS inside TLS and after login."""

    def stls_offered(self):
        return self.config.stls_available


class StlsIgnoresArgument(Pop3Session):
    """'STLS now' starts TLS as if no argument had been given."""

    def cmd_stls(self, args):
        return super().cmd_stls([])


class UserSurvivesStls(Pop3Session):
    """A USER accepted in plaintext is still pending inside TLS."""

    def cmd_stls(self, args):
        kept = (self.state, self.user_name)
        reply = super().cmd_stls(args)
        self._user_before_stls = kept
        return reply

    def tls_started(self, **kwargs):
        super().tls_started(**kwargs)
        state, user = getattr(self, "_user_before_stls", (State.AUTHORIZATION, None))
        if user is not None:
            self.state, self.user_name = state, user


class PlaintextAfterStlsOk(Pop3Session):
    """A second plaintext line follows the +OK to STLS."""

    def cmd_stls(self, args):
        super().cmd_stls(args)  # its checks (state, TLS already active)
        return Response(True, "begin TLS negotiation\r\n+OK go ahead", start_tls=True)


class StatBeforeLoginInsideTls(Pop3Session):
    """Inside TLS, STAT works before any login (as if the handshake had
    authenticated the client)."""

    allowed_commands: ClassVar = {
        **Pop3Session.allowed_commands,
        State.AUTHORIZATION: Pop3Session.allowed_commands[State.AUTHORIZATION] | {"STAT"},
    }

    def cmd_stat(self, args):
        if self.state is State.AUTHORIZATION:
            if not self.tls_active:
                raise CommandError("STAT is not allowed in this state")
            return ok("0 0")
        return super().cmd_stat(args)


INJECTION_ONE_WRITE = [
    "stls.injection-capa",
    "stls.injection-noop",
    "stls.injection-user",
    "stls.injection-quit",
]
FAULTS += [
    F(
        "stls-injection-answered-inside-tls",
        "commands pipelined with STLS are answered inside TLS right after the handshake",
        ["stls.*"],
        INJECTION_ONE_WRITE,
        KeepsPipelinedAcrossTls,
        extra={"server": AnswersBufferedAfterHandshake},
    ),
    F(
        "stls-injection-run-on-next-command",
        "commands pipelined with STLS run inside TLS when the client next speaks",
        ["stls.injection-*"],
        INJECTION_ONE_WRITE,
        KeepsPipelinedAcrossTls,
    ),
    F(
        "stls-pipelined-answered-before-tls",
        "the command after STLS is answered in plaintext between +OK and the handshake",
        ["stls.injection-*"],
        [*INJECTION_ONE_WRITE, "stls.injection-split-writes"],
        AnswersPipelinedBeforeTls,
    ),
    F(
        "stls-after-login",
        "STLS is accepted in TRANSACTION",
        ["stls.refused-after-login"],
        ["stls.refused-after-login"],
        StlsAfterLogin,
    ),
    F(
        "stls-twice",
        "a second STLS inside TLS is answered +OK",
        ["stls.second-stls-refused"],
        ["stls.second-stls-refused"],
        StlsTwice,
    ),
    F(
        "stls-listed-inside-tls",
        "CAPA lists STLS inside TLS and after login",
        ["stls.capa-inside-tls-drops-stls", "stls.not-listed-after-login"],
        ["stls.capa-inside-tls-drops-stls", "stls.not-listed-after-login"],
        StlsListedInsideTls,
    ),
    F(
        "stls-ignores-argument",
        "'STLS now' starts TLS",
        ["stls.argument-refused"],
        ["stls.argument-refused"],
        StlsIgnoresArgument,
    ),
    F(
        "stls-keeps-user",
        "a USER from before STLS still counts inside TLS",
        ["stls.user-forgotten"],
        ["stls.user-forgotten"],
        UserSurvivesStls,
    ),
    F(
        "stls-plaintext-after-ok",
        "a plaintext line follows the +OK to STLS",
        ["stls.advertised-and-works"],
        ["stls.advertised-and-works"],
        PlaintextAfterStlsOk,
    ),
    F(
        "stls-stat-before-login",
        "inside TLS STAT is answered before any login",
        ["stls.stays-in-authorization"],
        ["stls.stays-in-authorization"],
        StatBeforeLoginInsideTls,
    ),
]


# --- SASL AUTH (RFC 5034, RFC 4616) ------------------------------------------------------------

import base64 as _base64  # noqa: E402

from conformance.core.fixture import load_fixture  # noqa: E402
from reference_server import sasl as _sasl  # noqa: E402
from reference_server.pop3.protocol import MAX_COMMAND_LINE_OCTETS, decode_base64  # noqa: E402


def _plain_fields(args):
    """(authzid, authcid, password) of an AUTH PLAIN initial response, or None."""
    if len(args) != 2 or args[0].upper() != "PLAIN":
        return None
    data = decode_base64(args[1].encode("ascii", "replace"))
    if data is None or data.count(b"\x00") != 2:
        return None
    return tuple(field.decode("utf-8", "replace") for field in data.split(b"\x00"))


class PlainRefusesAll(Pop3Session):
    """PLAIN is advertised but refuses even the right credentials."""

    def cmd_auth(self, args):
        if args and args[0].upper() == "PLAIN":
            raise CommandError("[AUTH] invalid user name or password")
        return super().cmd_auth(args)


class PlainAcceptsAnyPassword(Pop3Session):
    """PLAIN logs in an existing user whatever the password (even empty)."""

    def cmd_auth(self, args):
        fields = _plain_fields(args)
        if fields and self.users.secret_for(fields[1]) is not None:
            return self.open_maildrop(fields[1], method="AUTH-PLAIN")
        return super().cmd_auth(args)


class PlainUnknownUserAccepted(Pop3Session):
    """PLAIN for an unknown user opens the main account's maildrop (a catch-all)."""

    def cmd_auth(self, args):
        fields = _plain_fields(args)
        if fields and self.users.secret_for(fields[1]) is None:
            return self.open_maildrop(load_fixture().account("main").user, method="AUTH-PLAIN")
        return super().cmd_auth(args)


class PlainRefusesAuthzid(Pop3Session):
    """Any non-empty authzid is refused, even the user's own."""

    def cmd_auth(self, args):
        fields = _plain_fields(args)
        if fields and fields[0]:
            raise CommandError("[AUTH] not authorised to act as that user")
        return super().cmd_auth(args)


class _ProxyForAll:
    """A user directory where everyone may act as everyone."""

    def __init__(self, users):
        self._users = users

    def may_act_as(self, authcid, authzid):
        return True

    def __getattr__(self, name):
        return getattr(self._users, name)


class PlainProxyForAll(Pop3Session):
    """PLAIN lets any user act as any other (authzid not checked)."""

    def __init__(self, store, users, *args, **kwargs):
        super().__init__(store, _ProxyForAll(users), *args, **kwargs)


class PlainLenientParser(Pop3Session):
    """A PLAIN message with a single NUL is read as 'authcid NUL password'."""

    def cmd_auth(self, args):
        if len(args) == 2 and args[0].upper() == "PLAIN":
            data = decode_base64(args[1].encode("ascii", "replace")) or b""
            if data.count(b"\x00") == 1:
                user, _, password = data.decode("utf-8", "replace").partition("\x00")
                if self.users.secret_for(user) == password:
                    return self.open_maildrop(user, method="AUTH-PLAIN")
        return super().cmd_auth(args)


class LongSaslLineDrops(Pop3Session):
    """A SASL response longer than the command limit drops the connection."""

    def _sasl_response(self, line):
        if len(line) + 2 > MAX_COMMAND_LINE_OCTETS:
            self._close_without_update()
            return b""
        return super()._sasl_response(line)


class SaslShortLineLimit(Pop3Session):
    """SASL responses are held to the 255-octet command limit."""

    def line_limit(self):
        return MAX_COMMAND_LINE_OCTETS


class StarNotHonoured(Pop3Session):
    """'*' is taken as one more response: another challenge follows."""

    def _sasl_response(self, line):
        if line == b"*":
            return b"+ " + CRLF
        return super()._sasl_response(line)


class BadBase64Drops(Pop3Session):
    """Undecodable base64 (response or initial response) drops the connection."""

    def _sasl_response(self, line):
        if line != b"*" and decode_base64(line) is None:
            self._close_without_update()
            return b""
        return super()._sasl_response(line)

    def cmd_auth(self, args):
        if len(args) == 2 and args[1] != "=" and decode_base64(args[1].encode()) is None:
            self._close_without_update()
            return b""
        return super().cmd_auth(args)


class LenientBase64(Pop3Session):
    """Characters outside the alphabet and misplaced '=' are skipped."""

    def cmd_auth(self, args):
        if len(args) == 2 and args[1] != "=":
            kept = re.sub(r"[^A-Za-z0-9+/]", "", args[1])
            kept += "=" * (-len(kept) % 4)
            args = [args[0], _base64.b64encode(_base64.b64decode(kept)).decode()]
        return super().cmd_auth(args)


class EqualsAsAbsent(Pop3Session):
    """'AUTH PLAIN =' is taken as no initial response (a challenge follows)."""

    def cmd_auth(self, args):
        if len(args) == 2 and args[1] == "=":
            args = args[:1]
        return super().cmd_auth(args)


class UnknownMechanismAsPlain(Pop3Session):
    """Any mechanism name is run as PLAIN."""

    def cmd_auth(self, args):
        if args and args[0].upper() not in self.config.sasl_mechanisms:
            args = ["PLAIN", *args[1:]]
        return super().cmd_auth(args)


class MechanismCaseSensitive(Pop3Session):
    """Mechanism names are matched case-sensitively."""

    def cmd_auth(self, args):
        if args and args[0] != args[0].upper():
            raise CommandError("unsupported SASL mechanism")
        return super().cmd_auth(args)


class CramTakesInitialResponse(Pop3Session):
    """An initial response with CRAM-MD5 is ignored; the challenge follows."""

    def cmd_auth(self, args):
        if len(args) == 2 and args[0].upper() == "CRAM-MD5":
            args = args[:1]
        return super().cmd_auth(args)


class AuthInTransaction(Pop3Session):
    """AUTH after login answers +OK."""

    allowed_commands: ClassVar = {
        **Pop3Session.allowed_commands,
        State.TRANSACTION: Pop3Session.allowed_commands[State.TRANSACTION] | {"AUTH"},
    }

    def cmd_auth(self, args):
        if self.state is State.TRANSACTION:
            return ok("already authenticated")
        return super().cmd_auth(args)


class SaslHiddenAfterLogin(Pop3Session):
    """CAPA drops the SASL line once logged in."""

    def capabilities(self):
        listed = super().capabilities()
        if self.state is State.TRANSACTION:
            listed = [c for c in listed if not c.startswith("SASL")]
        return listed


class OnlyPasswordMechanisms(Pop3Session):
    """Only PLAIN and LOGIN are offered."""

    def capabilities(self):
        return ["SASL PLAIN LOGIN" if c.startswith("SASL") else c for c in super().capabilities()]


class MalformedChallenges(Pop3Session):
    """Challenges break RFC 5034 §4: an empty one is a lone '+', others
    carry text after the base64."""

    def _sasl_step(self, mechanism, step):
        reply = super()._sasl_step(mechanism, step)
        if isinstance(step, _sasl.Challenge):
            return b"+" + CRLF if not step.data else reply.rstrip(b"\r\n") + b" (base64)" + CRLF
        return reply


class LoginAcceptsAnyPassword(Pop3Session):
    """LOGIN takes any password for an existing user."""

    def _sasl_response(self, line):
        mechanism = self.sasl_exchange
        if isinstance(mechanism, _sasl.LoginMechanism) and mechanism.user is not None:
            if self.users.secret_for(mechanism.user) is not None:
                self._end_sasl()
                return self.open_maildrop(mechanism.user, method="AUTH-LOGIN")
        return super()._sasl_response(line)


class CramAcceptsAnyDigest(Pop3Session):
    """CRAM-MD5 takes any digest for an existing user."""

    def _sasl_response(self, line):
        if isinstance(self.sasl_exchange, _sasl.CramMd5Mechanism):
            user = (decode_base64(line) or b"").decode("utf-8", "replace").rpartition(" ")[0]
            if self.users.secret_for(user) is not None:
                self._end_sasl()
                return self.open_maildrop(user, method="AUTH-CRAM-MD5")
        return super()._sasl_response(line)


class ScramBadServerSignature(Pop3Session):
    """The SCRAM server-final message carries a signature that proves nothing."""

    def _sasl_step(self, mechanism, step):
        if isinstance(step, _sasl.Challenge) and step.data.startswith(b"v="):
            step = _sasl.Challenge(b"v=" + _base64.b64encode(b"\x00" * 32))
        return super()._sasl_step(mechanism, step)


class ScramAcceptsWrongProof(Pop3Session):
    """A wrong SCRAM proof is answered with a server-final challenge, not -ERR."""

    def _sasl_step(self, mechanism, step):
        if isinstance(mechanism, _sasl.ScramSha256Mechanism) and isinstance(step, _sasl.Refused):
            self.state = State.SASL
            self.sasl_exchange = mechanism
            return b"+ " + _base64.b64encode(b"v=" + _base64.b64encode(b"\x00" * 32)) + CRLF
        return super()._sasl_step(mechanism, step)


def _sasl_fault(name, description, scenarios, session, select=None):
    return F(name, description, select or scenarios, scenarios, session)


FAULTS += [
    _sasl_fault(
        "sasl-plain-broken",
        "PLAIN is advertised and refuses the right credentials",
        ["sasl.plain-initial-response", "sasl.mechanism-any-case", "sasl.plain-own-authzid"],
        PlainRefusesAll,
    ),
    _sasl_fault(
        "sasl-plain-any-password",
        "PLAIN accepts any password",
        ["sasl.plain-wrong-password", "sasl.plain-empty-password"],
        PlainAcceptsAnyPassword,
    ),
    _sasl_fault(
        "sasl-plain-unknown-user",
        "PLAIN for an unknown user logs in to another maildrop",
        ["sasl.plain-unknown-user"],
        PlainUnknownUserAccepted,
    ),
    _sasl_fault(
        "sasl-plain-refuses-own-authzid",
        "PLAIN refuses any authzid, even the user's own",
        ["sasl.plain-own-authzid"],
        PlainRefusesAuthzid,
    ),
    _sasl_fault(
        "sasl-plain-proxy-for-all",
        "PLAIN lets anyone act as anyone",
        ["sasl.plain-other-authzid-refused"],
        PlainProxyForAll,
    ),
    _sasl_fault(
        "sasl-plain-lenient-parser",
        "PLAIN accepts a message with one NUL",
        ["sasl.plain-malformed-message"],
        PlainLenientParser,
    ),
    _sasl_fault(
        "sasl-long-line-drops",
        "a SASL response over 255 octets drops the connection",
        ["sasl.plain-long-response"],
        LongSaslLineDrops,
    ),
    _sasl_fault(
        "sasl-short-line-limit",
        "SASL responses are limited to 255 octets like commands",
        ["sasl.plain-long-fields-are-credentials"],
        SaslShortLineLimit,
    ),
    _sasl_fault(
        "sasl-star-not-honoured",
        "'*' does not cancel the exchange",
        ["sasl.cancel-with-star"],
        StarNotHonoured,
    ),
    _sasl_fault(
        "sasl-bad-base64-drops",
        "undecodable base64 drops the connection instead of -ERR",
        ["sasl.bad-base64-response", "sasl.bad-base64-initial-response"],
        BadBase64Drops,
    ),
    _sasl_fault(
        "sasl-lenient-base64",
        "base64 decoding skips foreign characters and stray '='",
        ["sasl.base64-foreign-characters-rejected", "sasl.base64-early-padding-rejected"],
        LenientBase64,
    ),
    _sasl_fault(
        "sasl-equals-as-absent",
        "'=' is taken as no initial response",
        ["sasl.equals-is-empty-initial-response"],
        EqualsAsAbsent,
    ),
    _sasl_fault(
        "sasl-unknown-mechanism-as-plain",
        "an unknown mechanism runs as PLAIN",
        ["sasl.unknown-mechanism"],
        UnknownMechanismAsPlain,
    ),
    _sasl_fault(
        "sasl-mechanism-case-sensitive",
        "'auth plain' is refused",
        ["sasl.mechanism-any-case"],
        MechanismCaseSensitive,
    ),
    _sasl_fault(
        "sasl-cram-takes-initial-response",
        "CRAM-MD5 ignores an initial response instead of refusing it",
        ["sasl.initial-response-refused-for-server-first"],
        CramTakesInitialResponse,
    ),
    _sasl_fault(
        "sasl-auth-in-transaction",
        "AUTH after login answers +OK",
        ["sasl.refused-after-login", "sasl.second-auth-refused"],
        AuthInTransaction,
    ),
    _sasl_fault(
        "sasl-hidden-after-login",
        "CAPA drops SASL after login",
        ["sasl.second-auth-refused"],
        SaslHiddenAfterLogin,
    ),
    _sasl_fault(
        "sasl-password-mechanisms-only",
        "only PLAIN and LOGIN are offered",
        ["sasl.password-hiding-mechanism-offered"],
        OnlyPasswordMechanisms,
    ),
    _sasl_fault(
        "sasl-malformed-challenges",
        "challenges are a lone '+' or carry text after the base64",
        ["sasl.plain-empty-challenge", "sasl.login-mechanism", "sasl.cram-md5"],
        MalformedChallenges,
    ),
    _sasl_fault(
        "sasl-login-any-password",
        "LOGIN accepts any password",
        ["sasl.login-wrong-password"],
        LoginAcceptsAnyPassword,
    ),
    _sasl_fault(
        "sasl-cram-any-digest",
        "CRAM-MD5 accepts any digest",
        ["sasl.cram-md5-wrong-password"],
        CramAcceptsAnyDigest,
    ),
    _sasl_fault(
        "sasl-scram-bad-server-signature",
        "the SCRAM server signature does not prove the password",
        ["sasl.scram-sha-256"],
        ScramBadServerSignature,
    ),
    _sasl_fault(
        "sasl-scram-wrong-proof-accepted",
        "a wrong SCRAM proof is not refused",
        ["sasl.scram-sha-256-wrong-password"],
        ScramAcceptsWrongProof,
    ),
]


# --- response codes, LOGIN-DELAY, EXPIRE, UTF8/LANG, pop3s, cleartext policy (issue 10) ---------

import dataclasses as _dataclasses  # noqa: E402


class _ReplyRewrite(Pop3Session):
    """Faults that rewrite replies: `rewrite(line, reply) -> bytes`."""

    def handle_line(self, line):
        return self.rewrite(line, super().handle_line(line))

    def rewrite(self, line, reply):
        return reply


class AuthCodeMissing(_ReplyRewrite):
    """AUTH-RESP-CODE is advertised, failed logins carry no [AUTH]."""

    def rewrite(self, line, reply):
        return reply.replace(b"-ERR [AUTH] ", b"-ERR ")


class AuthCodeOnEverything(_ReplyRewrite):
    """Every refusal in TRANSACTION carries [AUTH]."""

    def rewrite(self, line, reply):
        if self.state is State.TRANSACTION and reply.startswith(b"-ERR ") and b"[" not in reply:
            return b"-ERR [AUTH] " + reply[5:]
        return reply


class UserRevealsUnknown(Pop3Session):
    """USER for an unknown name is refused with [AUTH]."""

    def cmd_user(self, args):
        if args and args[0] and self.users.secret_for(args[0]) is None:
            raise CommandError("[AUTH] no such user")
        return super().cmd_user(args)


class AuthCodeUnadvertised(Pop3Session):
    """[AUTH] is used but AUTH-RESP-CODE is not in CAPA."""

    def capabilities(self):
        return [c for c in super().capabilities() if c != "AUTH-RESP-CODE"]


class AuthCodeWithArgument(Pop3Session):
    """AUTH-RESP-CODE is listed with an argument, and only before login."""

    def capabilities(self):
        listed = super().capabilities()
        if self.state is State.TRANSACTION:
            return [c for c in listed if c != "AUTH-RESP-CODE"]
        return ["AUTH-RESP-CODE 1" if c == "AUTH-RESP-CODE" else c for c in listed]


class LoginDelayNotEnforced(Pop3Session):
    """LOGIN-DELAY 2 is advertised and never enforced."""

    def __init__(self, store, users, config=None, **kwargs):
        super().__init__(store, users, config, **kwargs)
        self.config = _dataclasses.replace(self.config, login_delay_seconds=0)

    def capabilities(self):
        listed = super().capabilities()
        return ["LOGIN-DELAY 2" if c.startswith("LOGIN-DELAY") else c for c in listed]


class LoginDelayGrowsAfterLogin(Pop3Session):
    """Before login LOGIN-DELAY 0, after it LOGIN-DELAY 5 (no USER token)."""

    def capabilities(self):
        value = "5" if self.state is State.TRANSACTION else "0"
        return [f"LOGIN-DELAY {value}" if c.startswith("LOGIN-DELAY") else c
                for c in super().capabilities()]  # fmt: skip


class ExpireShrinksAfterLogin(Pop3Session):
    """Before login EXPIRE NEVER, after it EXPIRE 5 (no USER token)."""

    def capabilities(self):
        value = "5" if self.state is State.TRANSACTION else "NEVER"
        return [f"EXPIRE {value}" if c.startswith("EXPIRE") else c for c in super().capabilities()]


class Utf8BreaksLogin(Pop3Session):
    """After UTF8, USER is refused."""

    def cmd_user(self, args):
        if self.utf8_mode:
            raise CommandError("not in UTF-8 mode")
        return super().cmd_user(args)


class Utf8AfterLogin(Pop3Session):
    """UTF8 is accepted in TRANSACTION."""

    allowed_commands: ClassVar = {
        **Pop3Session.allowed_commands,
        State.TRANSACTION: Pop3Session.allowed_commands[State.TRANSACTION] | {"UTF8"},
    }


class Utf8ModeMangles8bit(Pop3Session):
    """In UTF-8 mode, 8-bit octets of a message are sent as '?'."""

    def cmd_retr(self, args):
        reply = super().cmd_retr(args)
        if self.utf8_mode and reply.body is not None:
            reply = _dataclasses.replace(reply, body=re.sub(rb"[\x80-\xff]", b"?", reply.body))
        return reply


class LangListingWithoutTags(Pop3Session):
    """LANG lists language names without their tags."""

    def cmd_lang(self, args):
        if not args:
            return ok("languages", b"en_GB English\r\n")
        return super().cmd_lang(args)


class LangAnswersOtherTag(Pop3Session):
    """LANG <tag> answers with a tag other than the one chosen."""

    def cmd_lang(self, args):
        reply = super().cmd_lang(args)
        if args and reply.ok:
            return ok("i-default language changed")
        return reply


class LangAcceptsAnything(Pop3Session):
    """LANG with an unknown tag answers +OK."""

    def cmd_lang(self, args):
        if args and args[0] != "*":
            try:
                return super().cmd_lang(args)
            except CommandError:
                return ok("en language is now English")
        return super().cmd_lang(args)


class LangStarRefused(Pop3Session):
    """'LANG *' is refused."""

    def cmd_lang(self, args):
        if args == ["*"]:
            raise CommandError("no preferred language")
        return super().cmd_lang(args)


class CleartextRefusalReveals(Pop3Session):
    """TLS is required, but before TLS a right password is refused differently
    ([SYS/PERM]) from a wrong one ([AUTH])."""

    def cmd_user(self, args):
        if not self.tls_active and args and args[0]:
            self.user_name, self.state = args[0], State.USER_ACCEPTED
            return ok("send PASS")
        return super().cmd_user(args)

    def cmd_pass(self, args):
        if not self.tls_active:
            user, self.user_name, self.state = self.user_name, None, State.AUTHORIZATION
            if args and self.users.secret_for(user) == args[0]:
                raise CommandError("[SYS/PERM] use TLS for this account")
            raise CommandError("[AUTH] invalid user name or password")
        return super().cmd_pass(args)


FAULTS += [
    F("auth-code-missing", "AUTH-RESP-CODE advertised, failed logins without [AUTH]",
      ["authcode.*"],
      ["authcode.wrong-password", "authcode.sasl-wrong-password", "authcode.wrong-apop-digest"],
      AuthCodeMissing),
    F("auth-code-on-everything", "[AUTH] on refusals of ordinary commands",
      ["authcode.not-on-other-commands"], ["authcode.not-on-other-commands"],
      AuthCodeOnEverything),
    F("user-reveals-unknown", "USER for an unknown name answers -ERR [AUTH]",
      ["authcode.user-reveals-nothing"], ["authcode.user-reveals-nothing"], UserRevealsUnknown),
    F("auth-code-unadvertised", "[AUTH] used without AUTH-RESP-CODE in CAPA",
      ["authcode.advertised-when-used"], ["authcode.advertised-when-used"],
      AuthCodeUnadvertised),
    F("auth-code-with-argument", "AUTH-RESP-CODE listed with an argument, only before login",
      ["authcode.capa-both-states"], ["authcode.capa-both-states"], AuthCodeWithArgument),
    F("login-delay-not-enforced", "LOGIN-DELAY 2 advertised, never enforced",
      ["logindelay.enforced"], ["logindelay.enforced"], LoginDelayNotEnforced),
    F("login-delay-grows-after-login", "the pre-login LOGIN-DELAY is below the user's",
      ["logindelay.announcements"], ["logindelay.announcements"], LoginDelayGrowsAfterLogin),
    F("expire-shrinks-after-login", "the pre-login EXPIRE is above the user's",
      ["expire.announcements"], ["expire.announcements"], ExpireShrinksAfterLogin),
    F("utf8-breaks-login", "after UTF8, USER is refused",
      ["utf8.command-in-authorization"], ["utf8.command-in-authorization"], Utf8BreaksLogin),
    F("utf8-after-login", "UTF8 accepted in TRANSACTION",
      ["utf8.refused-after-login"], ["utf8.refused-after-login"], Utf8AfterLogin),
    F("utf8-mode-mangles-8bit", "in UTF-8 mode 8-bit octets are sent as '?'",
      ["utf8.messages-as-stored"], ["utf8.messages-as-stored"], Utf8ModeMangles8bit),
    F("lang-listing-without-tags", "the LANG listing has no language tags",
      ["lang.listing", "lang.select-listed"], ["lang.listing"], LangListingWithoutTags),
    F("lang-answers-other-tag", "LANG answers with another tag than the chosen one",
      ["lang.select-listed"], ["lang.select-listed"], LangAnswersOtherTag),
    F("lang-accepts-anything", "LANG with an unknown tag answers +OK",
      ["lang.unknown-refused"], ["lang.unknown-refused"], LangAcceptsAnything),
    F("lang-star-refused", "'LANG *' is refused",
      ["lang.star"], ["lang.star"], LangStarRefused),
    F("pop3s-stat-before-login", "on pop3s, STAT is answered before any login",
      ["pop3s.*"], ["pop3s.authorization-after-handshake"], StatBeforeLoginInsideTls,
      extra={"tls": "implicit"}),
    F("stls-advertised-handshake-broken", "STLS is advertised, plaintext follows its +OK",
      ["stls.works-when-advertised"], ["stls.works-when-advertised"], PlaintextAfterStlsOk),
    F("cleartext-refusal-reveals-password", "before TLS, a right password is refused differently",
      ["cleartext.*"], ["cleartext.refusal-reveals-nothing"], CleartextRefusalReveals,
      extra={"require_tls": True, "tls": "stls"}),
]  # fmt: skip


class PlainDropsBadUtf8(Pop3Session):
    """PLAIN fields are decoded dropping octets that are not UTF-8."""

    def cmd_auth(self, args):
        if len(args) == 2 and args[0].upper() == "PLAIN":
            data = decode_base64(args[1].encode("ascii", "replace"))
            if data is not None:
                cleaned = data.decode("utf-8", "ignore").encode("utf-8")
                args = [args[0], _base64.b64encode(cleaned).decode()]
        return super().cmd_auth(args)


class PlainStripsAuthzidControls(Pop3Session):
    """Control characters are stripped from the authzid before matching."""

    def cmd_auth(self, args):
        fields = _plain_fields(args)
        if fields:
            authzid = re.sub(r"[\x00-\x1f\x7f]", "", fields[0])
            message = f"{authzid}\x00{fields[1]}\x00{fields[2]}".encode()
            args = [args[0], _base64.b64encode(message).decode()]
        return super().cmd_auth(args)


class BareAuthDrops(Pop3Session):
    """AUTH without a mechanism drops the connection."""

    def cmd_auth(self, args):
        if not args:
            self._close_without_update()
            return b""
        return super().cmd_auth(args)


class PlainListedBeforeTls(Pop3Session):
    """TLS is required for logins, yet SASL PLAIN is listed before TLS."""

    def capabilities(self):
        listed = super().capabilities()
        if not self.tls_active and not any(c.startswith("SASL") for c in listed):
            listed.append("SASL PLAIN")
        return listed


class StlsAfterUtf8Coded(Pop3Session):
    """STLS after UTF8 is refused with a response code."""

    def cmd_stls(self, args):
        if self.utf8_mode:
            raise CommandError("[UTF8] STLS is not allowed after UTF8")
        return super().cmd_stls(args)


FAULTS += [
    F("sasl-plain-drops-bad-utf8", "PLAIN drops octets that are not UTF-8",
      ["sasl.plain-invalid-utf8"], ["sasl.plain-invalid-utf8"], PlainDropsBadUtf8),
    F("sasl-authzid-controls-stripped", "control characters are stripped from the authzid",
      ["sasl.authzid-prep-fails"], ["sasl.authzid-prep-fails"], PlainStripsAuthzidControls),
    F("sasl-bare-auth-drops", "AUTH without a mechanism drops the connection",
      ["sasl.bare-auth"], ["sasl.bare-auth"], BareAuthDrops),
    F("plain-listed-before-tls", "TLS required for logins, SASL PLAIN listed before TLS",
      ["cleartext.plain-not-before-tls"], ["cleartext.plain-not-before-tls"],
      PlainListedBeforeTls, extra={"require_tls": True, "tls": "stls"}),
    F("stls-after-utf8-coded", "STLS after UTF8 is refused with a response code",
      ["utf8.stls-after-utf8"], ["utf8.stls-after-utf8"], StlsAfterUtf8Coded),
]  # fmt: skip


class AbortsTls(Pop3Server):
    """Ends every connection by closing TCP under TLS, without close_notify."""

    async def _converse(self, session, reader, writer):
        await super()._converse(session, reader, writer)
        writer.transport.abort()


FAULTS += [
    F("pop3s-no-close-notify", "on pop3s, QUIT closes TCP without a TLS close_notify",
      ["pop3s.close-notify"], ["pop3s.close-notify"],
      extra={"tls": "implicit", "server": AbortsTls}),
]  # fmt: skip


class StlsNeverStartsTls(Pop3Session):
    """STLS answers +OK but the session stays in plaintext."""

    def cmd_stls(self, args):
        super().cmd_stls(args)  # its checks
        return ok("begin TLS negotiation")


FAULTS += [
    F("stls-never-starts-tls", "STLS answers +OK and the session stays plaintext",
      ["stls.plaintext-instead-of-handshake"], ["stls.plaintext-instead-of-handshake"],
      StlsNeverStartsTls),
]  # fmt: skip


class PlainAuthzidUnprepared(Pop3Session):
    """The PLAIN authzid is compared as sent, without SASLprep (RFC 4013): a
    soft hyphen inside the user's own name makes it another identity."""

    def cmd_auth(self, args):
        fields = _plain_fields(args)
        if fields and fields[0] and fields[0] != fields[1]:
            return err("[AUTH] not authorised to act as that user")
        return super().cmd_auth(args)


FAULTS += [
    F("sasl-authzid-unprepared", "the PLAIN authzid is compared without SASLprep",
      ["sasl.authzid-prepared"], ["sasl.authzid-prepared"], PlainAuthzidUnprepared),
]  # fmt: skip
