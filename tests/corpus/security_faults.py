"""Faulty servers for the security category (scenarios/pop3/security/):
each reproduces a public bug class of the security catalogue, so every
security scenario is seen failing for its reason. Registered in FAULTS by
one line at the end of faults.py."""

from __future__ import annotations

from faults import (
    AuthInTransaction,
    CommitOnDrop,
    Fault,
    NulTruncates,
    TransactionCommandsBeforeLogin,
    Wraps32,
    ZeroIsOne,
    _base_receive,
    _ReceiveFault,
)

from reference_server.pop3.protocol import CommandError, Pop3Session, err

CRASH_LINE_OCTETS = 1000


class _Crash:
    """What a crash looks like from the wire: the connection ends, no reply."""

    @staticmethod
    def now(session: Pop3Session) -> bytes:
        session._close_without_update()
        return b""


class SilentOnLongLine(_ReceiveFault):
    """Overflows (and dies) on a line of a kilobyte or more, or on that many
    octets without a line end (Snort 1866 class)."""

    def fault_receive(self, data):
        self._seen = getattr(self, "_seen", b"") + data
        if any(len(line) > CRASH_LINE_OCTETS for line in self._seen.split(b"\n")):
            return _Crash.now(self)
        self._seen = self._seen.rpartition(b"\n")[2]
        return _base_receive(self, data)


class CutsLongLines(_ReceiveFault):
    """Reads lines into a 128-octet buffer and runs what is left over as the
    next command (the 'overlong tail' class)."""

    def fault_receive(self, data):
        out = bytearray()
        for line in data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"):
            line = line.rstrip(b"\r")
            for i in range(0, max(len(line), 1), 128):
                if not self.closed:
                    out += self.handle_line(line[i : i + 128])
        return bytes(out)


class BareCrEndsLines(_ReceiveFault):
    """Takes a bare CR as a line end too (splitlines()), so 'CAPA<CR>NOOP'
    runs two commands (the smuggling class)."""

    def fault_receive(self, data):
        return _base_receive(self, data.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))


class GarbageCrashes(Pop3Session):
    """Dies on a command with octets above 0x7F (Doona's unicode strings)."""

    def handle_line(self, line):
        if any(octet > 0x7F for octet in line):
            return _Crash.now(self)
        return super().handle_line(line)


class FormatStringLeaks(Pop3Session):
    """Passes the client's text to a printf-like formatter (CVE-2003-0391 class)."""

    def handle_line(self, line):
        if b"%" in line and b"%" in line.partition(b" ")[2]:
            return b"-ERR unknown 0x7ffdc0de1234 (nil) 0x000000000041\r\n"
        return super().handle_line(line)


class TabFieldsAuthenticate(Pop3Session):
    """Passes PASS to an auth backend that splits on TAB (CVE-2008-1218)."""

    def handle_line(self, line):
        if line.upper().startswith(b"PASS ") and b"\tskip_password_check=1" in line:
            assert self.user_name is not None
            return super().handle_line(b"PASS " + self.users.secret_for(self.user_name).encode())
        return super().handle_line(line)


class LongApopNameCrashes(Pop3Session):
    """Copies the APOP name into a fixed buffer (CVE-2000-0840 class)."""

    def cmd_apop(self, args):
        if args and len(args[0]) > 100:
            return _Crash.now(self)
        return super().cmd_apop(args)


class RefusalNamesTheCause(Pop3Session):
    """Says whether the user or the password was wrong (Qpopper < 4.0.6)."""

    def cmd_pass(self, args):
        known = self.users.secret_for(self.user_name or "") is not None
        reply = super().cmd_pass(args)
        if isinstance(reply, bytes) or reply.ok:
            return reply
        return err("wrong password" if known else "no such user")


class NegativeIsLast(Pop3Session):
    """Reads '-1' as 'the last message' (an index from the end)."""

    def parse_message_number(self, token):
        if token.startswith("-") and token[1:].isdigit() and self.live_numbers():
            return len(self.messages)
        return super().parse_message_number(token)


class IntParsesNumbers(Pop3Session):
    """Parses message numbers with a general-purpose integer parser that
    takes '+1', '1_0', Unicode digits and surrounding spaces."""

    def parse_message_number(self, token):
        try:
            number = int(token)
        except ValueError:
            raise CommandError("message number must be a decimal number") from None
        return super().parse_message_number(str(number))


class WedgedAfterEmptyLines(_ReceiveFault):
    """A burst of empty lines wedges the whole server: every later
    connection is refused at the greeting."""

    wedged = False

    def greeting(self):
        if type(self).wedged:
            return b"-ERR server wedged\r\n"
        return super().greeting()

    def fault_receive(self, data):
        if data.count(b"\r\n\r\n") >= 3:
            type(self).wedged = True
        return _base_receive(self, data)


class EachReadIsACommand(_ReceiveFault):
    """Ends a command at the end of every TCP read as well as at LF (no
    reassembly across reads), so 'CA' + 'PA' + CRLF written apart are three
    commands (catalogue R12)."""

    def fault_receive(self, data):
        out = bytearray()
        for line in data.split(b"\n"):
            if line and not self.closed:
                out += self.handle_line(line.rstrip(b"\r"))
        return bytes(out)


F = Fault
SECURITY_FAULTS: list[Fault] = [
    F(
        "crash-on-long-line",
        "a line of a kilobyte or more (or that much without a line end) ends the "
        "connection silently",
        ["security.long-user-1k", "security.length-ladder", "security.no-crlf-flood"],
        ["security.long-user-1k", "security.length-ladder", "security.no-crlf-flood"],
        SilentOnLongLine,
    ),
    F(
        "cuts-long-lines",
        "long lines are cut into 128-octet commands, so the tail runs as a command",
        ["security.overlong-tail-not-executed"],
        ["security.overlong-tail-not-executed"],
        CutsLongLines,
    ),
    F(
        "bare-cr-ends-lines",
        "a bare CR ends a command line",
        ["security.bare-cr-splits-nothing"],
        ["security.bare-cr-splits-nothing"],
        BareCrEndsLines,
    ),
    F(
        "nul-truncates-user",
        "everything after a NUL is dropped, so 'USER name\\x00x' is USER name",
        ["security.nul-in-user"],
        ["security.nul-in-user"],
        NulTruncates,
    ),
    F(
        "garbage-crashes",
        "a command with octets above 0x7F ends the connection silently",
        ["security.binary-garbage"],
        ["security.binary-garbage"],
        GarbageCrashes,
    ),
    F(
        "format-string-leaks",
        "USER/PASS text reaches a printf-like formatter and pointer values come back",
        ["security.format-string-*"],
        ["security.format-string-user", "security.format-string-pass"],
        FormatStringLeaks,
    ),
    F(
        "wedged-after-empty-lines",
        "an empty-line flood wedges the server for every later client",
        ["security.empty-lines-flood"],
        ["security.empty-lines-flood"],
        WedgedAfterEmptyLines,
    ),
    F(
        "tab-fields-authenticate",
        "PASS fields split on TAB reach the auth backend (skip_password_check)",
        ["security.pass-tab-fields"],
        ["security.pass-tab-fields"],
        TabFieldsAuthenticate,
    ),
    F(
        "long-apop-name-crashes",
        "an APOP name over 100 octets ends the connection silently",
        ["security.apop-malformed"],
        ["security.apop-malformed"],
        LongApopNameCrashes,
    ),
    F(
        "refusal-names-the-cause",
        "a refused PASS says whether the user exists",
        ["security.pass-refusal-hides-names"],
        ["security.pass-refusal-hides-names"],
        RefusalNamesTheCause,
    ),
    F(
        "auth-switches-in-transaction",
        "USER/PASS after login switch maildrops",
        ["security.auth-after-login-refused"],
        ["security.auth-after-login-refused"],
        AuthInTransaction,
    ),
    F(
        "zero-is-one-security",
        "message 0 is taken as message 1",
        ["security.zero-touches-nothing"],
        ["security.zero-touches-nothing"],
        ZeroIsOne,
    ),
    F(
        "negative-is-last",
        "'-1' names the last message",
        ["security.negative-touches-nothing"],
        ["security.negative-touches-nothing"],
        NegativeIsLast,
    ),
    F(
        "numbers-wrap-security",
        "numbers wrap modulo 2**32",
        ["security.huge-numbers-touch-nothing"],
        ["security.huge-numbers-touch-nothing"],
        Wraps32,
    ),
    F(
        "int-parses-numbers",
        "message numbers parsed with int(): '+1', '1_0', U+0661 accepted",
        ["security.non-canonical-numbers"],
        ["security.non-canonical-numbers"],
        IntParsesNumbers,
    ),
    F(
        "commit-on-drop-security",
        "deletions are applied when the connection drops",
        ["security.dropped-deletions-stay"],
        ["security.dropped-deletions-stay"],
        CommitOnDrop,
    ),
    F(
        "transaction-before-login-security",
        "transaction commands answered before login",
        ["security.transaction-commands-before-login"],
        ["security.transaction-commands-before-login"],
        TransactionCommandsBeforeLogin,
    ),
    F(
        "each-read-is-a-command",
        "every TCP read ends a command, so a command written in pieces is several",
        ["security.chopped-*"],
        ["security.chopped-capa", "security.chopped-session"],
        EachReadIsACommand,
    ),
]
