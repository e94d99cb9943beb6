"""Faulty POP3 servers for the verdict model (issue 8, "A gate you can
trust"), built on the reference server's extension seam the way faults.py
builds its faults: a `Pop3Session` or `MaildirMaildrop` subclass per
misbehaviour, wrapped in a `Fault` that `harness.start` can serve.

faults.py asks "is this bug caught at all?"; test_verdict_trust.py asks
"does the verdict land on the scenario and the requirement at fault, with
the exit code a CI gate needs?". Each fault here is the misbehaviour of a
deployed server that the old verdict model misjudged (issue 8, "Why").
The shipped reference server stays correct.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from pathlib import Path

from faults import Fault

from reference_server.pop3.protocol import (
    CRLF,
    CommandError,
    LoginMethod,
    Pop3Session,
    Reply,
    State,
    err,
    ok,
)
from reference_server.store.maildrop import MaildirMaildrop, StoredMessage

# --- sizes --------------------------------------------------------------------------


class LfOctets(MaildirMaildrop):
    """Counts a message's octets with LF line ends (a Unix mailbox's size),
    where RFC 1939 §11 counts the CRLF form the server sends: STAT, LIST
    and the RETR '+OK n octets' all come out short by one per line."""

    def octet_count(self, message: StoredMessage) -> int:
        return len(message.content.replace(CRLF, b"\n"))


# --- deletion -------------------------------------------------------------------


class DeleAtOnce(Pop3Session):
    """DELE removes the message from the store at once, not at UPDATE
    (RFC 1939 §6, §8: DELE only marks; nothing is removed unless QUIT
    from TRANSACTION commits). The session itself still shows it marked."""

    def cmd_dele(self, args: list[str]) -> Reply:
        reply = super().cmd_dele(args)
        if isinstance(reply, bytes) or not reply.ok:
            return reply
        assert self.maildrop is not None
        self.maildrop.commit([self.message(int(args[0]))])
        return reply


# --- the maildrop between sessions ----------------------------------------------------

_SESSIONS = itertools.count(1)


class UidsChangeEverySession(Pop3Session):
    """Unique-ids carry a per-session tag, so no two sessions agree (RFC
    1939 §7 UIDL: a unique-id persists across sessions). One defect of the
    server, which uidl.stable-across-sessions exists to judge."""

    def open_maildrop(self, user: str, *, method: str) -> Reply:
        reply = super().open_maildrop(user, method=method)
        tag = next(_SESSIONS)
        self.messages = [
            StoredMessage(m.location, f"{m.uid}.{tag}", m.content) for m in self.messages
        ]
        return reply


class StatusHeaderAtUpdate(Pop3Session):
    """At UPDATE, writes a 'Status: RO' header into each message the session
    retrieved, as mbox-era servers do: the maildrop keeps its messages and
    unique-ids, only their sizes grow."""

    def enter_update(self) -> Reply:
        reply = super().enter_update()
        for number in sorted(self.retrieved - self.deleted):
            path = Path(self.message(number).location)
            try:
                raw = path.read_bytes()
                if not raw.startswith(b"Status: RO"):
                    path.write_bytes(b"Status: RO" + CRLF + raw)
            except OSError:
                pass
        return reply


# --- APOP ------------------------------------------------------------------------


class ApopDigestWrong(Pop3Session):
    """Checks the APOP digest over secret + timestamp (the wrong order;
    RFC 1939 §7 says MD5(timestamp + secret)), so every correct digest is
    refused. Set-up cannot log in to the APOP account either: the old model
    called that 'cannot log in' (ERROR); it is a FAIL of AUTH-APOP-04."""

    def cmd_apop(self, args: list[str]) -> Reply:
        if self.apop_timestamp is None or len(args) != 2:
            return super().cmd_apop(args)
        user, digest = args
        secret = self.users.secret_for(user)
        if secret is None or self.users.method_for(user) is not LoginMethod.APOP:
            return super().cmd_apop(args)
        wrong = hashlib.md5((secret + self.apop_timestamp).encode(), usedforsecurity=False)
        if not hmac.compare_digest(wrong.hexdigest(), digest.lower()):
            return err("[AUTH] invalid user name or digest")
        return self.open_maildrop(user, method="APOP")


# --- multi-line framing ------------------------------------------------------------


class EmptyListUnterminated(Pop3Session):
    """LIST on an empty maildrop sends '+OK' and never the '.' line
    (RFC 1939 §3: every multi-line reply ends with one). Old set-up read
    that LIST itself and hung; the scenario meant to catch it never ran."""

    def cmd_list(self, args: list[str]) -> Reply:
        reply = super().cmd_list(args)
        if args or isinstance(reply, bytes) or not reply.ok or self.live_numbers():
            return reply
        return b"+OK 0 messages (0 octets)" + CRLF


# --- findings the old model pinned on the wrong requirement -----------------------


class UidlWithoutNumbers(Pop3Session):
    """The UIDL listing gives '<uid>' lines without the message number
    (RFC 1939 §7 UIDL: each line is 'msg-number unique-id'). The old model
    reported it as a CAPA failure when seen in capa.uidl-works."""

    def cmd_uidl(self, args: list[str]) -> Reply:
        reply = super().cmd_uidl(args)
        if args or isinstance(reply, bytes) or not reply.ok or reply.body is None:
            return reply
        lines = [line.split(b" ", 1)[1] for line in reply.body.split(CRLF) if line]
        return ok(reply.text, b"".join(line + CRLF for line in lines))


class LastIgnoresRetr(Pop3Session):
    """RETR does not raise LAST (RFC 1225 LAST: the highest number
    accessed, RETR included); DELE still does. The old model reported it
    as an RSET failure."""

    def cmd_retr(self, args: list[str]) -> Reply:
        before = self.highest_accessed
        reply = super().cmd_retr(args)
        self.highest_accessed = before
        return reply


class TopExtraBlankLine(Pop3Session):
    """TOP sends one blank line too many after the header/body separator
    (RFC 1939 §7 TOP: the header, the blank line, then n body lines). The
    old model reported it as a byte-stuffing failure."""

    def cmd_top(self, args: list[str]) -> Reply:
        reply = super().cmd_top(args)
        if isinstance(reply, bytes) or not reply.ok or reply.body is None:
            return reply
        body = reply.body.replace(CRLF + CRLF, CRLF + CRLF + CRLF, 1)
        return ok(reply.text, body)


# --- silence ---------------------------------------------------------------------


class NoopSilent(Pop3Session):
    """NOOP gets no reply at all, in any state, and the connection stays
    open (a handler that forgets to answer). Silence is a finding whatever
    the scenario's level (verdict-principles, "always a finding")."""

    def cmd_noop(self, args: list[str]) -> Reply:
        return b""


class LastSilent(Pop3Session):
    """LAST gets no reply and the connection stays open. The capability
    probe must not take that for a refusal (verdict-principles 5 lets a
    server refuse LAST with '-ERR', not ignore it)."""

    def cmd_last(self, args: list[str]) -> Reply:
        return b""


class CapaSilent(Pop3Session):
    """CAPA gets no reply and the connection stays open; a server without
    CAPA must still answer '-ERR' (RFC 2449 §5, RFC 1939 §3)."""

    def cmd_capa(self, args: list[str]) -> Reply:
        return b""


class ClosesInsteadOfRefusing(Pop3Session):
    """USER, PASS or APOP after login closes the connection without the
    '-ERR' (RFC 1939 §4, §7: refused in TRANSACTION). `or_close` allows a
    close after the refusal, never instead of it."""

    def handle_line(self, line: bytes) -> bytes:
        keyword = line.split(b" ", 1)[0].upper()
        if self.state is State.TRANSACTION and keyword in (b"USER", b"PASS", b"APOP"):
            self._close_without_update()
            return b""
        return super().handle_line(line)


class ClosesAfterRefusedLogin(Pop3Session):
    """A refused PASS or APOP is answered '-ERR' and then the connection is
    closed: an allowed abuse limit (verdict-principles 3), so every
    scenario that goes on after such a refusal must still PASS."""

    def cmd_pass(self, args: list[str]) -> Reply:
        return self._closing(super().cmd_pass, args)

    def cmd_apop(self, args: list[str]) -> Reply:
        return self._closing(super().cmd_apop, args)

    def _closing(self, handler, args: list[str]) -> Reply:  # type: ignore[no-untyped-def]
        try:
            reply = handler(args)
        except CommandError as refusal:
            return err(str(refusal), close=True)
        if isinstance(reply, bytes) or reply.ok:
            return reply
        return err(reply.text, close=True)


# --- lines longer than the minimum, RFC 3206 codes ------------------------------------

#: How long a line WholeLongLines still executes whole (far above RFC 2449 §4's 255).
WHOLE_LINE_LIMIT = 65536


class WholeLongLines(Pop3Session):
    """Executes command lines of up to 64 KiB whole, and answers NOOP '+OK'
    whatever its arguments: 'NOOP <4000 octets>' gets one '+OK'. Longer
    than the minimum and executed whole conforms (verdict-principles 16)."""

    def replies(self):  # type: ignore[no-untyped-def]
        while not self.closed:
            newline = self._pending.find(b"\n")
            if newline < 0:
                if len(self._pending) > WHOLE_LINE_LIMIT:
                    self._pending.clear()
                return
            line = bytes(self._pending[:newline])
            del self._pending[: newline + 1]
            yield self.handle_line(line)

    def cmd_noop(self, args: list[str]) -> Reply:
        return ok()


class AuthCodeMissing(Pop3Session):
    """Advertises AUTH-RESP-CODE but refuses a wrong password without
    '[AUTH]' (RFC 3206 §4: with AUTH-RESP-CODE announced, every credential
    failure carries it)."""

    def cmd_pass(self, args: list[str]) -> Reply:
        reply = super().cmd_pass(args)
        if isinstance(reply, bytes) or reply.ok or not reply.text.startswith("[AUTH]"):
            return reply
        return err("invalid user name or password")


F = Fault
LF_OCTETS = F("verdict-lf-octets", "sizes counted with LF line ends", ["*"], [], maildrop=LfOctets)
DELE_AT_ONCE = F("verdict-dele-at-once", "DELE removes at once", ["*"], [], DeleAtOnce)
UIDS_CHANGE_EVERY_SESSION = F(
    "verdict-uids-change-every-session",
    "unique-ids differ in every session",
    ["*"],
    [],
    UidsChangeEverySession,
)
STATUS_HEADER_AT_UPDATE = F(
    "verdict-status-header-at-update",
    "a Status: header written into retrieved messages at UPDATE",
    ["*"],
    [],
    StatusHeaderAtUpdate,
)
APOP_DIGEST_WRONG = F(
    "verdict-apop-digest-wrong", "APOP digest checked wrongly", ["apop.*"], [], ApopDigestWrong
)
EMPTY_LIST_UNTERMINATED = F(
    "verdict-empty-list-unterminated",
    "empty LIST without terminator",
    ["list.*"],
    [],
    EmptyListUnterminated,
)
UIDL_WITHOUT_NUMBERS = F(
    "verdict-uidl-without-numbers", "UIDL lines lack numbers", ["capa.*"], [], UidlWithoutNumbers
)
LAST_IGNORES_RETR = F(
    "verdict-last-ignores-retr", "RETR leaves LAST alone", ["last.*", "rset.*"], [], LastIgnoresRetr
)
TOP_EXTRA_BLANK_LINE = F(
    "verdict-top-extra-blank-line", "TOP adds a blank line", ["top.*"], [], TopExtraBlankLine
)
NOOP_SILENT = F("verdict-noop-silent", "NOOP never answered", ["*"], [], NoopSilent)
LAST_SILENT = F("verdict-last-silent", "LAST never answered", ["last.*"], [], LastSilent)
CAPA_SILENT = F("verdict-capa-silent", "CAPA never answered", ["capa.*"], [], CapaSilent)
CLOSES_INSTEAD_OF_REFUSING = F(
    "verdict-closes-instead-of-refusing",
    "close instead of -ERR",
    ["state.*"],
    [],
    ClosesInsteadOfRefusing,
)
CLOSES_AFTER_REFUSED_LOGIN = F(
    "verdict-closes-after-refused-login",
    "close after a refused PASS/APOP",
    ["*"],
    [],
    ClosesAfterRefusedLogin,
)
WHOLE_LONG_LINES = F(
    "verdict-whole-long-lines", "long lines executed whole", ["capa.*line*"], [], WholeLongLines
)
AUTH_CODE_MISSING = F(
    "verdict-auth-code-missing", "no [AUTH] on a failed PASS", ["*"], [], AuthCodeMissing
)

VERDICT_FAULTS = {
    fault.name: fault
    for fault in (
        LF_OCTETS,
        DELE_AT_ONCE,
        UIDS_CHANGE_EVERY_SESSION,
        STATUS_HEADER_AT_UPDATE,
        APOP_DIGEST_WRONG,
        EMPTY_LIST_UNTERMINATED,
        UIDL_WITHOUT_NUMBERS,
        LAST_IGNORES_RETR,
        TOP_EXTRA_BLANK_LINE,
        NOOP_SILENT,
        LAST_SILENT,
        CAPA_SILENT,
        CLOSES_INSTEAD_OF_REFUSING,
        CLOSES_AFTER_REFUSED_LOGIN,
        WHOLE_LONG_LINES,
        AUTH_CODE_MISSING,
    )
}
