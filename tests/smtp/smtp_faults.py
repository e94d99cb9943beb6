"""Deliberately faulty SMTP servers: the reference SMTP server with one small
method replaced (reference_server.smtp.protocol.SmtpSession's extension
seam), each a bug a deployed server or mail catcher really had
(smtp-notes §1.9, §2, §8).

Each `Fault` names the scenarios that must catch it and, for each, the
requirement the decisive failure is pinned on (None: caught, whatever it
names) and the verdict (FAIL, or WARN where the rule broken is a SHOULD or
the reply is a tolerated one). The faults live only here: the shipped
reference server stays correct.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from reference_server.smtp.delivery import Deliverer, Envelope, trace_headers
from reference_server.smtp.protocol import (
    CRLF,
    TRANSACTION_STATES,
    CommandError,
    Reply,
    Response,
    SmtpSession,
    State,
    Transaction,
    refuse,
    reply,
)
from reference_server.smtp.server import SmtpServer

FAIL, WARN = "FAIL", "WARN"


@dataclass
class Fault:
    name: str
    description: str
    #: scenario id -> (requirement the decisive failure names or None, verdict)
    catches: dict[str, tuple[str | None, str]]
    session: type[SmtpSession] = SmtpSession
    server: type[SmtpServer] = SmtpServer
    config: dict[str, Any] = field(default_factory=dict)  # SmtpConfig overrides
    select: list[str] = field(default_factory=list)  # default: the caught scenarios
    command_timeout: float = 300.0
    slow: bool = False  # run the slow tier (with a short command_timeout it takes seconds)
    tls: str = "stls"  # the run's --tls: stls probes STARTTLS and AUTH; plain does not


def _states_with(command: str, *states: State) -> dict[State, frozenset[str]]:
    table = dict(SmtpSession.allowed_commands)
    for state in states:
        table[state] = table[state] | {command}
    return table


def _states_without(command: str, *states: State) -> dict[State, frozenset[str]]:
    table = dict(SmtpSession.allowed_commands)
    for state in states:
        table[state] = table[state] - {command}
    return table


# --- the seed and reply framing ---------------------------------------------------


class AlwaysTwoTwenty(SmtpSession):
    """The seed's server: every command is answered '220 ok'."""

    def _dispatch(self, line: bytes) -> Reply:
        return reply(220, "", "ok")


class HelpAnswers250(SmtpSession):
    """HELP answered 250 (aiosmtpd, Haraka)."""

    def cmd_help(self, args: str) -> Reply:
        return reply(250, "", "Supported commands: EHLO HELO MAIL RCPT DATA")


class BareCodeNoop(SmtpSession):
    """NOOP answered '250' with no space after the code."""

    def cmd_noop(self, args: str) -> Reply:
        return b"250\r\n"


class MixedCodesInEhlo(SmtpSession):
    """A multi-line EHLO reply whose lines carry different codes."""

    def cmd_ehlo(self, args: str) -> Reply:
        response = super().cmd_ehlo(args)
        assert isinstance(response, Response)
        data = response.to_bytes()
        lines = data.split(CRLF)
        lines[1] = b"251" + lines[1][3:]
        return CRLF.join(lines)


class TwoRepliesToNoop(SmtpSession):
    """NOOP answered twice."""

    def cmd_noop(self, args: str) -> Reply:
        return b"250 2.0.0 OK\r\n250 2.0.0 OK again\r\n"


class GreetingWithoutDomain(SmtpSession):
    """A greeting whose first word is no domain."""

    def greeting(self) -> bytes:
        return b"220 --- welcome to the mail service ---\r\n"


# --- EHLO and HELO ------------------------------------------------------------------


class SecondEhlo503(SmtpSession):
    """A second EHLO is refused (OpenSMTPD #1147, inbucket #141)."""

    def cmd_ehlo(self, args: str) -> Reply:
        if self.client_name is not None:
            raise refuse(503, "5.5.1", "already identified")
        return super().cmd_ehlo(args)


class HeloGetsEhloList(SmtpSession):
    """HELO answered with the EHLO keyword list."""

    def cmd_helo(self, args: str) -> Reply:
        return super().cmd_ehlo(args)


class EhloWithoutNameAccepted(SmtpSession):
    """EHLO with no argument is answered 250."""

    def _hello(self, args: str, extended: bool) -> str:
        return super()._hello(args or "unnamed", extended)


class AddressLiteralRefused(SmtpSession):
    """EHLO [127.0.0.1] refused as a bad domain."""

    def _hello(self, args: str, extended: bool) -> str:
        if args.startswith("["):
            raise refuse(501, "", "a domain is needed")
        return super()._hello(args, extended)


class ExpnAdvertisedBut502(SmtpSession):
    """EXPN is listed in EHLO but answered 502."""

    def cmd_expn(self, args: str) -> Reply:
        return reply(502, "5.5.1", "EXPN not implemented")


class ExpnWorksButNotListed(SmtpSession):
    """EXPN is answered 252 but missing from the EHLO list."""

    def ehlo_keywords(self) -> list[str]:
        return [k for k in super().ehlo_keywords() if k != "EXPN"]


class HelpAdvertisedBut502(SmtpSession):
    """HELP is listed in EHLO but answered 502 (go-smtp, Mailpit)."""

    def cmd_help(self, args: str) -> Reply:
        return reply(502, "5.5.1", "HELP not implemented")


class Smtputf8Without8bitmime(SmtpSession):
    """SMTPUTF8 advertised without 8BITMIME (GreenMail, Mailpit #648)."""

    def ehlo_keywords(self) -> list[str]:
        return [k for k in super().ehlo_keywords() if k != "8BITMIME"]


class PipeliningWithParameter(SmtpSession):
    """PIPELINING advertised with a parameter."""

    def ehlo_keywords(self) -> list[str]:
        return ["PIPELINING 1" if k == "PIPELINING" else k for k in super().ehlo_keywords()]


class SizeKeywordNotANumber(SmtpSession):
    """SIZE advertised with a value that is no number."""

    def ehlo_keywords(self) -> list[str]:
        return ["SIZE big" if k.startswith("SIZE") else k for k in super().ehlo_keywords()]


class Smtputf8WithParameter(SmtpSession):
    """SMTPUTF8 advertised with a parameter."""

    def ehlo_keywords(self) -> list[str]:
        return ["SMTPUTF8 yes" if k == "SMTPUTF8" else k for k in super().ehlo_keywords()]


# --- commands and sequencing ---------------------------------------------------------


class CaseSensitiveVerbs(SmtpSession):
    """Only upper-case command verbs are recognised."""

    def _dispatch(self, line: bytes) -> Reply:
        verb = line.split(b" ", 1)[0]
        if verb != verb.upper():
            return reply(500, "5.5.2", "command not recognized")
        return super()._dispatch(line)


class UnknownCommandCloses(SmtpSession):
    """An unknown command is answered 500 and the connection closed."""

    def _dispatch(self, line: bytes) -> Reply:
        response = super()._dispatch(line)
        if isinstance(response, Response) and response.code == 500:
            return Response(500, response.enhanced, response.lines, close=True)
        return response


class ErrorsClose(SmtpSession):
    """The second refused command ends the session."""

    errors = 0

    def _dispatch(self, line: bytes) -> Reply:
        response = super()._dispatch(line)
        if isinstance(response, Response) and response.code >= 500:
            self.errors += 1
            if self.errors >= 2:
                return Response(response.code, response.enhanced, response.lines, close=True)
        return response


class RsetKeepsTransaction(SmtpSession):
    """RSET answers 250 and keeps the transaction."""

    def cmd_rset(self, args: str) -> Reply:
        return reply(250, "2.0.0", "reset")


class RsetBeforeEhlo503(SmtpSession):
    """RSET before EHLO is refused with 503 (OpenSMTPD #1149)."""

    allowed_commands = _states_without("RSET", State.GREETED)


class NoopResetsTransaction(SmtpSession):
    """NOOP throws the transaction away."""

    def cmd_noop(self, args: str) -> Reply:
        self.transaction = Transaction()
        if self.state in TRANSACTION_STATES:
            self.state = State.READY
        return super().cmd_noop(args)


class VrfyNotRecognised(SmtpSession):
    """VRFY answered 500 (OpenSMTPD #1146)."""

    def cmd_vrfy(self, args: str) -> Reply:
        return reply(500, "5.5.2", "command not recognized")


class VrfyVerifiesAnything(SmtpSession):
    """VRFY answers 250 for any well-formed address."""

    def cmd_vrfy(self, args: str) -> Reply:
        return reply(250, "2.1.5", f"<{args.strip('<> ')}>")


class VrfyResetsTransaction(SmtpSession):
    """VRFY throws the transaction away."""

    def cmd_vrfy(self, args: str) -> Reply:
        self.transaction = Transaction()
        self.state = State.READY
        return super().cmd_vrfy(args)


class ExpnResetsTransaction(SmtpSession):
    """EXPN throws the transaction away."""

    def cmd_expn(self, args: str) -> Reply:
        self.transaction = Transaction()
        self.state = State.READY
        return super().cmd_expn(args)


class HelpResetsTransaction(SmtpSession):
    """HELP throws the transaction away."""

    def cmd_help(self, args: str) -> Reply:
        self.transaction = Transaction()
        self.state = State.READY
        return super().cmd_help(args)


class HelpTopicUnknown501(SmtpSession):
    """HELP with an argument is a syntax error."""

    def cmd_help(self, args: str) -> Reply:
        if args:
            raise refuse(501, "5.5.4", "HELP takes no argument")
        return super().cmd_help(args)


class MailBeforeEhloGets220(SmtpSession):
    """MAIL before EHLO answered 220."""

    def _dispatch(self, line: bytes) -> Reply:
        if self.state is State.GREETED and line.upper().startswith(b"MAIL"):
            return reply(220, "", "go ahead")
        return super()._dispatch(line)


class QuitWithoutClose(SmtpSession):
    """221 to QUIT, and the connection stays open."""

    def cmd_quit(self, args: str) -> Reply:
        return reply(221, "2.0.0", f"{self.config.domain} closing connection")


class QuitDeliversTransaction(SmtpSession):
    """QUIT in a transaction delivers an empty message."""

    def cmd_quit(self, args: str) -> Reply:
        if self.transaction.recipients:
            self._deliver()
        return super().cmd_quit(args)


class DataArgumentIgnored(SmtpSession):
    """DATA with an argument is answered 354."""

    def cmd_data(self, args: str) -> Reply:
        return super().cmd_data("")


# --- MAIL and RCPT ---------------------------------------------------------------------


class NestedMailAccepted(SmtpSession):
    """MAIL inside a transaction answered 250, restarting it (Haraka, GreenMail)."""

    allowed_commands = _states_with("MAIL", State.MAIL, State.RCPT)


class NestedMailRefusedButResets(SmtpSession):
    """A nested MAIL is refused with 503 but throws the transaction away."""

    def refuse_out_of_sequence(self, keyword: str, args: str) -> Reply:
        if keyword == "MAIL" and self.state in TRANSACTION_STATES:
            self.transaction = Transaction()
            self.state = State.READY
        return super().refuse_out_of_sequence(keyword, args)


class NullSenderRefused(SmtpSession):
    """MAIL FROM:<> refused."""

    def cmd_mail(self, args: str) -> Reply:
        if args.upper().startswith("FROM:<>"):
            raise refuse(553, "5.1.7", "a sender is needed")
        return super().cmd_mail(args)


class MailSyntaxErrorStartsTransaction(SmtpSession):
    """A broken MAIL is answered 501 but starts the transaction anyway."""

    def cmd_mail(self, args: str) -> Reply:
        if ">" not in args:
            self.transaction = Transaction(reverse_path="broken")
            self.state = State.MAIL
            raise refuse(501, "5.5.4", "the address has no closing '>'")
        return super().cmd_mail(args)


class UnknownMailParameterIgnored(SmtpSession):
    """An unknown MAIL parameter is ignored (250; Haraka, Mailpit)."""

    def _mail_parameter(self, transaction: Transaction, name: str, value: str | None) -> None:
        if name.startswith("X"):
            return
        super()._mail_parameter(transaction, name, value)


class RcptWithoutMailAccepted(SmtpSession):
    """RCPT without MAIL answered 250."""

    allowed_commands = _states_with("RCPT", State.READY)


class BarePostmasterRefused(SmtpSession):
    """RCPT TO:<Postmaster> without a domain refused."""

    def cmd_rcpt(self, args: str) -> Reply:
        if "@" not in args:
            raise refuse(550, "5.1.3", "a recipient needs a domain")
        return super().cmd_rcpt(args)


class PostmasterCaseSensitive(SmtpSession):
    """postmaster@domain recognised only in lower case."""

    def maildrop_for(self, forward_path: str) -> str:
        local = forward_path.rpartition("@")[0]
        if local.lower() == "postmaster" and local != "postmaster":
            raise refuse(550, "5.1.1", "no such mailbox")
        return super().maildrop_for(forward_path)


class OpenRelay(SmtpSession):
    """A recipient in any domain is accepted."""

    def maildrop_for(self, forward_path: str) -> str:
        domain = forward_path.rpartition("@")[2]
        if domain.lower() != self.config.domain.lower():
            return "postmaster"
        return super().maildrop_for(forward_path)


class SourceRouteSyntaxError(SmtpSession):
    """A source-routed forward-path is a syntax error."""

    def cmd_rcpt(self, args: str) -> Reply:
        if "<@" in args:
            raise refuse(501, "5.1.3", "malformed address")
        return super().cmd_rcpt(args)


class UnknownUserGets221(SmtpSession):
    """RCPT for an unknown mailbox answered 221."""

    def maildrop_for(self, forward_path: str) -> str:
        local = forward_path.rpartition("@")[0]
        if local.startswith("mailspec-no-such-user"):
            raise refuse(221, "", "bye")
        return super().maildrop_for(forward_path)


class FiftyRecipients(SmtpSession):
    """At most 50 recipients per transaction."""

    def cmd_rcpt(self, args: str) -> Reply:
        if len(self.transaction.recipients) >= 50:
            raise refuse(452, "4.5.3", "too many recipients")
        return super().cmd_rcpt(args)


class LocalPartLimit32(SmtpSession):
    """Local parts over 32 octets refused."""

    def cmd_mail(self, args: str) -> Reply:
        if re.search(r"<[^@>]{33,}@", args):
            raise refuse(501, "5.1.3", "local part too long")
        return super().cmd_mail(args)


class PathLimit200(SmtpSession):
    """Paths over 200 octets refused."""

    def _parse_path(self, text: str, *, allow_null: bool, smtputf8: bool, mail: bool) -> str:
        if len(text) + 2 > 200:
            raise refuse(501, "5.1.3", "path too long")
        return super()._parse_path(text, allow_null=allow_null, smtputf8=smtputf8, mail=mail)


class DomainLimit128(SmtpSession):
    """EHLO names over 128 octets refused."""

    def _hello(self, args: str, extended: bool) -> str:
        if len(args) > 128:
            raise refuse(501, "", "name too long")
        return super()._hello(args, extended)


class NonAsciiAcceptedWithoutSmtputf8(SmtpSession):
    """A non-ASCII sender is accepted without the SMTPUTF8 parameter."""

    def cmd_mail(self, args: str) -> Reply:
        if not args.isascii() and "SMTPUTF8" not in args.upper():
            args += " SMTPUTF8"
        return super().cmd_mail(args)


class Utf8SenderRefused(SmtpSession):
    """SMTPUTF8 advertised, but a UTF-8 sender refused even with the parameter."""

    def cmd_mail(self, args: str) -> Reply:
        if not args.isascii():
            raise refuse(553, "5.6.7", "ASCII addresses only")
        return super().cmd_mail(args)


class TrailingSpaceRefused(SmtpSession):
    """A trailing space makes a command a syntax error."""

    def _dispatch(self, line: bytes) -> Reply:
        if line.endswith(b" "):
            return reply(501, "5.5.4", "trailing space")
        return super()._dispatch(line)


# --- limits --------------------------------------------------------------------------


class CommandLimit100(SmtpSession):
    """Command lines over 100 octets refused as too long."""

    def _line_limit(self) -> int:
        return 100


class TextLineLimit900(SmtpSession):
    """Text lines over 900 octets refused."""

    def _text_line(self, data: bytes, *, starts_line: bool, ends_line: bool) -> None:
        if starts_line and len(data) > 900 and self.transaction.failure is None:
            self.transaction.failure = reply(500, "5.5.6", "text line too long")
        super()._text_line(data, starts_line=starts_line, ends_line=ends_line)


class TooLongLineRefusedAtOnce(SmtpSession):
    """A too-long text line is refused at once; the rest of the text runs as commands."""

    def _read_text(self) -> bytes | None:
        too_long = re.search(rb"[^\r\n]{999,}\r\n", bytes(self._pending))
        if too_long is not None:
            del self._pending[: too_long.end()]
            self.transaction = Transaction()
            self.state = State.READY
            return reply(500, "5.5.6", "text line too long").to_bytes()
        return super()._read_text()


class LongLine421StaysOpen(SmtpSession):
    """A too-long command line is answered 421 and the session stays open."""

    def _finish_reply(self, response: Reply) -> bytes:
        if isinstance(response, Response) and response.lines == ("line too long",):
            return reply(421, "4.7.0", f"{self.config.domain} line too long").to_bytes()
        return super()._finish_reply(response)


# --- DATA and what is stored -------------------------------------------------------------


def _normalised(data: bytes, pattern: bytes) -> bytes:
    return re.sub(pattern, CRLF, data)


class _NormalisesInData(SmtpSession):
    """Rewrites bare line ends to CRLF in message text (Postfix < 3.9 for LF)."""

    bare = rb"(?<!\r)\n"

    def feed(self, data: bytes) -> None:
        if self.state is State.DATA:
            data = _normalised(data, self.bare)
        super().feed(data)


class BareLfIsLineEnd(_NormalisesInData):
    """A bare LF in the text counts as CRLF, so LF.LF ends the data."""


class BareCrIsLineEnd(_NormalisesInData):
    """A bare CR in the text counts as CRLF, so CR.CR ends the data."""

    bare = rb"\r(?!\n)"


class AnyBareLineEnd(_NormalisesInData):
    """Bare CR and bare LF both count as CRLF."""

    bare = rb"\r(?!\n)|(?<!\r)\n"


class NulDropped(SmtpSession):
    """NUL octets in the text are dropped before the end of data is looked for."""

    def feed(self, data: bytes) -> None:
        if self.state is State.DATA:
            data = data.replace(b"\x00", b"")
        super().feed(data)


class NoDotUnstuffing(SmtpSession):
    """The stuffing dot is kept."""

    def _text_line(self, data: bytes, *, starts_line: bool, ends_line: bool) -> None:
        if starts_line and data.startswith(b"."):
            data = b"." + data
        super()._text_line(data, starts_line=starts_line, ends_line=ends_line)


class FirstLineNotUnstuffed(SmtpSession):
    """The stuffing dot is kept on the first line of the text (MailHog #432)."""

    def cmd_data(self, args: str) -> Reply:
        self._first_line = True
        return super().cmd_data(args)

    def _text_line(self, data: bytes, *, starts_line: bool, ends_line: bool) -> None:
        if starts_line and getattr(self, "_first_line", False) and data.startswith(b"."):
            data = b"." + data
        self._first_line = False
        super()._text_line(data, starts_line=starts_line, ends_line=ends_line)


class _RewritesContent(SmtpSession):
    def rewrite(self, content: bytes) -> bytes:
        return content

    def _deliver(self) -> Reply:
        content = self.transaction.content
        self.transaction.content = bytearray(self.rewrite(bytes(content)))
        return super()._deliver()


class ExtraEmptyLine(_RewritesContent):
    """An empty line is added at the end of the stored message."""

    def rewrite(self, content: bytes) -> bytes:
        return content + CRLF


class ControlCharactersStripped(_RewritesContent):
    """Control characters other than CR and LF are removed from the text."""

    def rewrite(self, content: bytes) -> bytes:
        return re.sub(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", b"", content)


class EightBitStripped(_RewritesContent):
    """The high bit of every octet is cleared."""

    def rewrite(self, content: bytes) -> bytes:
        return bytes(b & 0x7F for b in content)


class _NoTraceDeliverer(Deliverer):
    def deliver(self, envelope: Envelope) -> str:
        message_id = self.unique_name(time.time())
        copies = [(maildrop, envelope.content) for maildrop in envelope.maildrops]
        self._deliver_maildir(message_id, copies)
        return message_id


class NoTraceFields(SmtpSession):
    """No Return-Path: or Received: is added."""

    def __init__(self, deliverer: Deliverer, *args: Any, **kwargs: Any) -> None:
        super().__init__(_NoTraceDeliverer(deliverer.store), *args, **kwargs)


class TransactionKeptAfterData(SmtpSession):
    """After the end of data the recipients are kept (buffers not cleared)."""

    def _end_of_data(self) -> Reply:
        kept = self.transaction
        response = super()._end_of_data()
        self.transaction = Transaction(kept.reverse_path, kept.recipients, kept.maildrops)
        self.state = State.RCPT
        return response


class DataWithoutRecipients(SmtpSession):
    """DATA after MAIL without an accepted RCPT is answered 354."""

    allowed_commands = _states_with("DATA", State.MAIL)


class HeaderlessMessageRefused(SmtpSession):
    """A message without a header field is refused."""

    def _end_of_data(self) -> Reply:
        if b":" not in bytes(self.transaction.content).split(CRLF, 1)[0]:
            self.transaction = Transaction()
            self.state = State.READY
            return reply(550, "5.6.0", "message is not RFC 5322 compliant")
        return super()._end_of_data()


class ResentRefused(SmtpSession):
    """Resent-To: without Resent-From: refused."""

    def _end_of_data(self) -> Reply:
        content = bytes(self.transaction.content)
        if b"Resent-To:" in content and b"Resent-From:" not in content:
            self.transaction = Transaction()
            self.state = State.READY
            return reply(554, "5.6.0", "unmatched Resent- fields")
        return super()._end_of_data()


class RefusedButDelivered(SmtpSession):
    """A message refused at the end of data is delivered all the same."""

    def _text_line(self, data: bytes, *, starts_line: bool, ends_line: bool) -> None:
        failure = self.transaction.failure
        super()._text_line(data, starts_line=starts_line, ends_line=ends_line)
        if failure is None and self.transaction.failure is not None:
            self._late_failure = self.transaction.failure
            self.transaction.failure = None
            self.config.refuse_bare_line_ends = False

    def _deliver(self) -> Reply:
        late = getattr(self, "_late_failure", None)
        self._late_failure = None
        self.config.refuse_bare_line_ends = True
        response = super()._deliver()
        return late if late is not None else response


class PartialMessageDeliveredOnDrop(SmtpSession):
    """A connection lost inside DATA delivers what was received."""

    def connection_lost(self) -> None:
        if self.state is State.DATA and self.transaction.recipients:
            self._deliver()
        super().connection_lost()


class OneRecipientDelivered(SmtpSession):
    """Only the first recipient of a message gets it."""

    def _deliver(self) -> Reply:
        transaction = self.transaction
        transaction.recipients = transaction.recipients[:1]
        transaction.maildrops = transaction.maildrops[:1]
        return super()._deliver()


class SixtyKilobyteLimit(SmtpSession):
    """Messages over 60000 octets refused (below the 64K minimum)."""

    def _append_content(self, data: bytes) -> None:
        super()._append_content(data)
        if len(self.transaction.content) > 60000 and self.transaction.failure is None:
            self.transaction.failure = reply(552, "5.3.4", "message too big")


# --- pipelining --------------------------------------------------------------------------


class InputDroppedAfterFailure(SmtpSession):
    """A refused command throws away the input pipelined behind it."""

    def _dispatch(self, line: bytes) -> Reply:
        response = super()._dispatch(line)
        if isinstance(response, Response) and response.code >= 500:
            self._pending.clear()
        return response


class InputDroppedAfterData(SmtpSession):
    """Input pipelined behind the end of data is thrown away."""

    def _end_of_data(self) -> Reply:
        response = super()._end_of_data()
        self._pending.clear()
        return response


class DataGetsReplyWithoutRecipients(SmtpSession):
    """DATA 354 although every recipient was refused; the empty message is delivered
    to postmaster."""

    allowed_commands = _states_with("DATA", State.MAIL)

    def _deliver(self) -> Reply:
        if not self.transaction.recipients:
            self.transaction.recipients = ["postmaster"]
            self.transaction.maildrops = ["postmaster"]
        return super()._deliver()


class LastRcptDecidesData(SmtpSession):
    """DATA is refused when the last RCPT before it was refused, although an
    earlier one was accepted."""

    def cmd_rcpt(self, args: str) -> Reply:
        try:
            response = super().cmd_rcpt(args)
        except Exception:
            self._last_refused = True
            raise
        self._last_refused = False
        return response

    def cmd_data(self, args: str) -> Reply:
        if getattr(self, "_last_refused", False):
            raise refuse(554, "5.5.1", "no valid recipients")
        return super().cmd_data(args)


# --- extensions ------------------------------------------------------------------------------


class SizeLimitNotEnforced(SmtpSession):
    """A declared SIZE over the maximum is accepted."""

    def _mail_parameter(self, transaction: Transaction, name: str, value: str | None) -> None:
        if name == "SIZE" and value is not None and value.isdigit():
            transaction.declared_size = int(value)
            return
        super()._mail_parameter(transaction, name, value)


class SizeGarbageAccepted(SmtpSession):
    """SIZE=<not a number> is accepted."""

    def _mail_parameter(self, transaction: Transaction, name: str, value: str | None) -> None:
        if name == "SIZE":
            return
        super()._mail_parameter(transaction, name, value)


class SizeEndsTheData(SmtpSession):
    """The declared SIZE is taken as the length of the text (SIZE-05)."""

    def _read_text(self) -> bytes | None:
        declared = self.transaction.declared_size
        if declared is not None and len(self._pending) >= declared:
            self.transaction.content += bytes(self._pending[:declared])
            del self._pending[:declared]
            self._pending[:0] = b"\r\n.\r\n"
            self._text_line_start = False
        return super()._read_text()


class BodyValueCaseSensitive(SmtpSession):
    """BODY=7bit refused: only upper-case values are known."""

    def _mail_parameter(self, transaction: Transaction, name: str, value: str | None) -> None:
        if name == "BODY" and value is not None and value != value.upper():
            raise refuse(501, "5.5.4", "BODY must be 7BIT or 8BITMIME")
        super()._mail_parameter(transaction, name, value)


class EnhancedCodeMissingOnRcpt(SmtpSession):
    """ENHANCEDSTATUSCODES advertised, but RCPT's 250 carries none (OpenSMTPD #1178)."""

    def cmd_rcpt(self, args: str) -> Reply:
        response = super().cmd_rcpt(args)
        assert isinstance(response, Response)
        return Response(response.code, "", response.lines)


class EnhancedCodeWrongClass(SmtpSession):
    """A 503 carries a 2.x.x enhanced code."""

    def refuse_out_of_sequence(self, keyword: str, args: str) -> Reply:
        response = super().refuse_out_of_sequence(keyword, args)
        if isinstance(response, Response):
            return Response(response.code, "2.5.1", response.lines)
        return response


class EnhancedCodeMissingAfterHelo(SmtpSession):
    """Enhanced codes only in EHLO sessions."""

    def cmd_mail(self, args: str) -> Reply:
        response = super().cmd_mail(args)
        if not self.extended and isinstance(response, Response):
            return Response(response.code, "", response.lines)
        return response


class BdatChunkNotDiscarded(SmtpSession):
    """A refused BDAT's chunk is read as commands (go-smtp #315)."""

    def refuse_out_of_sequence(self, keyword: str, args: str) -> Reply:
        if keyword == "BDAT":
            return reply(503, "5.5.1", "need MAIL and RCPT before BDAT")
        return super().refuse_out_of_sequence(keyword, args)


class BdatAfterLastAccepted(SmtpSession):
    """BDAT outside a transaction is answered 250 (its chunk is read)."""

    allowed_commands = _states_with("BDAT", State.READY)


class BdatChunksUnstuffed(SmtpSession):
    """Dots in BDAT chunks are un-stuffed as if they were DATA text."""

    def _append_content(self, data: bytes) -> None:
        if self.state is State.CHUNK:
            data = re.sub(rb"(?m)^\.", b"", data)
        super()._append_content(data)


class EmptyLastChunkRefused(SmtpSession):
    """BDAT 0 LAST is a syntax error."""

    def cmd_bdat(self, args: str) -> Reply:
        if args.split(" ")[0] == "0":
            raise refuse(501, "5.5.4", "a chunk needs octets")
        return super().cmd_bdat(args)


class DataAfterBdatAccepted(SmtpSession):
    """DATA after a BDAT chunk in the same transaction is answered 354."""

    allowed_commands = _states_with("DATA", State.CHUNKING)


class RsetKeepsChunks(SmtpSession):
    """RSET keeps the chunks received so far for the next transaction."""

    def cmd_rset(self, args: str) -> Reply:
        content = self.transaction.content
        response = super().cmd_rset(args)
        self._kept = content
        return response

    def cmd_mail(self, args: str) -> Reply:
        response = super().cmd_mail(args)
        self.transaction.content = getattr(self, "_kept", bytearray())
        self._kept = bytearray()
        return response


class DataRefusedAfterBdatSession(SmtpSession):
    """Once BDAT was used, DATA is refused for the rest of the session."""

    def cmd_bdat(self, args: str) -> Reply:
        self._bdat_used = True
        return super().cmd_bdat(args)

    def cmd_data(self, args: str) -> Reply:
        if getattr(self, "_bdat_used", False):
            raise refuse(503, "5.5.1", "use BDAT")
        return super().cmd_data(args)


# --- STARTTLS ------------------------------------------------------------------------------


class StarttlsArgumentAccepted(SmtpSession):
    """STARTTLS with an argument is answered 220."""

    def cmd_starttls(self, args: str) -> Reply:
        return super().cmd_starttls("")


class StarttlsStillAdvertised(SmtpSession):
    """EHLO inside TLS still lists STARTTLS."""

    def ehlo_keywords(self) -> list[str]:
        keywords = super().ehlo_keywords()
        return keywords if "STARTTLS" in keywords else [*keywords, "STARTTLS"]


class EhloKeptAcrossTls(SmtpSession):
    """The EHLO before TLS still counts after the handshake."""

    def tls_established(self) -> None:
        name, extended = self.client_name, self.extended
        super().tls_established()
        self.client_name, self.extended, self.state = name, extended, State.READY


class SecondStarttls220(SmtpSession):
    """STARTTLS inside TLS is answered 220."""

    def cmd_starttls(self, args: str) -> Reply:
        if self.tls:
            return reply(220, "2.0.0", "ready to start TLS")
        return super().cmd_starttls(args)


class KeepsPlaintextAcrossTls(SmtpSession):
    """Plaintext pipelined behind STARTTLS is kept and run inside TLS (CVE-2011-0411)."""

    def cmd_starttls(self, args: str) -> Reply:
        kept = bytes(self._pending)
        response = super().cmd_starttls(args)
        self._kept_plaintext = kept
        return response

    def tls_established(self) -> None:
        super().tls_established()
        self._pending += getattr(self, "_kept_plaintext", b"")


class AnswersKeptPlaintextServer(SmtpServer):
    """Runs what the session kept right after the handshake."""

    async def _start_tls(
        self, session: SmtpSession, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        assert self.settings.tls_context is not None
        await writer.start_tls(self.settings.tls_context)
        session.tls_established()
        for response in session.replies():
            writer.write(response)
        await writer.drain()


# --- AUTH --------------------------------------------------------------------------------------


class AuthCancelNot501(SmtpSession):
    """'*' ends the exchange with 535."""

    def _sasl_response(self, line: bytes) -> Reply:
        if line == b"*":
            self.state = State.READY
            return self._auth_failed()
        return super()._sasl_response(line)


class AuthBadBase64RunAsCommand(SmtpSession):
    """A response that is not base64 is run as a command."""

    def _sasl_response(self, line: bytes) -> Reply:
        if re.fullmatch(rb"[A-Za-z0-9+/=]*", line) is None and line != b"*":
            self.state = State.READY
            self._sasl_step = None
            return self._dispatch(line)
        return super()._sasl_response(line)


class AuthUnknownMechanism535(SmtpSession):
    """An unknown mechanism is answered 535."""

    def cmd_auth(self, args: str) -> Reply:
        if args.split(" ")[0].upper() not in self.auth_mechanisms:
            return self._auth_failed()
        return super().cmd_auth(args)


class SecondAuthAccepted(SmtpSession):
    """AUTH after a successful AUTH is run again."""

    def cmd_auth(self, args: str) -> Reply:
        self.authenticated_user = None
        return super().cmd_auth(args)


class AuthInTransactionAccepted(SmtpSession):
    """AUTH inside a transaction is run."""

    allowed_commands = _states_with("AUTH", State.MAIL, State.RCPT)


class AuthMechanismCaseSensitive(SmtpSession):
    """'auth plain' (lower case) is refused with 504."""

    def _dispatch(self, line: bytes) -> Reply:
        if line.startswith(b"auth "):
            return reply(504, "5.5.4", "mechanism not supported")
        return super()._dispatch(line)


class PlainChallengeNotEmpty(SmtpSession):
    """AUTH PLAIN's challenge carries text (smtp4dev-like '334 go ahead')."""

    def cmd_auth(self, args: str) -> Reply:
        response = super().cmd_auth(args)
        if isinstance(response, Response) and response.code == 334 and response.lines == ("",):
            return reply(334, "", "go ahead")
        return response


class LoginChallengeNotBase64(SmtpSession):
    """AUTH LOGIN's challenges are plain text, not base64."""

    def cmd_auth(self, args: str) -> Reply:
        response = super().cmd_auth(args)
        if isinstance(response, Response) and response.code == 334 and response.lines != ("",):
            return reply(334, "", "Username:")
        return response


class WrongPasswordCloses(SmtpSession):
    """A failed AUTH closes the connection at once."""

    def _auth_failed(self, user: str = "?") -> Reply:
        response = super()._auth_failed(user)
        assert isinstance(response, Response)
        return Response(response.code, response.enhanced, response.lines, close=True)


class AuthSuccessWithoutDelivery(SmtpSession):
    """After AUTH, accepted messages are not stored."""

    def _deliver(self) -> Reply:
        if self.authenticated_user is not None:
            self.transaction = Transaction()
            return reply(250, "2.0.0", "message accepted")
        return super()._deliver()


# --- the refused session (RFC 5321 §3.1) -------------------------------------------


class RefusedSessionAcceptsMail(SmtpSession):
    """Greets 554 but then serves EHLO and MAIL as if the session were open."""

    def _dispatch(self, line: bytes) -> Reply:
        if self.state is State.REFUSED and not line.upper().startswith(b"QUIT"):
            self.state = State.GREETED
        return super()._dispatch(line)


class RefusedSessionClosesAtOnce(SmtpSession):
    """Greets 554 and closes the connection without waiting for QUIT."""

    def greeting(self) -> bytes:
        data = super().greeting()
        self.state = State.CLOSED
        return data


class RefusedSession554ToEverything(SmtpSession):
    """Greets 554 and answers every later command 554, not 503."""

    def refuse_out_of_sequence(self, keyword: str, args: str) -> Reply:
        if self.state is State.REFUSED:
            return reply(554, "5.7.1", "no service")
        return super().refuse_out_of_sequence(keyword, args)


class RefusedSessionBareGreeting(SmtpSession):
    """Greets '554 <domain>' with no text saying why."""

    def greeting(self) -> bytes:
        super().greeting()
        return f"554 {self.config.domain}\r\n".encode()


class Greets521AndCloses(SmtpSession):
    """A dummy server that never takes mail: 521 and close (RFC 7504 §2)."""

    def greeting(self) -> bytes:
        super().greeting()
        self.state = State.CLOSED
        return f"521 {self.config.domain} does not accept mail\r\n".encode()


# --- timeouts (RFC 5321 §4.5.3.2.7, §3.8; the slow tier) ---------------------------


class TimeoutSays250(SmtpSession):
    """On its command timeout the server sends '250 ok' before closing."""

    def timeout(self) -> bytes:
        super().timeout()
        return b"250 2.0.0 ok\r\n"


class TimeoutStaysOpen(SmtpServer):
    """On its command timeout the server says 421 but keeps the connection open."""

    async def _converse(self, session: SmtpSession, reader: Any, writer: Any) -> None:
        await super()._converse(session, reader, writer)
        if session.closed and not reader.at_eof():
            await asyncio.sleep(8)  # the 421 went out; the close comes late


class TimeoutClosesSilently(SmtpSession):
    """The command timeout closes without a 421 (aiosmtpd)."""

    def timeout(self) -> bytes:
        super().timeout()
        return b""


# --- coverage: reply grammar ---------------------------------------------------------


class NoopCodeSixFifty(SmtpSession):
    """NOOP answered with a code whose first digit is 6."""

    def cmd_noop(self, args: str) -> Reply:
        return b"650 2.0.0 OK\r\n"


class HelpLineTooLong(SmtpSession):
    """HELP answered with a 600-octet reply line."""

    def cmd_help(self, args: str) -> Reply:
        return reply(214, "2.0.0", "commands: " + "X" * 590)


class NoopTextWithControlCharacter(SmtpSession):
    """NOOP's reply text holds a control character (BEL)."""

    def cmd_noop(self, args: str) -> Reply:
        return b"250 2.0.0 OK\x07\r\n"


class QuitWithoutServerName(SmtpSession):
    """QUIT answered '221 2.0.0 * bye': no server name first."""

    def cmd_quit(self, args: str) -> Reply:
        super().cmd_quit(args)
        self._finish()
        return b"221 2.0.0 * bye\r\n"


# --- coverage: EHLO ------------------------------------------------------------------


class MailRefusedForForeignEhloName(SmtpSession):
    """MAIL refused when the EHLO name is not the suite's own (a 'name must match
    the address' check)."""

    def cmd_mail(self, args: str) -> Reply:
        if self.client_name and "elsewhere" in self.client_name:
            raise refuse(550, "5.7.1", "EHLO name does not match your address")
        return super().cmd_mail(args)


class EtrnServedButNotListed(SmtpSession):
    """ETRN (RFC 1985) is answered 250 but not listed in the EHLO reply."""

    allowed_commands = _states_with("ETRN", State.READY)
    known_commands = frozenset().union(*allowed_commands.values())

    def cmd_etrn(self, args: str) -> Reply:
        return reply(250, "2.0.0", "queuing started")


class UnregisteredEhloKeyword(SmtpSession):
    """The EHLO reply offers an unregistered keyword without the X prefix."""

    def ehlo_keywords(self) -> list[str]:
        return [*super().ehlo_keywords(), "TURBOMAIL"]


# --- coverage: MAIL and RCPT ---------------------------------------------------------


class SpaceBeforeColonAccepted(SmtpSession):
    """'MAIL FROM :<x>' accepted (lenient envelope syntax)."""

    def cmd_mail(self, args: str) -> Reply:
        return super().cmd_mail(args.replace("FROM :", "FROM:").replace("from :", "from:"))


class MailKeepsRecipients(SmtpSession):
    """MAIL does not clear the recipients of the session's last message."""

    def cmd_mail(self, args: str) -> Reply:
        response = super().cmd_mail(args)
        old_recipients, old_maildrops = getattr(self, "_old_recipients", ([], []))
        self.transaction.recipients += old_recipients
        self.transaction.maildrops += old_maildrops
        if old_recipients:
            self.state = State.RCPT
        return response

    def _deliver(self) -> Reply:
        self._old_recipients = (list(self.transaction.recipients), list(self.transaction.maildrops))
        return super()._deliver()


class RcptParametersIgnored(SmtpSession):
    """Unknown RCPT parameters are ignored and the recipient accepted."""

    def cmd_rcpt(self, args: str) -> Reply:
        return super().cmd_rcpt(args.split(" ")[0])


class SenderLowerCased(SmtpSession):
    """The reverse-path is stored in lower case."""

    def cmd_mail(self, args: str) -> Reply:
        response = super().cmd_mail(args)
        self.transaction.reverse_path = self.transaction.reverse_path.lower()
        return response


class UnderscoreDomainAccepted(SmtpSession):
    """Underscores are accepted in envelope domains."""

    def _parse_path(self, text: str, *, allow_null: bool, smtputf8: bool, mail: bool) -> str:
        return super()._parse_path(
            text.replace("_", "-"), allow_null=allow_null, smtputf8=smtputf8, mail=mail
        )


class ControlCharactersDropped(SmtpSession):
    """Control characters are removed from command lines, which then run."""

    def _dispatch(self, line: bytes) -> Reply:
        return super()._dispatch(bytes(b for b in line if b >= 0x20 and b != 0x7F))


class RecipientLimitDropsTransaction(SmtpSession):
    """At the recipient limit the whole transaction is thrown away."""

    def cmd_rcpt(self, args: str) -> Reply:
        try:
            return super().cmd_rcpt(args)
        except CommandError as refusal:
            if refusal.reply.code == 452:
                self.transaction = Transaction()
                self.state = State.READY
            raise


# --- coverage: VRFY ------------------------------------------------------------------


class VrfyUnknownForUsers(SmtpSession):
    """VRFY of a local user name is answered 550."""

    def cmd_vrfy(self, args: str) -> Reply:
        raise refuse(550, "5.1.1", "no such user")


# --- coverage: trace fields ----------------------------------------------------------


class _TraceDeliverer(Deliverer):
    """Deliverer whose trace fields a subclass rewrites."""

    def rewrite(self, trace: bytes, envelope: Envelope) -> bytes:
        return trace

    def deliver(self, envelope: Envelope) -> str:
        now = time.time()
        message_id = self.unique_name(now)
        copies = [
            (
                maildrop,
                self.rewrite(trace_headers(envelope, message_id, recipient, now), envelope)
                + envelope.content,
            )
            for recipient, maildrop in zip(envelope.recipients, envelope.maildrops, strict=True)
        ]
        self._deliver_maildir(message_id, copies)
        return message_id


class _NamedZoneDeliverer(_TraceDeliverer):
    def rewrite(self, trace: bytes, envelope: Envelope) -> bytes:
        return trace.replace(b" +0000\r\n", b" GMT\r\n")


class _AllRecipientsDeliverer(_TraceDeliverer):
    def rewrite(self, trace: bytes, envelope: Envelope) -> bytes:
        everyone = ", ".join(f"<{r}>" for r in envelope.recipients).encode()
        return re.sub(rb"for <[^>]*>", b"for " + everyone, trace)


class ReceivedDateWithZoneName(SmtpSession):
    """The Received date names its zone ('GMT') instead of a numeric offset."""

    def __init__(self, deliverer: Deliverer, *args: Any, **kwargs: Any) -> None:
        super().__init__(_NamedZoneDeliverer(deliverer.store), *args, **kwargs)


class ReceivedForEveryRecipient(SmtpSession):
    """The Received FOR clause lists every recipient of the message."""

    def __init__(self, deliverer: Deliverer, *args: Any, **kwargs: Any) -> None:
        super().__init__(_AllRecipientsDeliverer(deliverer.store), *args, **kwargs)


class EarlierReceivedDropped(SmtpSession):
    """Received fields already in the message are removed before storing."""

    def _deliver(self) -> Reply:
        content = bytes(self.transaction.content)
        self.transaction.content = bytearray(re.sub(rb"(?m)^Received:[^\r\n]*\r\n", b"", content))
        return super()._deliver()


class ReceivedWithoutAuthMark(SmtpSession):
    """Received says ESMTPS after AUTH, not ESMTPSA (RFC 3848)."""

    def received_protocol(self, transaction: Transaction) -> str:
        return super().received_protocol(transaction).rstrip("A")


class ReceivedWithoutUtf8Mark(SmtpSession):
    """Received says ESMTP for a message sent with SMTPUTF8."""

    def received_protocol(self, transaction: Transaction) -> str:
        return super().received_protocol(transaction).replace("UTF8SMTP", "ESMTP")


# --- coverage: PIPELINING ------------------------------------------------------------


class _HeldReplies(SmtpSession):
    """Holds some replies back until more input arrives (a buffering bug)."""

    def hold(self, response: Reply) -> bytes:
        data = self._finish_reply(response)
        self._held = getattr(self, "_held", b"") + data
        return b""

    def replies(self) -> Any:
        held = getattr(self, "_held", b"")
        if held and self._pending:
            self._held = b""
            yield held
        yield from super().replies()


class NoopReplyHeld(_HeldReplies):
    """NOOP's reply is held back until more input arrives (RFC 2920 §3.2)."""

    def cmd_noop(self, args: str) -> Reply:
        return self.hold(super().cmd_noop(args))


class UnknownCommandReplyHeld(_HeldReplies):
    """The 500 to an unknown command is held back until more input arrives."""

    def _dispatch(self, line: bytes) -> Reply:
        response = super()._dispatch(line)
        if isinstance(response, Response) and response.code == 500:
            return self.hold(response)
        return response


# --- coverage: CHUNKING, BINARYMIME --------------------------------------------------


class BinaryCommandLineCloses(SmtpSession):
    """A command line that is not UTF-8 makes the server close the connection."""

    def _dispatch(self, line: bytes) -> Reply:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return reply(500, "5.5.2", "garbage", close=True)
        return super()._dispatch(line)


class BinarymimeDataAccepted(SmtpSession):
    """DATA is accepted in a BODY=BINARYMIME transaction."""

    def cmd_data(self, args: str) -> Reply:
        self.transaction.body = "8BITMIME"
        return super().cmd_data(args)


# --- coverage: 8BITMIME, SIZE --------------------------------------------------------


class DuplicateMailParametersAccepted(SmtpSession):
    """A MAIL parameter given twice is accepted (the last one wins)."""

    def _split_path(self, args: str, prefix: str) -> tuple[str, list[tuple[str, str | None]]]:
        path, parameters = super()._split_path(args, prefix)
        return path, list(dict(parameters).items())


class DeclaredSizeCountsStuffing(SmtpSession):
    """The declared SIZE is enforced on the text as sent: stuffing dots and the
    final '.' CRLF counted."""

    def _end_of_data(self) -> Reply:
        declared = self.transaction.declared_size
        content = bytes(self.transaction.content)
        stuffed = content.startswith(b".") + content.count(b"\r\n.")
        if declared is not None and len(content) + stuffed + 3 > declared:
            self.transaction = Transaction()
            self.state = State.READY
            return reply(552, "5.3.4", "message larger than declared")
        return super()._end_of_data()


class MessageSizeNotEnforced(SmtpSession):
    """A message over the advertised SIZE maximum is accepted when no size was
    declared on MAIL (the limit is checked on SIZE= only)."""

    def _append_content(self, data: bytes) -> None:
        if self.transaction.failure is None:
            self.transaction.content += data


class SizeLimitWithoutSizeKeyword(SmtpSession):
    """Limits messages (to 70 000 octets) without offering SIZE."""

    def ehlo_keywords(self) -> list[str]:
        return [k for k in super().ehlo_keywords() if not k.startswith("SIZE")]


# --- coverage: AUTH ------------------------------------------------------------------


class AuthParameterRefused(SmtpSession):
    """MAIL with AUTH=<> from an unauthenticated client is refused."""

    def _mail_parameter(self, transaction: Transaction, name: str, value: str | None) -> None:
        if name == "AUTH":
            raise refuse(555, "5.5.4", "AUTH= not allowed")
        super()._mail_parameter(transaction, name, value)


class CramInitialResponseProcessed(SmtpSession):
    """An initial response to CRAM-MD5 is taken as the client's answer (535), not refused."""

    def cmd_auth(self, args: str) -> Reply:
        if args.upper().startswith("CRAM-MD5 "):
            return self._auth_failed()
        return super().cmd_auth(args)


class LenientBase64(SmtpSession):
    """Base64 decoded leniently: characters outside the alphabet are skipped."""

    def _sasl_feed(self, encoded: bytes) -> Reply:
        import base64

        cleaned = base64.b64encode(base64.b64decode(encoded, validate=False))
        return super()._sasl_feed(cleaned)


class AuthLineLimit512(SmtpSession):
    """AUTH lines are held to the 512-octet command limit."""

    def _line_limit(self) -> int:
        return 512


class OverLongSaslResponseKeepsExchange(SmtpSession):
    """An over-long SASL response gets 500 but the exchange stays open (the next
    command is taken as a SASL response)."""

    def _read_line(self) -> bytes | None:
        state = self.state
        produced = super()._read_line()
        if state is State.AUTH and produced and produced.startswith(b"500 5.5.6"):
            self.state = State.AUTH
            self._sasl_step = self._plain_response
        return produced


class AuthzidIgnored(SmtpSession):
    """The PLAIN authorization identity is ignored, whatever it holds."""

    def _plain_response(self, decoded: bytes) -> Reply:
        parts = decoded.split(b"\x00")
        if len(parts) == 3:
            decoded = b"\x00" + parts[1] + b"\x00" + parts[2]
        return super()._plain_response(decoded)


# --- coverage: TLS/AUTH policy, SMTPUTF8 ---------------------------------------------


class _DemandsTls(SmtpSession):
    """Demands STARTTLS before mail: 530 to all but NOOP, EHLO, STARTTLS, QUIT."""

    exempt = frozenset({"NOOP", "EHLO", "STARTTLS", "QUIT"})

    def _dispatch(self, line: bytes) -> Reply:
        keyword = line.split(b" ", 1)[0].decode("ascii", "replace").upper()
        if not self.tls and keyword not in self.exempt:
            return reply(530, "5.7.0", "Must issue a STARTTLS command first")
        return super()._dispatch(line)


class DemandsTls(_DemandsTls):
    """Demands STARTTLS before mail (RFC 3207 §4), with 530 5.7.0 to the rest."""


class DemandsTlsButServesVrfy(_DemandsTls):
    """Demands STARTTLS for MAIL but still serves VRFY in plaintext."""

    exempt = _DemandsTls.exempt | {"VRFY"}


class VrfyDisabled502(SmtpSession):
    """VRFY disabled with 502 (Postfix disable_vrfy_command=yes; smtp-notes §7 item 30)."""

    def cmd_vrfy(self, args: str) -> Reply:
        raise refuse(502, "5.5.1", "VRFY command is disabled")


class PipeconnectKeyword(SmtpSession):
    """Exim's unregistered PIPECONNECT keyword in the EHLO reply (§7 item 25)."""

    def ehlo_keywords(self) -> list[str]:
        return [*super().ehlo_keywords(), "PIPECONNECT"]


class LenientEnvelope(SpaceBeforeColonAccepted, UnderscoreDomainAccepted):
    """Lenient envelope syntax: spaces around the colon, any domain characters
    (Postfix strict_rfc821_envelopes=no, Haraka; §7 item 7)."""


class VrfyParameterRefused(SmtpSession):
    """VRFY with the SMTPUTF8 parameter is a syntax error (501)."""

    def cmd_vrfy(self, args: str) -> Reply:
        if " " in args.strip(" "):
            raise refuse(501, "5.5.4", "syntax: VRFY <user>")
        return super().cmd_vrfy(args)


def F(
    name: str, session: type[SmtpSession], *catches: tuple[str, str | None, str], **kw: Any
) -> Fault:
    return Fault(
        name,
        session.__doc__ or "",
        {sid: (requirement, verdict) for sid, requirement, verdict in catches},
        session,
        **kw,
    )


M = "SMTP-5321-"
FAULTS: list[Fault] = [
    F(
        "always-220",
        AlwaysTwoTwenty,
        ("seed.smtp-session-as-written", M + "MAIL-01", FAIL),
        ("smtp.transaction.full", None, FAIL),
        tls="plain",  # no EHLO 250, so no STARTTLS to probe
    ),
    F(
        "help-250",
        HelpAnswers250,
        ("smtp.help.211-or-214", M + "HELP-01", WARN),
        ("smtp.help.advertised-means-implemented", M + "EHLO-08", WARN),
    ),
    F(
        "bare-code",
        BareCodeNoop,
        ("smtp.rset.never-closes", M + "REPLY-03", WARN),
        ("smtp.reply.grammar", M + "REPLY-03", WARN),
    ),
    F(
        "mixed-codes-in-ehlo",
        MixedCodesInEhlo,
        ("smtp.ehlo.extension-list", M + "REPLY-02", FAIL),
        ("smtp.reply.grammar", M + "REPLY-02", FAIL),
    ),
    F(
        "two-replies-to-noop",
        TwoRepliesToNoop,
        ("smtp.noop.keeps-transaction", M + "SEQ-03", FAIL),
        ("smtp.reply.grammar", M + "SEQ-03", FAIL),
    ),
    F(
        "greeting-without-domain",
        GreetingWithoutDomain,
        ("smtp.greeting.220-with-domain", M + "GREET-01", FAIL),
    ),
    F(
        "second-ehlo-503",
        SecondEhlo503,
        # a refused repeat EHLO is non-strict (RFC 5321 §4.1.4 "if acceptable")
        ("smtp.ehlo.repeat-resets-transaction", None, WARN),
        ("smtp.helo.then-ehlo", None, WARN),
    ),
    F("helo-gets-ehlo-list", HeloGetsEhloList, ("smtp.helo.single-line", M + "HELO-02", FAIL)),
    F(
        "ehlo-without-name-accepted",
        EhloWithoutNameAccepted,
        ("smtp.ehlo.missing-argument", M + "EHLO-06", FAIL),
    ),
    F(
        "address-literal-refused",
        AddressLiteralRefused,
        ("smtp.ehlo.address-literal", M + "EHLO-01", FAIL),
    ),
    F(
        "expn-advertised-but-502",
        ExpnAdvertisedBut502,
        ("smtp.expn.advertised-means-implemented", M + "EHLO-08", FAIL),
    ),
    F(
        "expn-not-listed",
        ExpnWorksButNotListed,
        ("smtp.expn.listed-if-supported", M + "EHLO-04", FAIL),
    ),
    F(
        "help-advertised-but-502",
        HelpAdvertisedBut502,
        ("smtp.help.advertised-means-implemented", M + "EHLO-08", FAIL),
    ),
    F(
        "smtputf8-without-8bitmime",
        Smtputf8Without8bitmime,
        ("smtp.smtputf8.implies-8bitmime", "SMTP-6531-UTF8-02", FAIL),
        ("smtp.ehlo.offers-8bitmime", M + "8BIT-01", WARN),
    ),
    F(
        "pipelining-with-parameter",
        PipeliningWithParameter,
        ("smtp.ehlo.parameterless-keywords", "SMTP-2920-PIPE-01", FAIL),
    ),
    F(
        "size-keyword-not-a-number",
        SizeKeywordNotANumber,
        ("smtp.size.keyword-value", "SMTP-1870-SIZE-01", FAIL),
    ),
    F(
        "smtputf8-with-parameter",
        Smtputf8WithParameter,
        ("smtp.smtputf8.parameter-has-no-value", "SMTP-6531-UTF8-01", FAIL),
    ),
    F(
        "case-sensitive-verbs",
        CaseSensitiveVerbs,
        ("smtp.syntax.verbs-case-insensitive", M + "SYNTAX-01", FAIL),
    ),
    F(
        "unknown-command-closes",
        UnknownCommandCloses,
        ("smtp.syntax.unknown-command-keeps-session", M + "CLOSE-02", FAIL),
    ),
    F("errors-close", ErrorsClose, ("smtp.sequence.errors-do-not-close", M + "QUIT-02", FAIL)),
    F(
        "rset-keeps-transaction",
        RsetKeepsTransaction,
        ("smtp.rset.clears-transaction", M + "RSET-01", FAIL),
    ),
    F(
        "rset-before-ehlo-503",
        RsetBeforeEhlo503,
        # RFC 5321 §4.1.4: servers SHOULD process RSET before EHLO (SEQ-02)
        ("smtp.rset.never-closes", M + "SEQ-02", WARN),
        ("smtp.sequence.commands-before-ehlo", M + "SEQ-02", WARN),
    ),
    F(
        "noop-resets-transaction",
        NoopResetsTransaction,
        ("smtp.noop.keeps-transaction", M + "NOOP-01", FAIL),
    ),
    F(
        "vrfy-not-recognised",
        VrfyNotRecognised,
        ("smtp.vrfy.recognised", M + "VRFY-01", FAIL),
        ("smtp.vrfy.no-false-positive", M + "VRFY-03", WARN),
    ),
    F(
        "vrfy-verifies-anything",
        VrfyVerifiesAnything,
        ("smtp.vrfy.no-false-positive", M + "VRFY-03", FAIL),
        ("smtp.vrfy.result-forms", M + "VRFY-02", FAIL),
        ("smtp.vrfy.same-answer-means-252", M + "VRFY-04", FAIL),
        ("smtp.vrfy.remote-address-252", M + "VRFY-05", WARN),
    ),
    F(
        "vrfy-resets-transaction",
        VrfyResetsTransaction,
        ("smtp.vrfy.keeps-transaction", M + "VRFY-10", FAIL),
    ),
    F(
        "expn-resets-transaction",
        ExpnResetsTransaction,
        ("smtp.expn.keeps-transaction", M + "EXPN-03", FAIL),
    ),
    F(
        "help-resets-transaction",
        HelpResetsTransaction,
        ("smtp.help.keeps-transaction", M + "HELP-03", FAIL),
    ),
    F("help-topic-501", HelpTopicUnknown501, ("smtp.help.with-argument", M + "HELP-02", WARN)),
    F(
        "mail-before-ehlo-220",
        MailBeforeEhloGets220,
        ("smtp.sequence.mail-before-ehlo", M + "MAIL-06", FAIL),
    ),
    F("quit-without-close", QuitWithoutClose, ("smtp.quit.221-then-close", M + "QUIT-01", FAIL)),
    F(
        "quit-delivers-transaction",
        QuitDeliversTransaction,
        ("smtp.quit.aborts-transaction", M + "QUIT-04", FAIL),
    ),
    F(
        "data-argument-ignored",
        DataArgumentIgnored,
        ("smtp.data.argument-refused", M + "DATA-08", WARN),
    ),
    F("nested-mail-250", NestedMailAccepted, ("smtp.mail.nested-refused", M + "MAIL-04", WARN)),
    F(
        "nested-mail-503-but-reset",
        NestedMailRefusedButResets,
        ("smtp.sequence.nested-mail-keeps-transaction", M + "SEQ-01", FAIL),
    ),
    F(
        "null-sender-refused",
        NullSenderRefused,
        ("smtp.mail.accepted-and-null-sender", M + "MAIL-02", FAIL),
    ),
    F(
        "mail-syntax-error-starts-transaction",
        MailSyntaxErrorStartsTransaction,
        ("smtp.mail.syntax-error-keeps-state", M + "RCPT-02", FAIL),
    ),
    F(
        "unknown-mail-parameter-ignored",
        UnknownMailParameterIgnored,
        ("smtp.mail.unknown-parameter", M + "MAIL-08", FAIL),
    ),
    F(
        "rcpt-without-mail-250",
        RcptWithoutMailAccepted,
        ("smtp.rcpt.without-mail", M + "RCPT-02", FAIL),
        ("smtp.mail.syntax-error-keeps-state", M + "RCPT-02", FAIL),
    ),
    F(
        "bare-postmaster-refused",
        BarePostmasterRefused,
        ("smtp.rcpt.bare-postmaster", M + "RCPT-06", FAIL),
    ),
    F(
        "postmaster-case-sensitive",
        PostmasterCaseSensitive,
        ("smtp.rcpt.postmaster-any-case", M + "RCPT-07", FAIL),
    ),
    F("open-relay", OpenRelay, ("smtp.rcpt.relay-refused-with-550", M + "RCPT-09", WARN)),
    F(
        "source-route-syntax-error",
        SourceRouteSyntaxError,
        ("smtp.rcpt.source-route-recognised", M + "RCPT-04", FAIL),
    ),
    F("unknown-user-221", UnknownUserGets221, ("smtp.rcpt.unknown-mailbox", M + "RCPT-03", FAIL)),
    F("fifty-recipients", FiftyRecipients, ("smtp.limits.hundred-recipients", M + "RCPT-10", FAIL)),
    F(
        "local-part-limit-32",
        LocalPartLimit32,
        ("smtp.limits.64-octet-local-part", M + "LEN-02", FAIL),
    ),
    F("path-limit-200", PathLimit200, ("smtp.limits.256-octet-path", M + "LEN-04", FAIL)),
    F("domain-limit-128", DomainLimit128, ("smtp.limits.255-octet-domain", M + "LEN-03", FAIL)),
    F(
        "non-ascii-accepted-without-smtputf8",
        NonAsciiAcceptedWithoutSmtputf8,
        ("smtp.syntax.non-ascii-envelope-refused", M + "SYNTAX-06", WARN),
    ),
    F(
        "utf8-sender-refused",
        Utf8SenderRefused,
        ("smtp.smtputf8.utf8-sender-accepted", "SMTP-6531-UTF8-06", FAIL),
    ),
    F(
        "trailing-space-refused",
        TrailingSpaceRefused,
        ("smtp.syntax.trailing-space-tolerated", M + "SYNTAX-07", WARN),
    ),
    F("command-limit-100", CommandLimit100, ("smtp.line.512-octet-command", M + "LEN-01", FAIL)),
    F(
        "text-line-limit-900",
        TextLineLimit900,
        ("smtp.limits.1000-octet-text-line", M + "LEN-06", FAIL),
        ("smtp.8bitmime.long-8bit-line", "SMTP-6152-8BIT-06", FAIL),
    ),
    F(
        "too-long-line-refused-at-once",
        TooLongLineRefusedAtOnce,
        ("smtp.limits.too-long-text-line-refused-at-the-end", M + "LEN-07", FAIL),
    ),
    F(
        "long-line-421-stays-open",
        LongLine421StaysOpen,
        ("smtp.limits.too-long-command", M + "CLOSE-03", WARN),
    ),
    F(
        "lf-dot-lf-ends-data",
        BareLfIsLineEnd,
        ("smtp.data.bare-lf-dot-is-not-the-end", M + "DATA-04", FAIL),
        ("smtp.security.smuggling-lf-dot-lf", M + "DATA-04", FAIL),
        ("smtp.security.smuggling-lf-dot-crlf", M + "DATA-04", FAIL),
        ("smtp.security.smuggling-lf-lf-dot-crlf", M + "DATA-04", FAIL),
        ("smtp.security.smuggling-crlf-dot-lf", M + "LINE-01", WARN),
    ),
    F(
        "cr-dot-cr-ends-data",
        BareCrIsLineEnd,
        ("smtp.security.smuggling-cr-dot-cr", M + "LINE-01", FAIL),
        ("smtp.security.smuggling-cr-dot-crlf", M + "LINE-01", FAIL),
        ("smtp.security.smuggling-crlf-dot-cr", M + "LINE-01", WARN),
        ("smtp.security.smuggling-cr-cr-lf-dot", M + "LINE-01", FAIL),
    ),
    F(
        "any-bare-line-end",
        AnyBareLineEnd,
        ("smtp.security.smuggling-cr-dot-lf", M + "LINE-01", FAIL),
        ("smtp.security.smuggling-lf-dot-cr", M + "LINE-01", FAIL),
    ),
    F(
        "nul-dropped",
        NulDropped,
        ("smtp.security.smuggling-nul-before-dot", M + "DATA-10", FAIL),
        ("smtp.security.smuggling-nul-after-dot", M + "DATA-10", FAIL),
    ),
    F("no-dot-unstuffing", NoDotUnstuffing, ("smtp.data.dot-stuffing-removed", M + "DOT-01", FAIL)),
    F(
        "first-line-not-unstuffed",
        FirstLineNotUnstuffed,
        ("smtp.data.first-line-dot-unstuffed", M + "DOT-01", FAIL),
    ),
    F(
        "extra-empty-line",
        ExtraEmptyLine,
        ("smtp.data.last-line-ends-the-body", M + "DOT-03", FAIL),
    ),
    F(
        "control-characters-stripped",
        ControlCharactersStripped,
        ("smtp.data.control-characters-kept", M + "DATA-10", FAIL),
    ),
    F(
        "eight-bit-stripped",
        EightBitStripped,
        ("smtp.8bitmime.octets-kept", "SMTP-6152-8BIT-05", FAIL),
        ("seed.smtp-session-conformant", M + "DATA-03", FAIL),
    ),
    F(
        "no-trace-fields",
        NoTraceFields,
        ("smtp.data.trace-fields", M + "TRACE-01", FAIL),
        ("smtp.auth.message-after-auth", M + "TRACE-01", FAIL),
        ("seed.smtp-session-conformant", M + "TRACE-01", FAIL),
    ),
    F(
        "transaction-kept-after-data",
        TransactionKeptAfterData,
        ("smtp.data.buffers-cleared-after-message", M + "DATA-05", FAIL),
    ),
    F(
        "data-354-without-recipients",
        DataWithoutRecipients,
        ("smtp.data.without-recipients", M + "DATA-02", WARN),
        ("smtp.sequence.data-after-refused-rcpt", M + "DATA-02", FAIL),
    ),
    F(
        "headerless-message-refused",
        HeaderlessMessageRefused,
        ("smtp.data.header-defects-accepted", M + "DATA-06", WARN),
    ),
    F(
        "resent-refused",
        ResentRefused,
        ("smtp.data.unmatched-resent-accepted", M + "DATA-07", FAIL),
    ),
    F(
        "refused-but-delivered",
        RefusedButDelivered,
        ("smtp.data.refused-message-not-delivered", M + "DATA-11", FAIL),
    ),
    F(
        "partial-message-delivered-on-drop",
        PartialMessageDeliveredOnDrop,
        ("smtp.data.drop-keeps-completed-message", M + "QUIT-03", FAIL),
    ),
    F(
        "one-recipient-delivered",
        OneRecipientDelivered,
        ("smtp.data.two-recipients", M + "DATA-03", FAIL),
    ),
    F("sixty-kilobyte-limit", SixtyKilobyteLimit, ("smtp.data.64k-message", M + "DATA-09", FAIL)),
    F(
        "input-dropped-after-failure",
        InputDroppedAfterFailure,
        ("smtp.pipelining.failure-keeps-the-rest", "SMTP-2920-PIPE-04", FAIL),
    ),
    F(
        "input-dropped-after-data",
        InputDroppedAfterData,
        ("smtp.pipelining.next-transaction-after-dot", "SMTP-2920-PIPE-03", FAIL),
    ),
    F(
        "data-354-with-refused-recipients",
        DataGetsReplyWithoutRecipients,
        ("smtp.pipelining.no-valid-recipient", "SMTP-2920-PIPE-07", FAIL),
    ),
    F(
        "last-rcpt-decides-data",
        LastRcptDecidesData,
        ("smtp.pipelining.ordered-replies", "SMTP-2920-PIPE-06", WARN),
    ),
    F(
        "size-limit-not-enforced",
        SizeLimitNotEnforced,
        ("smtp.size.declared-over-limit", "SMTP-1870-SIZE-03", FAIL),
    ),
    F(
        "size-garbage-accepted",
        SizeGarbageAccepted,
        # a malformed SIZE value ignored is lenient (Exim 4.96): non-strict
        ("smtp.size.declared-within-limit", "SMTP-1870-SIZE-11", WARN),
    ),
    F(
        "size-ends-the-data",
        SizeEndsTheData,
        ("smtp.size.not-the-end-of-data", "SMTP-1870-SIZE-05", FAIL),
    ),
    F(
        "body-value-case-sensitive",
        BodyValueCaseSensitive,
        ("smtp.8bitmime.body-parameter", "SMTP-6152-8BIT-02", FAIL),
    ),
    F(
        "enhanced-code-missing-on-rcpt",
        EnhancedCodeMissingOnRcpt,
        ("smtp.enhancedstatuscodes.on-every-reply", "SMTP-2034-ENH-03", FAIL),
    ),
    F(
        "enhanced-code-wrong-class",
        EnhancedCodeWrongClass,
        ("smtp.enhancedstatuscodes.on-every-reply", "SMTP-2034-ENH-04", FAIL),
    ),
    F(
        "enhanced-code-missing-after-helo",
        EnhancedCodeMissingAfterHelo,
        ("smtp.enhancedstatuscodes.after-helo", "SMTP-2034-ENH-06", FAIL),
    ),
    F(
        "bdat-chunk-not-discarded",
        BdatChunkNotDiscarded,
        ("smtp.chunking.refused-chunk-discarded", "SMTP-3030-BDAT-07", FAIL),
        ("smtp.chunking.bdat-after-last", "SMTP-3030-BDAT-07", FAIL),
        ("smtp.chunking.pipelined-chunks-after-refusal", "SMTP-3030-BDAT-08", FAIL),
    ),
    F(
        "bdat-after-last-250",
        BdatAfterLastAccepted,
        ("smtp.chunking.bdat-after-last", "SMTP-3030-BDAT-06", FAIL),
    ),
    F(
        "bdat-chunks-unstuffed",
        BdatChunksUnstuffed,
        ("smtp.chunking.bdat-last", "SMTP-3030-BDAT-04", FAIL),
    ),
    F(
        "empty-last-chunk-refused",
        EmptyLastChunkRefused,
        ("smtp.chunking.two-chunks-and-empty-last", "SMTP-3030-BDAT-05", FAIL),
    ),
    F(
        "data-after-bdat-354",
        DataAfterBdatAccepted,
        ("smtp.chunking.data-after-bdat", "SMTP-3030-BDAT-10", FAIL),
    ),
    F(
        "rset-keeps-chunks",
        RsetKeepsChunks,
        ("smtp.chunking.rset-drops-chunks", "SMTP-3030-BDAT-09", FAIL),
    ),
    F(
        "data-refused-after-bdat",
        DataRefusedAfterBdatSession,
        ("smtp.chunking.data-in-next-transaction", "SMTP-3030-BDAT-02", FAIL),
    ),
    F(
        "starttls-argument-accepted",
        StarttlsArgumentAccepted,
        ("smtp.starttls.argument-refused", "SMTP-3207-TLS-03", FAIL),
    ),
    F(
        "starttls-still-advertised",
        StarttlsStillAdvertised,
        ("smtp.starttls.session-reset", "SMTP-3207-TLS-10", FAIL),
    ),
    F(
        "ehlo-kept-across-tls",
        EhloKeptAcrossTls,
        ("smtp.starttls.session-reset", "SMTP-3207-TLS-08", WARN),
    ),
    F(
        "second-starttls-220",
        SecondStarttls220,
        ("smtp.starttls.not-twice", "SMTP-3207-TLS-11", FAIL),
    ),
    F(
        "starttls-injection",
        KeepsPlaintextAcrossTls,
        ("smtp.security.starttls-injection-noop", "SMTP-3207-TLS-12", FAIL),
        ("smtp.security.starttls-injection-ehlo", "SMTP-3207-TLS-12", FAIL),
        ("smtp.security.starttls-injection-mail", "SMTP-3207-TLS-12", FAIL),
        server=AnswersKeptPlaintextServer,
    ),
    F(
        "auth-cancel-not-501",
        AuthCancelNot501,
        ("smtp.security.auth-cancel", "SMTP-4954-AUTH-09", FAIL),
    ),
    F(
        "auth-bad-base64-run-as-command",
        AuthBadBase64RunAsCommand,
        ("smtp.security.auth-bad-base64", "SMTP-4954-AUTH-12", FAIL),
    ),
    F(
        "auth-unknown-mechanism-535",
        AuthUnknownMechanism535,
        ("smtp.security.auth-unknown-mechanism", "SMTP-4954-AUTH-05", FAIL),
    ),
    F(
        "second-auth-accepted",
        SecondAuthAccepted,
        ("smtp.auth.second-auth-refused", "SMTP-4954-AUTH-03", FAIL),
    ),
    F(
        "auth-in-transaction-accepted",
        AuthInTransactionAccepted,
        ("smtp.security.auth-in-transaction", "SMTP-4954-AUTH-04", FAIL),
    ),
    F(
        "auth-mechanism-case-sensitive",
        AuthMechanismCaseSensitive,
        ("smtp.auth.any-letter-case", "SMTP-4954-AUTH-30", FAIL),
    ),
    F(
        "plain-challenge-not-empty",
        PlainChallengeNotEmpty,
        ("smtp.auth.plain-with-challenge", "SMTP-4954-AUTH-08", FAIL),
    ),
    F(
        "login-challenge-not-base64",
        LoginChallengeNotBase64,
        ("smtp.auth.login-challenges", "SMTP-4954-AUTH-07", FAIL),
    ),
    F(
        "wrong-password-closes",
        WrongPasswordCloses,
        ("smtp.auth.bad-credentials", "SMTP-4954-AUTH-31", FAIL),
    ),
    F(
        "auth-success-without-delivery",
        AuthSuccessWithoutDelivery,
        ("smtp.auth.message-after-auth", "SMTP-4954-AUTH-19", FAIL),
    ),
]


# --- conforming variants: behaviours of deployed servers the corpus must not FAIL -----------
# (smtp-notes §7; each runs the scenarios in `select`, and none may FAIL or
# ERROR; `catches` lists those that must PASS outright.)


class BareLfRefusedAndClosed(SmtpSession):
    """A bare LF in the text is answered 451 at once and the connection
    closed (Haraka: '451 Bare line-feed'; smtp-notes §7 item 19)."""

    def feed(self, data: bytes) -> None:
        if self.state is State.DATA and re.search(rb"(?<!\r)\n|\r(?!\n)", data):
            self._refused_bare = True
            return
        super().feed(data)

    def replies(self) -> Any:
        if getattr(self, "_refused_bare", False):
            self._refused_bare = False
            yield self._close_with(451, "4.6.0", "bare line feed")
            return
        yield from super().replies()


class MailBeforeEhloAccepted(SmtpSession):
    """MAIL before EHLO/HELO accepted (Postfix smtpd_helo_required = no; §7 item 6)."""

    allowed_commands = _states_with("MAIL", State.GREETED)


class LongCommandsTaken(SmtpSession):
    """Command lines of up to 8 KiB taken whole (Postfix, Exim; §7 item 20)."""

    def _line_limit(self) -> int:
        return 8192


class ExpnNotOffered(SmtpSession):
    """EXPN answered 502 and not listed in EHLO (aiosmtpd, Mailpit; §7 item 13)."""

    def ehlo_keywords(self) -> list[str]:
        return [k for k in super().ehlo_keywords() if k != "EXPN"]

    def cmd_expn(self, args: str) -> Reply:
        return reply(502, "5.5.1", "EXPN not implemented")


class MultilineReplies(SmtpSession):
    """Every refusal is a two-line reply (Exim '500-…' / '500 …'; §7 item 5)."""

    def _finish_reply(self, response: Reply) -> bytes:
        if isinstance(response, Response) and response.code >= 400:
            response = Response(response.code, response.enhanced, (*response.lines, "more"))
        return super()._finish_reply(response)


class DataWithoutRecipients554(SmtpSession):
    """DATA without an accepted recipient answered 554 (§7 item 9)."""

    def refuse_out_of_sequence(self, keyword: str, args: str) -> Reply:
        if keyword == "DATA":
            return reply(554, "5.5.1", "no valid recipients")
        return super().refuse_out_of_sequence(keyword, args)


class UnknownRecipientAccepted(SmtpSession):
    """RCPT for a mailbox that does not exist accepted (bounced later; §7 item 11)."""

    def maildrop_for(self, forward_path: str) -> str:
        local = forward_path.rpartition("@")[0]
        if local.startswith("mailspec-no-such-user"):
            return "postmaster"
        return super().maildrop_for(forward_path)


class StarttlsRefusedWithPipelinedData(SmtpSession):
    """STARTTLS with plaintext pipelined behind it refused (Apache James 451)."""

    def cmd_starttls(self, args: str) -> Reply:
        if self._pending:
            self._pending.clear()
            return reply(454, "4.7.0", "TLS not available with pipelined commands")
        return super().cmd_starttls(args)


class LongCommandClosed(SmtpSession):
    """A too-long command line gets 500 and a close (OpenSMTPD; §7 item 21)."""

    def _finish_reply(self, response: Reply) -> bytes:
        if isinstance(response, Response) and response.lines == ("line too long",):
            response = Response(500, "5.5.6", response.lines, close=True)
        return super()._finish_reply(response)


A, U, S8 = "SMTP-4954-", "SMTP-6531-", "SMTP-6152-"
FAULTS += [
    F("noop-code-650", NoopCodeSixFifty, ("smtp.reply.grammar", M + "REPLY-01", FAIL)),
    F("help-line-600-octets", HelpLineTooLong, ("smtp.reply.grammar", M + "LEN-05", FAIL)),
    F(
        "noop-text-control-character",
        NoopTextWithControlCharacter,
        ("smtp.reply.grammar", M + "REPLY-06", FAIL),
    ),
    F(
        "quit-without-server-name",
        QuitWithoutServerName,
        ("smtp.reply.grammar", M + "REPLY-07", FAIL),
    ),
    F(
        "mail-refused-for-foreign-ehlo-name",
        MailRefusedForForeignEhloName,
        ("smtp.ehlo.name-not-matching-address", M + "EHLO-07", FAIL),
    ),
    F(
        "etrn-served-but-not-listed",
        EtrnServedButNotListed,
        ("smtp.ehlo.unlisted-command-not-served", M + "EHLO-03", FAIL),
    ),
    F(
        "unregistered-ehlo-keyword",
        UnregisteredEhloKeyword,
        ("smtp.ehlo.keywords-registered", M + "EHLO-09", WARN),
    ),
    F(
        "space-before-colon-accepted",
        SpaceBeforeColonAccepted,
        ("smtp.mail.space-before-colon", M + "MAIL-07", WARN),
    ),
    F(
        "mail-keeps-recipients",
        MailKeepsRecipients,
        ("smtp.mail.new-transaction-starts-empty", M + "MAIL-10", FAIL),
    ),
    F(
        "rcpt-parameters-ignored",
        RcptParametersIgnored,
        ("smtp.rcpt.unknown-parameter", M + "RCPT-12", FAIL),
    ),
    F(
        "sender-lower-cased",
        SenderLowerCased,
        ("smtp.mail.sender-case-preserved", M + "RCPT-13", FAIL),
    ),
    F(
        "underscore-domain-accepted",
        UnderscoreDomainAccepted,
        ("smtp.syntax.underscore-domain-refused", M + "SYNTAX-05", WARN),
    ),
    F(
        "control-characters-dropped",
        ControlCharactersDropped,
        ("smtp.syntax.control-character-in-address", M + "SYNTAX-08", WARN),
    ),
    F(
        "recipient-limit-drops-transaction",
        RecipientLimitDropsTransaction,
        ("smtp.limits.recipient-limit-keeps-recipients", M + "RCPT-11", FAIL),
    ),
    F(
        "vrfy-unknown-for-users",
        VrfyUnknownForUsers,
        ("smtp.vrfy.result-forms", M + "VRFY-08", FAIL),
    ),
    F(
        "received-date-zone-name",
        ReceivedDateWithZoneName,
        ("smtp.data.received-date-numeric-zone", M + "TRACE-05", WARN),
    ),
    F(
        "received-for-every-recipient",
        ReceivedForEveryRecipient,
        ("smtp.data.two-recipients", M + "TRACE-03", FAIL),
    ),
    F(
        "earlier-received-dropped",
        EarlierReceivedDropped,
        ("smtp.data.existing-received-kept", M + "TRACE-04", FAIL),
    ),
    F(
        "received-without-auth-mark",
        ReceivedWithoutAuthMark,
        ("smtp.auth.received-names-esmtpa", A + "AUTH-29", WARN),
    ),
    F(
        "received-without-utf8-mark",
        ReceivedWithoutUtf8Mark,
        ("smtp.smtputf8.received-names-utf8smtp", U + "UTF8-11", WARN),
    ),
    F(
        "noop-reply-held",
        NoopReplyHeld,
        ("smtp.pipelining.no-held-replies", "SMTP-2920-PIPE-09", FAIL),
    ),
    F(
        "unknown-command-reply-held",
        UnknownCommandReplyHeld,
        ("smtp.pipelining.no-held-replies", "SMTP-2920-PIPE-10", FAIL),
    ),
    F(
        "binary-command-line-closes",
        BinaryCommandLineCloses,
        ("smtp.chunking.binary-command-line-refused", "SMTP-3030-BDAT-12", FAIL),
    ),
    F(
        "binarymime-data-accepted",
        BinarymimeDataAccepted,
        ("smtp.chunking.binarymime", "SMTP-3030-BDAT-14", FAIL),
    ),
    F(
        "duplicate-mail-parameters-accepted",
        DuplicateMailParametersAccepted,
        ("smtp.8bitmime.two-body-parameters", S8 + "8BIT-04", WARN),
    ),
    F(
        "declared-size-counts-stuffing",
        DeclaredSizeCountsStuffing,
        ("smtp.size.declared-size-exact", "SMTP-1870-SIZE-07", FAIL),
    ),
    F(
        "message-size-not-enforced",
        MessageSizeNotEnforced,
        ("smtp.size.message-over-limit-refused", "SMTP-1870-SIZE-06", FAIL),
        config={"max_message_octets": 70_000},
    ),
    F(
        "size-limit-without-size-keyword",
        SizeLimitWithoutSizeKeyword,
        ("smtp.size.limit-advertised", M + "LEN-08", WARN),
        config={"max_message_octets": 70_000},
    ),
    Fault(
        "plaintext-auth-without-tls",
        "AUTH PLAIN and LOGIN offered on a connection without TLS",
        {"smtp.auth.plaintext-mechanisms-need-tls": (A + "AUTH-22", WARN)},
        config={"auth_without_tls": True},
    ),
    F(
        "auth-parameter-refused",
        AuthParameterRefused,
        ("smtp.auth.mail-auth-parameter", A + "AUTH-24", FAIL),
    ),
    F(
        "cram-initial-response-processed",
        CramInitialResponseProcessed,
        ("smtp.auth.cram-md5-initial-response-refused", A + "AUTH-10", FAIL),
    ),
    F(
        "lenient-base64",
        LenientBase64,
        ("smtp.security.auth-base64-bad-characters", A + "AUTH-13", FAIL),
    ),
    F(
        "auth-line-limit-512",
        AuthLineLimit512,
        ("smtp.security.auth-long-plain-response", A + "AUTH-14", FAIL),
    ),
    F(
        "over-long-sasl-response-keeps-exchange",
        OverLongSaslResponseKeepsExchange,
        ("smtp.security.auth-over-long-response", A + "AUTH-15", FAIL),
    ),
    F(
        "authzid-ignored",
        AuthzidIgnored,
        ("smtp.security.auth-authzid-not-prepared", A + "AUTH-17", FAIL),
    ),
    F(
        "demands-tls-but-serves-vrfy",
        DemandsTlsButServesVrfy,
        ("smtp.policy.required-tls-or-auth-530", "SMTP-3207-TLS-05", WARN),
    ),
    F(
        "vrfy-parameter-refused",
        VrfyParameterRefused,
        ("smtp.smtputf8.vrfy-parameter", U + "UTF8-05", FAIL),
    ),
]

REFUSE = {"refuse_sessions": True}
FAULTS += [
    F(
        "refused-session-accepts-mail",
        RefusedSessionAcceptsMail,
        ("smtp.greeting.refused-session", M + "GREET-07", FAIL),
        config=REFUSE,
    ),
    F(
        "refused-session-closes-at-once",
        RefusedSessionClosesAtOnce,
        ("smtp.greeting.refused-session", M + "GREET-04", FAIL),
        config=REFUSE,
    ),
    F(
        "refused-session-554-not-503",
        RefusedSession554ToEverything,
        # 554 to EHLO is outside its code set (REPLY-05) before GREET-05's 503 check
        ("smtp.greeting.refused-session", None, WARN),
        config=REFUSE,
    ),
    F(
        "refused-session-bare-greeting",
        RefusedSessionBareGreeting,
        ("smtp.greeting.refused-session", M + "GREET-06", WARN),
        config=REFUSE,
    ),
]

FAULTS += [
    Fault(
        "command-timeout-two-seconds",
        "the command timer fires after 2 s, inside DATA too",
        {
            "smtp.timeout.idle-five-minutes": (M + "TIMEOUT-01", WARN),
            "smtp.timeout.idle-inside-data": (M + "TIMEOUT-01", WARN),
        },
        command_timeout=2,
        slow=True,
    ),
    F(
        "timeout-says-250",
        TimeoutSays250,
        ("smtp.timeout.421-then-close", M + "TIMEOUT-02", FAIL),
        command_timeout=2,
        slow=True,
    ),
    Fault(
        "timeout-421-stays-open",
        TimeoutStaysOpen.__doc__ or "",
        {"smtp.timeout.421-then-close": (M + "TIMEOUT-02", FAIL)},
        server=TimeoutStaysOpen,
        command_timeout=2,
        slow=True,
    ),
]

CONFORMING: list[Fault] = [
    Fault(
        "vrfy-disabled-502",
        VrfyDisabled502.__doc__ or "",
        {},
        VrfyDisabled502,
        select=["smtp.vrfy.*", "smtp.sequence.*", "smtp.smtputf8.*"],
    ),
    Fault(
        "pipeconnect-keyword",
        PipeconnectKeyword.__doc__ or "",
        {},
        PipeconnectKeyword,
        select=["smtp.ehlo.*", "smtp.reply.*"],
    ),
    Fault(
        "lenient-envelope",
        LenientEnvelope.__doc__ or "",
        {},
        LenientEnvelope,
        select=["smtp.mail.*", "smtp.syntax.*", "smtp.rcpt.*"],
    ),
    Fault(
        "demands-tls",
        DemandsTls.__doc__ or "",
        {"smtp.policy.required-tls-or-auth-530": (None, "PASS")},
        DemandsTls,
        select=["smtp.policy.*", "smtp.starttls.*", "smtp.auth.*", "smtp.security.auth-*"],
    ),
    Fault(
        "short-command-timeout",
        "the reference with a 2 s command timer: 421, then the close",
        {"smtp.timeout.421-then-close": (None, "PASS")},
        command_timeout=2,
        slow=True,
        select=["smtp.timeout.421-then-close"],
    ),
    Fault(
        "timeout-closes-silently",
        TimeoutClosesSilently.__doc__ or "",
        {"smtp.timeout.421-then-close": (None, "PASS")},
        TimeoutClosesSilently,
        command_timeout=2,
        slow=True,
        select=["smtp.timeout.421-then-close"],
    ),
    Fault(
        "refuse-sessions",
        "the reference server's --refuse-sessions: 554, 503 to all but QUIT, 221",
        {"smtp.greeting.refused-session": (None, "PASS")},
        config=REFUSE,
        select=["smtp.greeting.refused-session"],
    ),
    Fault(
        "greets-521-and-closes",
        Greets521AndCloses.__doc__ or "",
        # RFC 7504: a 521 server may close at once; the 554 branch does not apply
        {"smtp.greeting.refused-session": (None, "SKIP")},
        Greets521AndCloses,
        select=["smtp.greeting.refused-session"],
    ),
    Fault(
        "stores-bare-line-ends",
        "bare CR/LF stored inside the one message (aiosmtpd 1.4.5+)",
        {s: (None, "PASS") for s in ("smtp.security.smuggling-lf-dot-lf",)},
        config={"refuse_bare_line_ends": False},
        select=["smtp.security.*", "smtp.data.*"],
    ),
    Fault(
        "bare-lf-refused-and-closed",
        BareLfRefusedAndClosed.__doc__ or "",
        {"smtp.security.smuggling-cr-dot-cr": (None, "PASS")},
        BareLfRefusedAndClosed,
        select=["smtp.security.smuggling-*", "smtp.data.bare-lf-dot-is-not-the-end"],
    ),
    Fault(
        "mail-before-ehlo-accepted",
        MailBeforeEhloAccepted.__doc__ or "",
        {"smtp.sequence.mail-before-ehlo": (None, "PASS")},
        MailBeforeEhloAccepted,
        select=["smtp.sequence.*", "seed.*"],
    ),
    Fault(
        "expn-not-offered",
        ExpnNotOffered.__doc__ or "",
        {
            "smtp.expn.listed-if-supported": (None, "PASS"),
            "smtp.expn.keeps-transaction": (None, "PASS"),
        },
        ExpnNotOffered,
        select=["smtp.expn.*"],
    ),
    Fault(
        "multiline-refusals",
        MultilineReplies.__doc__ or "",
        {"smtp.rcpt.without-mail": (None, "PASS")},
        MultilineReplies,
        select=["smtp.*"],
    ),
    Fault(
        "data-without-recipients-554",
        DataWithoutRecipients554.__doc__ or "",
        {"smtp.data.without-recipients": (None, "PASS")},
        DataWithoutRecipients554,
        select=["smtp.data.*", "smtp.sequence.*", "smtp.rset.*", "smtp.ehlo.repeat-*"],
    ),
    Fault(
        "unknown-recipient-accepted",
        UnknownRecipientAccepted.__doc__ or "",
        {"smtp.rcpt.unknown-mailbox": (None, "PASS")},
        UnknownRecipientAccepted,
        select=["smtp.rcpt.*", "smtp.vrfy.*"],
    ),
    Fault(
        "starttls-refused-with-pipelined-data",
        StarttlsRefusedWithPipelinedData.__doc__ or "",
        {"smtp.security.starttls-injection-noop": (None, "PASS")},
        StarttlsRefusedWithPipelinedData,
        select=["smtp.security.starttls-*", "smtp.starttls.*"],
    ),
    Fault(
        "long-command-closed",
        LongCommandClosed.__doc__ or "",
        {"smtp.limits.too-long-command": (None, "PASS")},
        LongCommandClosed,
        select=["smtp.limits.*", "smtp.line.*"],
    ),
    Fault(
        "long-commands-taken",
        LongCommandsTaken.__doc__ or "",
        {"smtp.limits.too-long-command": (None, "PASS")},
        LongCommandsTaken,
        select=["smtp.limits.*", "smtp.line.*"],
    ),
    Fault(
        "second-ehlo-refused",
        "a second EHLO refused with 503 (OpenSMTPD 6.8): the name-length limits still pass",
        {"smtp.limits.255-octet-domain": (None, "PASS")},
        SecondEhlo503,
        select=["smtp.limits.*"],
    ),
]
