"""Faulty servers for the corpus side of issue 8 (attribution, verdict rules,
coverage), appended to `faults.FAULTS`, and conforming variants that the
corpus must pass (tests/corpus/test_corpus_faults.py).

A fault's `extra` may say more than "caught":
- `pinned`: {scenario id: requirement} -- the failure that decides the
  verdict names that requirement (issue 8 item 5: users fix what the report
  names);
- `verdict`: "FAIL" -- caught as FAIL, not WARN, whatever the scenario's
  level (silence is always a MUST finding).

faults.py imports this module at its end, so import `faults` (or `harness`)
first, as the tests do.
"""

from __future__ import annotations

import os
import re

from faults import Fault

from reference_server.pop3.protocol import CRLF, Pop3Session, State, err, ok
from reference_server.store.maildrop import MaildirMaildrop, StoredMessage

#: RFC 2449 section 4: the reference's command line limit, octets with CRLF.
COMMAND_LINE_LIMIT = 255

# --- sizes and content within a session (item 7) ------------------------------


class UidlRewritesMessages(Pop3Session):
    """Assigning unique-ids rewrites every message (an X-UIDL header), and
    LIST counts the rewritten copies."""

    def cmd_uidl(self, args):
        reply = super().cmd_uidl(args)
        if reply.ok:
            self.messages = [
                StoredMessage(m.location, m.uid, b"X-UIDL: " + m.uid.encode() + CRLF + m.content)
                if not m.content.startswith(b"X-UIDL: ")
                else m
                for m in self.messages
            ]
        return reply


class UidlRewritesContentOnly(UidlRewritesMessages):
    """As above, but LIST and STAT keep the sizes read at login."""

    _login_sizes: list[int] | None = None

    def octets(self, number):
        if self._login_sizes is None:  # first asked while opening the maildrop
            self._login_sizes = [len(m.content) for m in self.messages]
        return self._login_sizes[number - 1]


class TopTruncatesMessage(Pop3Session):
    """TOP caches the part it read, and RETR then serves the cached part."""

    def cmd_top(self, args):
        reply = super().cmd_top(args)
        if reply.ok:
            n = int(args[0])
            kept = self.messages[n - 1]
            self.messages[n - 1] = StoredMessage(kept.location, kept.uid, reply.body)
        return reply


class ReencodesEightBit(Pop3Session):
    """Message content is decoded as UTF-8 (what does not decode becomes
    U+FFFD) and sent re-encoded; LIST keeps the stored size."""

    @staticmethod
    def _reencoded(body):
        return body.decode("utf-8", errors="replace").encode("utf-8")

    def cmd_retr(self, args):
        reply = super().cmd_retr(args)
        return ok(reply.text, self._reencoded(reply.body)) if reply.ok else reply

    def cmd_top(self, args):
        reply = super().cmd_top(args)
        return ok(reply.text, self._reencoded(reply.body)) if reply.ok else reply


class UidFromDeliveryTime(MaildirMaildrop):
    """The unique-id is the delivery second (the Maildir name's timestamp):
    two messages delivered in the same second share one."""

    def load(self):
        return [
            StoredMessage(m.location, os.path.basename(m.location).split(".", 1)[0], m.content)
            for m in super().load()
        ]


# --- attribution: the examples of wrong pinning (item 5) --------------


class UidlListingWithoutNumbers(Pop3Session):
    def cmd_uidl(self, args):
        reply = super().cmd_uidl(args)
        if reply.ok and not args:
            lines = reply.body.split(CRLF)[:-1]
            return ok(reply.text, b"".join(line.split(b" ", 1)[1] + CRLF for line in lines))
        return reply


class ListListingWithoutNumbers(Pop3Session):
    def cmd_list(self, args):
        reply = super().cmd_list(args)
        if reply.ok and not args:
            lines = reply.body.split(CRLF)[:-1]
            return ok(reply.text, b"".join(line.split(b" ", 1)[1] + CRLF for line in lines))
        return reply


class LastIgnoresRetr(Pop3Session):
    def cmd_retr(self, args):
        saved = self.highest_accessed
        reply = super().cmd_retr(args)
        self.highest_accessed = saved
        return reply


class TopExtraBlankLine(Pop3Session):
    def cmd_top(self, args):
        reply = super().cmd_top(args)
        if reply.ok:
            return ok(reply.text, reply.body.replace(b"\r\n\r\n", b"\r\n\r\n\r\n", 1))
        return reply


class CountsLfLines(MaildirMaildrop):
    def octet_count(self, message):
        return len(message.content.replace(b"\r\n", b"\n"))


class CountsStuffingDots(MaildirMaildrop):
    def octet_count(self, message):
        return len(re.sub(rb"(?m)^\.", b"..", message.content))


# --- reply length with over-long arguments (item 7) ---------------------------


class _AnyLineLength(Pop3Session):
    """Executes command lines of any length (no 255-octet refusal)."""

    def replies(self):
        while not self.closed:
            newline = self._pending.find(b"\n")
            if newline < 0:
                return
            line = bytes(self._pending[:newline])
            del self._pending[: newline + 1]
            yield self.line_reply(line)

    def line_reply(self, line):
        return self.handle_line(line)


class EchoesLongArguments(_AnyLineLength):
    """A line over the limit is refused with the whole line echoed back."""

    def line_reply(self, line):
        if len(line) + 1 > COMMAND_LINE_LIMIT:
            return b"-ERR cannot handle: " + line.rstrip(b"\r") + CRLF
        return self.handle_line(line)


# --- RFC 3206 AUTH-RESP-CODE (item 6) ------------------------------------------


def _without_auth_code(reply):
    if not reply.ok and reply.text.startswith("[AUTH] "):
        return err(reply.text[len("[AUTH] ") :], close=reply.close)
    return reply


class NoAuthCode(Pop3Session):
    """AUTH-RESP-CODE advertised, but failed logins carry no [AUTH]."""

    def cmd_pass(self, args):
        return _without_auth_code(super().cmd_pass(args))

    def cmd_apop(self, args):
        return _without_auth_code(super().cmd_apop(args))


class AuthCodeOnUser(Pop3Session):
    """USER for an unknown name is refused with [AUTH] (tells who exists)."""

    def cmd_user(self, args):
        if args and self.users.secret_for(args[0]) is None:
            return err("[AUTH] no such user")
        return super().cmd_user(args)


class AuthCodeEverywhere(Pop3Session):
    """Every refusal carries [AUTH], also for commands that authenticate nothing."""

    def _refuse(self, text):
        return super()._refuse("[AUTH] " + text)

    def cmd_retr(self, args):
        reply = super().cmd_retr(args)
        return reply if reply.ok else err("[AUTH] " + reply.text)


# --- verdict rules: silence is always a finding (item 6) ----------------------


class SilentOnExtraArgument(Pop3Session):
    """NOOP with an argument gets no reply at all (the session stays open)."""

    def cmd_noop(self, args):
        return b"" if args else super().cmd_noop(args)


class ClosesInsteadOfRefusingSecondUser(Pop3Session):
    """A second USER closes the connection without the -ERR."""

    def _dispatch(self, line):
        if self.state is State.USER_ACCEPTED and line[:5].upper() == b"USER ":
            self._close_without_update()
            return b""
        return super()._dispatch(line)


# --- conforming variants: the corpus must pass them ---------------------------


class ClosesAfterFailedLogin(Pop3Session):
    """An abuse limit: -ERR, then close, after every failed PASS/APOP."""

    def cmd_pass(self, args):
        reply = super().cmd_pass(args)
        return reply if reply.ok else err(reply.text, close=True)

    def cmd_apop(self, args):
        reply = super().cmd_apop(args)
        return reply if reply.ok else err(reply.text, close=True)


class FarewellAfterFailedLogin(Pop3Session):
    """-ERR, one more -ERR line announcing the close, then close."""

    def _farewell(self, reply):
        if reply.ok:
            return reply
        self._close_without_update()
        return reply.to_bytes() + b"-ERR too many failures, goodbye" + CRLF

    def cmd_pass(self, args):
        return self._farewell(super().cmd_pass(args))

    def cmd_apop(self, args):
        return self._farewell(super().cmd_apop(args))


class ExecutesLongLinesWhole(_AnyLineLength):
    """Lines longer than the minimum are executed whole; NOOP ignores its
    argument (verdict-principles 16: conforms)."""

    def cmd_noop(self, args):
        return ok()


F = Fault
CORPUS_FAULTS: list[Fault] = [
    F(
        "uidl-rewrites-messages",
        "UIDL rewrites every message (an added X-UIDL header): sizes change within the session",
        ["sizes.same-after-uidl"],
        ["sizes.same-after-uidl"],
        UidlRewritesMessages,
        extra={"pinned": {"sizes.same-after-uidl": "POP3-1939-MSGNUM-04"}},
    ),
    F(
        "uidl-rewrites-content",
        "UIDL rewrites every message while LIST keeps the login sizes: RETR changes",
        ["sizes.same-after-uidl"],
        ["sizes.same-after-uidl"],
        UidlRewritesContentOnly,
        extra={"pinned": {"sizes.same-after-uidl": "POP3-1939-RETR-06"}},
    ),
    F(
        "top-truncates-retr",
        "TOP caches the part it read and RETR serves that part",
        ["sizes.same-after-top"],
        ["sizes.same-after-top"],
        TopTruncatesMessage,
        extra={"pinned": {"sizes.same-after-top": "POP3-1939-RETR-06"}},
    ),
    F(
        "reencodes-8bit",
        "RETR and TOP decode content as UTF-8 and re-encode it (KOI8-R turns into U+FFFD)",
        ["retr.*", "sizes.*", "top.*"],
        ["retr.legacy-charset-body", "retr.legacy-charset-top", "sizes.list-matches-retr"],
        ReencodesEightBit,
        extra={
            "pinned": {
                "retr.legacy-charset-body": "POP3-1939-RETR-01",
                "retr.legacy-charset-top": "POP3-1939-TOP-04",
                "sizes.list-matches-retr": "POP3-1939-SIZE-01",
            }
        },
    ),
    F(
        "uid-from-delivery-time",
        "the UID is the delivery second: messages 8 and 9 (same second) share one",
        ["uidl.*", "capa.uidl-works"],
        ["uidl.unique"],
        maildrop=UidFromDeliveryTime,
        extra={"pinned": {"uidl.unique": "POP3-1939-UIDL-07"}},
    ),
    F(
        "uidl-listing-without-numbers",
        "UIDL lists bare unique-ids, without message numbers",
        ["capa.uidl-works", "uidl.*"],
        ["capa.uidl-works", "uidl.listing-format"],
        UidlListingWithoutNumbers,
        extra={
            "pinned": {
                "capa.uidl-works": "POP3-1939-UIDL-04",
                "uidl.listing-format": "POP3-1939-UIDL-04",
                "uidl.unique": "POP3-1939-UIDL-04",
                "uidl.single-message": "POP3-1939-UIDL-04",
                "uidl.stable-across-sessions": "POP3-1939-UIDL-04",
                "uidl.stable-after-drop": "POP3-1939-UIDL-04",
                "uidl.after-dele-and-rset": "POP3-1939-UIDL-04",
                "uidl.moves-with-message": "POP3-1939-UIDL-04",
            }
        },
    ),
    F(
        "list-listing-without-numbers",
        "LIST lists bare sizes, without message numbers",
        ["list.*", "stat.*", "sizes.*", "seed.rfc1939-example-session-apop"],
        ["list.scan-listing", "list.single-message", "stat.drop-listing"],
        ListListingWithoutNumbers,
        extra={
            "pinned": {
                "list.scan-listing": "POP3-1939-LIST-03",
                "list.excludes-deleted": "POP3-1939-LIST-03",
                "list.fixed-during-session": "POP3-1939-LIST-03",
                "stat.drop-listing": "POP3-1939-LIST-03",
                "sizes.list-matches-retr": "POP3-1939-LIST-03",
                "seed.rfc1939-example-session-apop": "POP3-1939-LIST-03",
            }
        },
    ),
    F(
        "last-ignores-retr",
        "LAST does not move when a message is retrieved",
        ["last.*"],
        ["last.retr-raises", "last.rset-restores"],
        LastIgnoresRetr,
        extra={
            "pinned": {
                "last.retr-raises": "POP3-1225-LAST-04",
                "last.rset-restores": "POP3-1225-LAST-04",
            }
        },
    ),
    F(
        "top-extra-blank-line",
        "TOP sends an extra blank line after the header",
        ["top.*"],
        ["top.header-and-lines", "top.dot-stuffing"],
        TopExtraBlankLine,
        extra={
            "pinned": {
                "top.header-and-lines": "POP3-1939-TOP-02",
                "top.dot-stuffing": "POP3-1939-TOP-02",
            }
        },
    ),
    F(
        "sizes-count-lf",
        "LIST and STAT count LF line ends as one octet",
        ["sizes.*", "seed.*"],
        ["sizes.list-matches-retr", "sizes.dot-lines-not-counted"],
        maildrop=CountsLfLines,
        extra={
            "pinned": {
                # a size finding, not a byte-stuffing one (issue 8)
                "sizes.list-matches-retr": "POP3-1939-SIZE-01",
                "sizes.dot-lines-not-counted": "POP3-1939-SIZE-01",
                "sizes.bare-lf-counted-as-crlf": "POP3-1939-SIZE-01",
                "seed.kcope-noop-retr-dele-rset-quit": "POP3-1939-SIZE-01",
                "seed.monstrvb-transaction-examples": "POP3-1939-SIZE-01",
                "seed.full-session": "POP3-1939-SIZE-01",
                "seed.rfc1939-example-session-apop": "POP3-1939-SIZE-01",
            }
        },
    ),
    F(
        "sizes-count-stuffing",
        "LIST and STAT count the stuffing dots",
        ["sizes.dot-lines-not-counted", "sizes.list-matches-retr"],
        ["sizes.dot-lines-not-counted", "sizes.list-matches-retr"],
        maildrop=CountsStuffingDots,
        extra={
            "pinned": {
                "sizes.dot-lines-not-counted": "POP3-1939-SIZE-02",
                "sizes.list-matches-retr": "POP3-1939-SIZE-02",
            }
        },
    ),
    F(
        "echoes-long-arguments",
        "a line over 255 octets is refused with the line echoed (reply lines over 512 octets)",
        ["long-args.*", "capa.overlong-line-refused-whole"],
        [
            "long-args.user",
            "long-args.pass",
            "long-args.apop",
            "long-args.list",
            "long-args.retr",
            "long-args.dele",
            "long-args.top",
            "long-args.uidl",
            "long-args.unknown-command",
        ],
        EchoesLongArguments,
        extra={"pinned": {"long-args.list": "POP3-1939-RESP-02"}},
    ),
    F(
        "no-auth-code",
        "AUTH-RESP-CODE advertised, but failed PASS and APOP carry no [AUTH]",
        ["authcode.*"],
        ["authcode.wrong-password", "authcode.unknown-user", "authcode.wrong-apop-digest"],
        NoAuthCode,
        extra={
            "pinned": {
                "authcode.wrong-password": "POP3-3206-CAPA-02",
                "authcode.wrong-apop-digest": "POP3-3206-CAPA-02",
            }
        },
    ),
    F(
        "auth-code-on-user",
        "USER for an unknown name is refused with [AUTH]",
        ["authcode.not-on-user"],
        ["authcode.not-on-user"],
        AuthCodeOnUser,
    ),
    F(
        "auth-code-everywhere",
        "refusals of STAT and RETR carry [AUTH]",
        ["authcode.only-on-authentication"],
        ["authcode.only-on-authentication"],
        AuthCodeEverywhere,
    ),
    F(
        "silent-on-extra-argument",
        "NOOP with an argument is never answered (the connection stays open)",
        ["args.noop-extra-argument"],
        ["args.noop-extra-argument"],
        SilentOnExtraArgument,
        extra={"verdict": "FAIL"},  # a SHOULD scenario: silence is still a MUST finding
    ),
    F(
        "closes-instead-of-refusing",
        "a second USER closes the connection instead of answering -ERR",
        ["state.second-user"],
        ["state.second-user"],
        ClosesInsteadOfRefusingSecondUser,
        extra={"verdict": "FAIL"},  # or_close allows a close after the -ERR, not instead of it
    ),
]

#: Servers that behave in allowed ways the corpus must not fail (nor ERROR).
LOGIN_FAILURE_SCENARIOS = [
    "auth.*",
    "apop.*",
    "authcode.*",
    "state.pass-*",
    "state.user-in-transaction",
    "state.apop-*",
    "lock.*",  # a second login refused [IN-USE] may be followed by a close too
    "seed.monstrvb-maildrop-locked",
    "respcodes.*",
    "seed.monstrvb-user-unknown",
    "long-args.pass",
    "long-args.apop",
]
CONFORMING_VARIANTS: list[Fault] = [
    F(
        "closes-after-failed-login",
        "closes the connection after answering a failed PASS/APOP",
        LOGIN_FAILURE_SCENARIOS,
        [],
        ClosesAfterFailedLogin,
    ),
    F(
        "farewell-after-failed-login",
        "sends one more -ERR line and closes after a failed PASS/APOP",
        LOGIN_FAILURE_SCENARIOS,
        [],
        FarewellAfterFailedLogin,
    ),
    F(
        "executes-long-lines-whole",
        "executes command lines of any length whole (NOOP <4000 octets> -> +OK)",
        ["long-args.*", "capa.overlong-line-refused-whole", "capa.long-command-line"],
        [],
        ExecutesLongLinesWhole,
    ),
]
