"""Sans-I/O SMTP protocol core (RFC 5321) with PIPELINING (RFC 2920), SIZE
(RFC 1870), 8BITMIME (RFC 6152), ENHANCEDSTATUSCODES (RFC 2034 / RFC 3463),
STARTTLS (RFC 3207), AUTH PLAIN, LOGIN and CRAM-MD5 (RFC 4954, RFC 4616,
RFC 2195), SMTPUTF8 (RFC 6531) and CHUNKING with BINARYMIME (RFC 3030).

Nothing in this module touches a socket or an event loop: feed received
octets to :meth:`SmtpSession.receive_data` and send back the bytes it returns
(or :meth:`SmtpSession.feed` them and iterate :meth:`SmtpSession.replies`).
The only I/O is the injected :class:`~.delivery.Deliverer`, called once per
accepted message.

State machine
=============

A session is always in exactly one of these states::

    GREETED      greeting sent; no EHLO/HELO yet (again after STARTTLS)
    REFUSED      554 greeting sent (``refuse_sessions``): only QUIT is served
    READY        EHLO/HELO accepted, no mail transaction
    MAIL         MAIL accepted, no recipient yet
    RCPT         at least one recipient accepted
    CHUNKING     at least one BDAT chunk (without LAST) received
    DATA         354 sent: the octets are message text up to CRLF.CRLF
    CHUNK        BDAT accepted: the next n octets are chunk data
    AUTH         a SASL exchange is under way: the next line is a response
    TLS          220 sent to STARTTLS: the transport runs the handshake
    CLOSED       221 or 421 sent, or the connection was lost

Commands accepted in each command state (the table
:data:`SmtpSession.allowed_commands`; a known command that is not in its
state's row is refused with 503, an unknown one with 500, RFC 5321 section
4.3.2)::

    REFUSED   QUIT
    GREETED   EHLO HELO NOOP RSET VRFY EXPN HELP QUIT
    READY     EHLO HELO MAIL STARTTLS AUTH NOOP RSET VRFY EXPN HELP QUIT
    MAIL      EHLO HELO RCPT NOOP RSET VRFY EXPN HELP QUIT
    RCPT      EHLO HELO RCPT DATA BDAT NOOP RSET VRFY EXPN HELP QUIT
    CHUNKING  EHLO HELO BDAT NOOP RSET VRFY EXPN HELP QUIT

Transitions::

    (connect) --refuse_sessions----------------------->  REFUSED (554 greeting; 503 to all but QUIT)

    GREETED/READY/MAIL/RCPT/CHUNKING --EHLO/HELO ok----->  READY (transaction reset)
    READY     --MAIL ok------------------------------>  MAIL
    MAIL/RCPT --RCPT ok------------------------------>  RCPT
    RCPT      --DATA (354)--------------------------->  DATA --CRLF.CRLF--> READY
    RCPT/CHUNKING --BDAT n------------------------->  CHUNK --n octets--> CHUNKING
    RCPT/CHUNKING --BDAT n LAST-------------------->  CHUNK --n octets--> READY
    READY     --STARTTLS (220)----------------------->  TLS --handshake--> GREETED
    READY     --AUTH mech---------------------------->  AUTH --235/5yz--> READY
    any       --RSET--------------------------------->  same state, or READY if in a transaction
    any       --QUIT (221)--------------------------->  CLOSED
    any       --timeout (421)------------------------>  CLOSED

Rules that follow from the RFCs:

* Only CRLF ends a command line (RFC 5321 section 2.3.8); a line ending in a
  bare LF is refused with 500 and never executed.  A command line is at
  most 512 octets with CRLF (section 4.5.3.1.4), plus 26 for SIZE (RFC 1870
  section 3), 10 for SMTPUTF8 (RFC 6531 section 3.4) and 500 for AUTH=
  (RFC 4954 section 5) on MAIL; longer lines are discarded whole and
  answered with one 500.
* Message text ends only on CRLF.CRLF (section 4.1.1.4).  A bare CR or LF
  inside the text never ends a line, so ``\\n.\\n``, ``\\r.\\r``, ``\\n.\\r\\n``
  and the other smuggling forms stay inside the one message; by default
  such a message is refused at its end with 550 (section 2.3.8: bare line
  ends MUST NOT be accepted), never split into two.
* A leading dot is removed from every text line (section 4.5.2).  Text lines
  are limited to 1000 octets with CRLF, not counting that dot (section
  4.5.3.1.6); a longer line or a message over the SIZE limit is answered
  with 500 / 552 only once the end of data arrives (section 4.2.5).
* A BDAT chunk is always read and, if the command was refused, discarded
  (RFC 3030 section 2), so its octets never run as commands.
* After 220 to STARTTLS every octet already received is discarded (RFC 3207
  section 4.2, the CVE-2011-0411 family), and after the handshake the
  session forgets EHLO, the transaction and authentication.
* Each 2yz/4yz/5yz reply except the greeting and the replies to EHLO/HELO
  carries an RFC 3463 enhanced status code (RFC 2034 section 4).

Extension seam
==============

Every command is one method ``cmd_<keyword>(self, args: str) -> Response`` on
:class:`SmtpSession`; ``args`` is the rest of the line after the keyword and
one space.  Subclass to override a handler, the table, :meth:`ehlo_keywords`
or :meth:`greeting`; a handler may return raw ``bytes``, sent verbatim, so a
deliberately faulty server can put anything on the wire.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import logging
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from reference_server.smtp.delivery import Deliverer, DeliveryError, Envelope
from reference_server.users import UserDirectory

# --- Limits (named after the RFC text that sets them) -----------------------

#: RFC 5321 section 4.5.3.1.4: a command line is at most 512 octets with CRLF.
MAX_COMMAND_LINE_OCTETS = 512
#: RFC 1870 section 3: SIZE=n lengthens MAIL by up to 26 octets.
SIZE_PARAMETER_OCTETS = 26
#: RFC 6531 section 3.4: SMTPUTF8 lengthens MAIL by 10 octets.
SMTPUTF8_PARAMETER_OCTETS = 10
#: RFC 4954 section 5: AUTH=<mailbox> lengthens MAIL by 500 octets.
AUTH_PARAMETER_OCTETS = 500
MAX_MAIL_LINE_OCTETS = (
    MAX_COMMAND_LINE_OCTETS
    + SIZE_PARAMETER_OCTETS
    + SMTPUTF8_PARAMETER_OCTETS
    + AUTH_PARAMETER_OCTETS
)
#: RFC 4954 section 4: AUTH lines and SASL responses of at least 12288 octets.
MAX_AUTH_LINE_OCTETS = 12288
#: RFC 5321 section 4.5.3.1.6: a text line is 1000 octets with CRLF, the
#: stuffing dot (section 4.5.2) not counted.
MAX_TEXT_LINE_OCTETS = 1000
#: RFC 5321 section 4.5.3.1.7: at least 64K octets of message content.
MIN_MESSAGE_OCTETS = 64 * 1024
DEFAULT_MAX_MESSAGE_OCTETS = 32 * 1024 * 1024
#: RFC 5321 section 4.5.3.1.8: at least 100 recipients per transaction.
MAX_RECIPIENTS = 100
#: RFC 5321 sections 4.5.3.1.1-3: local-part 64, domain 255, path 256 octets.
MAX_LOCAL_PART_OCTETS = 64
MAX_DOMAIN_OCTETS = 255
MAX_PATH_OCTETS = 256
#: RFC 5321 section 4.5.3.2.7: the server waits at least 5 minutes for a command.
MIN_COMMAND_TIMEOUT_SECONDS = 300
DEFAULT_COMMAND_TIMEOUT_SECONDS = MIN_COMMAND_TIMEOUT_SECONDS
#: RFC 1870 section 4: the SIZE value has at most 20 digits.
MAX_SIZE_DIGITS = 20

IMPLEMENTATION_NAME = "mailspec-reference-smtp-server"

CRLF = b"\r\n"
END_OF_DATA = b"\r\n.\r\n"
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_KEYWORD = re.compile(r"[A-Za-z]{1,16}")
_BDAT_ARGUMENTS = re.compile(r"([0-9]{1,20})(?: (LAST))?", re.IGNORECASE)
# RFC 5321 section 4.1.2: Domain and address-literal, UTF-8 labels allowed
# (RFC 6531 section 3.3); checked loosely, as a server SHOULD.
_LETTER_DIGIT = "A-Za-z0-9\u0080-\U0010ffff"
_LABEL = rf"(?:[{_LETTER_DIGIT}](?:[{_LETTER_DIGIT}-]*[{_LETTER_DIGIT}])?)"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_ADDRESS_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]+\]")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]"
_QTEXT = r"[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e]"
_LOCAL_PART = re.compile(rf'{_ATEXT}+(?:\.{_ATEXT}+)*|"(?:{_QTEXT})*"')
_SOURCE_ROUTE = re.compile(r"@[^,:]+(?:,@[^,:]+)*:")
_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
# esmtp-value = 1*(%d33-60 / %d62-126) (RFC 5321 section 4.1.2), and any
# non-ASCII character (RFC 6531 section 3.3), as a negated class: the
# positive range up to U+10FFFF costs ~35 ms to compile at every start.
_ESMTP_VALUE = re.compile(r"[^\x00-\x20=\x7f]+")

log = logging.getLogger("reference_server.smtp.session")


class State(enum.Enum):
    REFUSED = "REFUSED"
    GREETED = "GREETED"
    READY = "READY"
    MAIL = "MAIL"
    RCPT = "RCPT"
    CHUNKING = "CHUNKING"
    DATA = "DATA"
    CHUNK = "CHUNK"
    AUTH = "AUTH"
    TLS = "TLS"
    CLOSED = "CLOSED"


#: States in which the next line is a command (the others consume text,
#: chunk octets or a SASL response, or nothing at all).
COMMAND_STATES = frozenset(
    {State.REFUSED, State.GREETED, State.READY, State.MAIL, State.RCPT, State.CHUNKING}
)
TRANSACTION_STATES = frozenset({State.MAIL, State.RCPT, State.CHUNKING})


@dataclass(frozen=True)
class Response:
    """One reply: a code, an RFC 3463 enhanced code (or ""), text lines.

    ``to_bytes`` writes ``code-`` on every line but the last and ``code SP``
    on the last (RFC 5321 section 4.2.1), the enhanced code on every line.
    ``close`` asks the transport to close after sending.
    """

    code: int
    enhanced: str
    lines: tuple[str, ...]
    close: bool = False

    def to_bytes(self) -> bytes:
        prefix = f"{self.enhanced} " if self.enhanced else ""
        out = []
        for number, line in enumerate(self.lines, start=1):
            separator = " " if number == len(self.lines) else "-"
            out.append(f"{self.code}{separator}{prefix}{line}".encode() + CRLF)
        return b"".join(out)


Reply = Response | bytes


def reply(code: int, enhanced: str, *lines: str, close: bool = False) -> Response:
    return Response(code, enhanced, lines or ("",), close)


class CommandError(Exception):
    """Raised inside a handler to refuse the command with ``reply``."""

    def __init__(self, refusal: Response) -> None:
        super().__init__(refusal.lines[0])
        self.reply = refusal


def refuse(code: int, enhanced: str, text: str) -> CommandError:
    return CommandError(reply(code, enhanced, text))


@dataclass
class SmtpConfig:
    """Behaviour switches shared by every session of one server."""

    #: The server's name: greeting, Received: "by", and local recipients' domain.
    domain: str = field(default_factory=socket.getfqdn)
    max_message_octets: int = DEFAULT_MAX_MESSAGE_OCTETS
    #: STARTTLS is offered only when the transport can do it.
    starttls_available: bool = False
    #: RFC 4954 section 14: PLAIN / LOGIN only under TLS unless allowed here.
    auth_without_tls: bool = False
    #: RFC 5321 section 2.3.8: refuse messages with a bare CR or LF (default),
    #: or store them verbatim (still inside one message, never split).
    refuse_bare_line_ends: bool = True
    #: Accept recipients in any domain (a catch-all for client testing):
    #: delivered to the maildrop named by the local part.
    any_domain: bool = False
    #: RFC 5321 section 3.1: refuse every session with a 554 greeting, then
    #: answer 503 to every command but QUIT and close only after QUIT.
    refuse_sessions: bool = False


@dataclass
class Transaction:
    """The mail transaction buffers of RFC 5321 section 3.3."""

    reverse_path: str = ""
    recipients: list[str] = field(default_factory=list)
    maildrops: list[str] = field(default_factory=list)
    declared_size: int | None = None
    body: str = "7BIT"
    smtputf8: bool = False
    content: bytearray = field(default_factory=bytearray)
    #: Set while reading text; the refusal is sent at the end of the data.
    failure: Response | None = None


SaslStep = Callable[[bytes], Reply]


class SmtpSession:
    """One SMTP conversation, from greeting to close, with no I/O of its own."""

    allowed_commands: Mapping[State, frozenset[str]] = {
        # RFC 5321 section 3.1: after a 554 greeting the server waits for QUIT
        # and answers everything else 503.
        State.REFUSED: frozenset({"QUIT"}),
        State.GREETED: frozenset({"EHLO", "HELO", "NOOP", "RSET", "VRFY", "EXPN", "HELP", "QUIT"}),
        State.READY: frozenset(
            {
                "EHLO",
                "HELO",
                "MAIL",
                "STARTTLS",
                "AUTH",
                "NOOP",
                "RSET",
                "VRFY",
                "EXPN",
                "HELP",
                "QUIT",
            }
        ),
        State.MAIL: frozenset(
            {"EHLO", "HELO", "RCPT", "NOOP", "RSET", "VRFY", "EXPN", "HELP", "QUIT"}
        ),
        State.RCPT: frozenset(
            {"EHLO", "HELO", "RCPT", "DATA", "BDAT", "NOOP", "RSET", "VRFY", "EXPN", "HELP", "QUIT"}
        ),
        State.CHUNKING: frozenset(
            {"EHLO", "HELO", "BDAT", "NOOP", "RSET", "VRFY", "EXPN", "HELP", "QUIT"}
        ),
    }
    known_commands: frozenset[str] = frozenset().union(*allowed_commands.values())
    #: Commands that exist only once EHLO negotiated them (RFC 5321 section 2.2).
    extension_commands: frozenset[str] = frozenset({"STARTTLS", "AUTH", "BDAT"})
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN", "CRAM-MD5")

    def __init__(
        self,
        deliverer: Deliverer,
        users: UserDirectory,
        config: SmtpConfig | None = None,
        *,
        session_id: str = "-",
        peer: str = "-",
        tls: bool = False,
    ) -> None:
        self.deliverer = deliverer
        self.users = users
        self.config = config or SmtpConfig()
        self.session_id = session_id
        self.peer = peer
        self.tls = tls
        self.state = State.REFUSED if self.config.refuse_sessions else State.GREETED
        self.client_name: str | None = None
        self.extended = False  # EHLO (True) or HELO (False)
        self.authenticated_user: str | None = None
        self.transaction = Transaction()
        self._pending = bytearray()
        self._discarding_long_line = False
        self._text_line_start = True  # DATA: at the start of a text line
        self._text_line_octets = 0  # DATA: octets of the current text line so far
        self._chunk_remaining = 0
        self._chunk_last = False
        self._chunk_refusal: Response | None = None
        self._resume_state = State.READY  # where a refused BDAT chunk returns to
        self._sasl_step: SaslStep | None = None
        self._login_user = b""
        self._cram_challenge = ""

    # --- Public driver API ----------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def tls_requested(self) -> bool:
        """220 was sent to STARTTLS: the transport must run the handshake now."""
        return self.state is State.TLS

    def greeting(self) -> bytes:
        """The 220 greeting; the server's name is its first word (section 4.3.1).
        A refusing server greets 554 with a reason (section 3.1)."""
        self._log("connect", peer=self.peer, tls=self.tls)
        if self.state is State.REFUSED:
            return reply(
                554, "", f"{self.config.domain} no SMTP service here: sessions refused by policy"
            ).to_bytes()
        return reply(220, "", f"{self.config.domain} ESMTP {IMPLEMENTATION_NAME} ready").to_bytes()

    def receive_data(self, data: bytes) -> bytes:
        self.feed(data)
        return b"".join(self.replies())

    def feed(self, data: bytes) -> None:
        if self.state not in (State.CLOSED, State.TLS):
            self._pending += data

    def replies(self) -> Iterator[bytes]:
        """Process buffered octets, yielding each reply in command order.

        Stops after a reply that closes the session or starts TLS: octets
        after QUIT are never run, octets after STARTTLS are discarded."""
        while self.state not in (State.CLOSED, State.TLS):
            if self.state is State.DATA:
                produced = self._read_text()
            elif self.state is State.CHUNK:
                produced = self._read_chunk()
            else:
                produced = self._read_line()
            if produced is None:
                return
            if produced:  # b"": a command whose reply comes later (BDAT)
                yield produced

    def tls_established(self) -> None:
        """The handshake after STARTTLS succeeded: back to the initial state,
        forgetting everything the client said before (RFC 3207 section 4.2)."""
        assert self.state is State.TLS
        self.tls = True
        self.client_name = None
        self.extended = False
        self.authenticated_user = None
        self.transaction = Transaction()
        self._pending.clear()
        self.state = State.GREETED
        self._log("tls")

    def timeout(self) -> bytes:
        """The command timer fired: 421, then close (RFC 5321 section 3.8)."""
        self._log("timeout", state=self.state.value)
        return self._close_with(421, "4.4.2", "timeout waiting for the client, closing")

    def shutdown(self) -> bytes:
        """The server stops: 421 (RFC 5321 section 3.8)."""
        self._log("shutdown", state=self.state.value)
        return self._close_with(421, "4.3.2", "service shutting down, closing")

    def connection_lost(self) -> None:
        """The transport went away: an unfinished transaction is dropped
        (RFC 5321 section 4.1.1.10); delivered messages stay."""
        if not self.closed:
            self._log("connection-lost", state=self.state.value)
            self._finish()

    # --- Command lines --------------------------------------------------------

    def _line_limit(self) -> int:
        if self.state is State.AUTH:
            return MAX_AUTH_LINE_OCTETS
        prefix = bytes(self._pending[:5]).upper()
        if prefix.startswith(b"AUTH "):
            return MAX_AUTH_LINE_OCTETS
        if prefix.startswith(b"MAIL "):
            return MAX_MAIL_LINE_OCTETS
        return MAX_COMMAND_LINE_OCTETS

    def _read_line(self) -> bytes | None:
        newline = self._pending.find(b"\n")
        limit = self._line_limit()
        if newline < 0:
            if len(self._pending) > limit:
                # Bounded buffer: drop the excess, answer once the line ends.
                self._pending.clear()
                self._discarding_long_line = True
            return None
        line = bytes(self._pending[:newline])
        del self._pending[: newline + 1]
        if self._discarding_long_line or len(line) + 1 > limit:
            self._discarding_long_line = False
            if self.state is State.AUTH:
                # RFC 4954 section 4: an over-long response fails the exchange.
                self._sasl_step = None
                self.state = State.READY
            return self._finish_reply(reply(500, "5.5.6", "line too long"))
        if not line.endswith(b"\r"):
            # RFC 5321 section 2.3.8: a bare LF does not end a command line.
            return self._finish_reply(reply(500, "5.5.2", "line must end with CRLF"))
        line = line[:-1]
        if self.state is State.AUTH:
            return self._finish_reply(self._sasl_response(line))
        return self._finish_reply(self._dispatch(line))

    def _finish_reply(self, response: Reply) -> bytes:
        if isinstance(response, bytes):
            return response
        if response.close:
            self._finish()
        return response.to_bytes()

    def _dispatch(self, line: bytes) -> Reply:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return reply(500, "5.5.2", "command is not valid UTF-8")
        if _CONTROL_CHARACTERS.search(text):
            return reply(500, "5.5.2", "control characters are not allowed in commands")
        keyword, separator, rest = text.partition(" ")
        if not _KEYWORD.fullmatch(keyword):
            return reply(500, "5.5.2", "command not recognized")
        keyword = keyword.upper()
        if keyword not in self.known_commands:
            return reply(500, "5.5.2", "command not recognized")
        if not text.isascii() and keyword not in ("MAIL", "RCPT", "VRFY", "EXPN"):
            return reply(500, "5.5.2", "non-ASCII octets in a command")
        if keyword not in self.allowed_commands.get(self.state, frozenset()):
            return self.refuse_out_of_sequence(keyword, rest)
        if keyword in self.extension_commands and not self.extended:
            return self.refuse_out_of_sequence(keyword, rest)
        self._log("command", level=logging.DEBUG, keyword=keyword, state=self.state.value)
        handler: Callable[[str], Reply] = getattr(self, "cmd_" + keyword.lower())
        try:
            return handler(rest if separator else "")
        except CommandError as refusal:
            return refusal.reply
        except Exception:
            log.exception("session=%s handler for %s failed", self.session_id, keyword)
            return reply(451, "4.3.0", "internal server error")

    def refuse_out_of_sequence(self, keyword: str, args: str) -> Reply:
        """503 for a command its state does not allow (RFC 5321 section 4.1.4);
        a refused BDAT's chunk is still read and discarded (RFC 3030 section 2)."""
        refusal = reply(503, "5.5.1", self._sequence_hint(keyword))
        if keyword == "BDAT":
            match = _BDAT_ARGUMENTS.fullmatch(args)
            if match is None:
                return reply(501, "5.5.4", "syntax: BDAT <octets> [LAST]")
            self._start_chunk(int(match.group(1)), bool(match.group(2)), refusal)
            return b""
        return refusal

    def _sequence_hint(self, keyword: str) -> str:
        if self.state is State.REFUSED:
            return "session refused at connect: only QUIT"
        if self.state is State.GREETED and keyword in ("MAIL", "STARTTLS", "AUTH", "BDAT"):
            return "send EHLO first"
        if keyword in self.extension_commands and not self.extended:
            return f"{keyword} needs EHLO, not HELO"
        hints = {
            "MAIL": "nested MAIL command" if self.state in TRANSACTION_STATES else "bad sequence",
            "RCPT": "need MAIL before RCPT",
            "DATA": "need RCPT before DATA"
            if self.state is not State.CHUNKING
            else ("DATA after BDAT in the same transaction"),
            "BDAT": "need MAIL and RCPT before BDAT",
            "STARTTLS": "STARTTLS not allowed now",
            "AUTH": "AUTH not allowed now",
        }
        return hints.get(keyword, "bad sequence of commands")

    # --- Hello ----------------------------------------------------------------

    def ehlo_keywords(self) -> list[str]:
        """EHLO keywords (RFC 5321 section 4.1.1.1), depending on TLS state."""
        keywords = [
            "PIPELINING",
            f"SIZE {self.config.max_message_octets}",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
            "CHUNKING",
            "BINARYMIME",
            "EXPN",
            "HELP",
        ]
        if self.config.starttls_available and not self.tls:
            keywords.append("STARTTLS")
        if self.auth_offered():
            keywords.append("AUTH " + " ".join(self.auth_mechanisms))
        return keywords

    def auth_offered(self) -> bool:
        return self.authenticated_user is None and (self.tls or self.config.auth_without_tls)

    def _hello(self, args: str, extended: bool) -> str:
        name = args.strip(" ")
        if not name or " " in name:
            raise refuse(501, "", f"syntax: {'EHLO' if extended else 'HELO'} domain")
        if not (_DOMAIN.fullmatch(name) or _ADDRESS_LITERAL.fullmatch(name)):
            raise refuse(501, "", "EHLO/HELO argument is not a domain or address literal")
        # RFC 5321 section 4.1.4: a later EHLO resets the state like RSET.
        self.transaction = Transaction()
        self.client_name = name
        self.extended = extended
        self.state = State.READY
        self._log("hello", extended=extended, name=name)
        return name

    def cmd_ehlo(self, args: str) -> Reply:
        name = self._hello(args, extended=True)
        return Response(250, "", (f"{self.config.domain} greets {name}", *self.ehlo_keywords()))

    def cmd_helo(self, args: str) -> Reply:
        self._hello(args, extended=False)
        return reply(250, "", self.config.domain)

    # --- Mail transaction -----------------------------------------------------

    def cmd_mail(self, args: str) -> Reply:
        path_text, parameters = self._split_path(args, "FROM:")
        smtputf8 = "SMTPUTF8" in {name for name, _ in parameters}
        reverse_path = self._parse_path(path_text, allow_null=True, smtputf8=smtputf8, mail=True)
        transaction = Transaction(reverse_path=reverse_path)
        seen: set[str] = set()
        for name, value in parameters:
            if name in seen:
                raise refuse(501, "5.5.4", f"parameter {name} given twice")
            seen.add(name)
            self._mail_parameter(transaction, name, value)
        self.transaction = transaction
        self.state = State.MAIL
        return reply(250, "2.1.0", "sender ok")

    def _mail_parameter(self, transaction: Transaction, name: str, value: str | None) -> None:
        if not self.extended:
            raise refuse(555, "5.5.4", f"{name} not recognized (no EHLO)")
        if name == "SIZE":
            # RFC 1870 section 6.1: a declared size over the limit is refused.
            if value is None or not value.isdigit() or len(value) > MAX_SIZE_DIGITS:
                raise refuse(501, "5.5.4", "SIZE needs a decimal number")
            if int(value) > self.config.max_message_octets:
                raise refuse(552, "5.3.4", "message size exceeds the fixed maximum")
            transaction.declared_size = int(value)
        elif name == "BODY":
            # RFC 6152 section 2: BODY=7BIT or BODY=8BITMIME, any case;
            # RFC 3030 section 3: BODY=BINARYMIME (sent with BDAT only).
            if value is None or value.upper() not in ("7BIT", "8BITMIME", "BINARYMIME"):
                raise refuse(501, "5.5.4", "BODY must be 7BIT, 8BITMIME or BINARYMIME")
            transaction.body = value.upper()
        elif name == "SMTPUTF8":
            if value is not None:
                raise refuse(501, "5.5.4", "SMTPUTF8 takes no value")
            transaction.smtputf8 = True
        elif name == "AUTH":
            # RFC 4954 section 5: accepted; a trusted submitter is not modelled.
            if value is None:
                raise refuse(501, "5.5.4", "AUTH= needs a value")
        else:
            raise refuse(555, "5.5.4", f"MAIL parameter {name} not recognized")

    def cmd_rcpt(self, args: str) -> Reply:
        path_text, parameters = self._split_path(args, "TO:")
        if parameters:
            raise refuse(555, "5.5.4", f"RCPT parameter {parameters[0][0]} not recognized")
        forward_path = self._parse_path(
            path_text, allow_null=False, smtputf8=self.transaction.smtputf8, mail=False
        )
        if len(self.transaction.recipients) >= MAX_RECIPIENTS:
            # RFC 5321 section 4.5.3.1.10: too many recipients is 452, not 552.
            raise refuse(452, "4.5.3", "too many recipients")
        maildrop = self.maildrop_for(forward_path)
        self.transaction.recipients.append(forward_path)
        self.transaction.maildrops.append(maildrop)
        self.state = State.RCPT
        return reply(250, "2.1.5", "recipient ok")

    def maildrop_for(self, forward_path: str) -> str:
        """The maildrop (user name) a recipient is delivered to, or a refusal."""
        local, at, domain = forward_path.rpartition("@")
        if not at:
            # RFC 5321 section 4.5.1: <Postmaster> without a domain, any case.
            if forward_path.lower() == "postmaster":
                return "postmaster"
            raise refuse(550, "5.1.3", "a recipient needs a domain")
        if not self.config.any_domain and domain.lower() != self.config.domain.lower():
            # RFC 5321 section 7.9: relaying refused with 550.
            raise refuse(550, "5.7.1", "relaying denied: not a local domain")
        if local.lower() == "postmaster":
            return "postmaster"
        if self.users.secret_for(local) is None:
            raise refuse(550, "5.1.1", "no such mailbox")
        return local

    def _split_path(self, args: str, prefix: str) -> tuple[str, list[tuple[str, str | None]]]:
        """``FROM:<path> params`` to the path text and the ESMTP parameters."""
        if args[: len(prefix)].upper() != prefix:
            raise refuse(501, "5.5.4", f"syntax: {prefix}<address> [parameters]")
        rest = args[len(prefix) :].lstrip(" ")  # a space after the colon is tolerated
        if not rest.startswith("<"):
            raise refuse(501, "5.5.4", "the address must be in angle brackets")
        close = rest.find(">")
        if close < 0:
            raise refuse(501, "5.5.4", "the address has no closing '>'")
        path_text, tail = rest[1:close], rest[close + 1 :]
        if tail and not tail.startswith(" "):
            raise refuse(501, "5.5.4", "text after the address")
        parameters: list[tuple[str, str | None]] = []
        for token in tail.split(" "):
            if not token:
                continue
            name, equals, value = token.partition("=")
            if not _ESMTP_KEYWORD.fullmatch(name) or (equals and not _ESMTP_VALUE.fullmatch(value)):
                raise refuse(501, "5.5.4", f"malformed parameter {token!r}")
            parameters.append((name.upper(), value if equals else None))
        return path_text, parameters

    def _parse_path(self, text: str, *, allow_null: bool, smtputf8: bool, mail: bool) -> str:
        if len(text) + 2 > MAX_PATH_OCTETS:
            raise refuse(501, "5.1.3", "path too long")
        if not text.isascii() and not smtputf8:
            # RFC 6531 section 3.5: 550 for MAIL, 553 for RCPT, X.6.7.
            raise refuse(550 if mail else 553, "5.6.7", "non-ASCII address needs SMTPUTF8")
        if not text:
            if allow_null:
                return ""
            raise refuse(501, "5.1.3", "an empty forward-path is not allowed")
        route = _SOURCE_ROUTE.match(text)
        if route:
            text = text[route.end() :]  # RFC 5321 section 3.3: recognised and stripped
        if "@" not in text:
            if not mail and text.lower() == "postmaster":
                return text
            raise refuse(501, "5.1.3", "address needs a local part and a domain")
        local, _, domain = text.rpartition("@")
        if not _LOCAL_PART.fullmatch(local) or not (
            _DOMAIN.fullmatch(domain) or _ADDRESS_LITERAL.fullmatch(domain)
        ):
            raise refuse(501, "5.1.3", "malformed address")
        if len(local.encode()) > MAX_LOCAL_PART_OCTETS:
            raise refuse(501, "5.1.3", "local part too long")
        if len(domain.encode()) > MAX_DOMAIN_OCTETS:
            raise refuse(501, "5.1.3", "domain too long")
        return text

    def cmd_data(self, args: str) -> Reply:
        if args:
            raise refuse(501, "5.5.4", "DATA takes no arguments")
        if self.transaction.body == "BINARYMIME":
            # RFC 3030 section 3: a BINARYMIME message is sent with BDAT only.
            raise refuse(503, "5.5.1", "BODY=BINARYMIME needs BDAT, not DATA")
        self.state = State.DATA
        self._text_line_start = True
        self._text_line_octets = 0
        return reply(354, "", "end data with <CR><LF>.<CR><LF>")

    def cmd_bdat(self, args: str) -> Reply:
        match = _BDAT_ARGUMENTS.fullmatch(args)
        if match is None:
            raise refuse(501, "5.5.4", "syntax: BDAT <octets> [LAST]")
        self._start_chunk(int(match.group(1)), bool(match.group(2)), None)
        return b""

    def _start_chunk(self, octets: int, last: bool, refusal: Response | None) -> None:
        self._chunk_remaining = octets
        self._chunk_last = last
        self._chunk_refusal = refusal
        self._resume_state = self.state
        self.state = State.CHUNK

    # --- Message text ---------------------------------------------------------

    def _read_text(self) -> bytes | None:
        """Consume DATA text up to CRLF.CRLF; the reply once it ends.

        The text is split on CRLF only; lone CR or LF octets stay inside
        their line, so no bare-line-end form can end the data."""
        pending = self._pending
        position = 0
        while True:
            line_end = pending.find(CRLF, position)
            if line_end < 0:
                break
            line = bytes(pending[position:line_end])
            position = line_end + 2
            if self._text_line_start and line == b".":
                del pending[:position]
                return self._finish_reply(self._end_of_data())
            self._text_line(line, starts_line=self._text_line_start, ends_line=True)
            self._text_line_start = True
        # Keep a possible CR of a split CRLF; the rest of a partial line is text.
        keep_from = len(pending) - 1 if pending.endswith(b"\r") else len(pending)
        if keep_from > position:
            partial = bytes(pending[position:keep_from])
            if self._text_line_start and partial == b".":
                keep_from = position  # maybe the end: wait for more octets
            else:
                self._text_line(partial, starts_line=self._text_line_start, ends_line=False)
                self._text_line_start = False
                position = keep_from
        del pending[:position]
        return None

    def _text_line(self, data: bytes, *, starts_line: bool, ends_line: bool) -> None:
        transaction = self.transaction
        if starts_line:
            self._text_line_octets = 0
            if data.startswith(b"."):
                data = data[1:]  # RFC 5321 section 4.5.2: remove the stuffing dot
        self._text_line_octets += len(data)
        if transaction.failure is None:
            if self.config.refuse_bare_line_ends and (b"\r" in data or b"\n" in data):
                transaction.failure = reply(
                    550, "5.6.0", "message contains a bare CR or LF (RFC 5321 section 2.3.8)"
                )
            elif self._text_line_octets + 2 > MAX_TEXT_LINE_OCTETS:
                transaction.failure = reply(500, "5.5.6", "text line too long")
        self._append_content(data + (CRLF if ends_line else b""))

    def _append_content(self, data: bytes) -> None:
        transaction = self.transaction
        if transaction.failure is not None:
            return  # the message will be refused: keep nothing
        if len(transaction.content) + len(data) > self.config.max_message_octets:
            transaction.failure = reply(552, "5.3.4", "message size exceeds the fixed maximum")
            transaction.content.clear()
            return
        transaction.content += data

    def _end_of_data(self) -> Reply:
        self.state = State.READY
        return self._deliver()

    def _read_chunk(self) -> bytes | None:
        if self._chunk_remaining:
            if not self._pending:
                return None
            piece = bytes(self._pending[: self._chunk_remaining])
            del self._pending[: len(piece)]
            self._chunk_remaining -= len(piece)
            if self._chunk_refusal is None:
                self._append_content(piece)
            if self._chunk_remaining:
                return None
        return self._finish_reply(self._end_of_chunk())

    def _end_of_chunk(self) -> Reply:
        if self._chunk_refusal is not None:
            self.state = self._resume_state
            return self._chunk_refusal
        if not self._chunk_last:
            self.state = State.CHUNKING
            if self.transaction.failure is not None:
                # RFC 3030 section 2: a failed chunk fails the transaction.
                failure = self.transaction.failure
                self.transaction = Transaction()
                self.state = State.READY
                return failure
            return reply(250, "2.0.0", "chunk accepted")
        self.state = State.READY
        return self._deliver()

    def _deliver(self) -> Reply:
        transaction = self.transaction
        self.transaction = Transaction()
        if transaction.failure is not None:
            self._log("message-refused", reason=transaction.failure.lines[0])
            return transaction.failure
        envelope = Envelope(
            reverse_path=transaction.reverse_path,
            recipients=tuple(transaction.recipients),
            maildrops=tuple(transaction.maildrops),
            content=bytes(transaction.content),
            client_name=self.client_name or "",
            peer=self.peer,
            protocol=self.received_protocol(transaction),
            server_domain=self.config.domain,
        )
        try:
            message_id = self.deliverer.deliver(envelope)
        except DeliveryError as problem:
            self._log("delivery-failed", detail=str(problem))
            return reply(451, "4.3.0", "local error in processing, try again later")
        self._log(
            "delivered",
            id=message_id,
            recipients=len(envelope.recipients),
            octets=len(envelope.content),
        )
        return reply(250, "2.0.0", f"message accepted as {message_id}")

    def received_protocol(self, transaction: Transaction) -> str:
        """The ``with`` of Received: (RFC 3848, RFC 6531 section 4.3)."""
        if not self.extended:
            return "SMTP"
        base = "UTF8SMTP" if transaction.smtputf8 else "ESMTP"
        suffix = ("S" if self.tls else "") + ("A" if self.authenticated_user else "")
        return base + suffix

    # --- Other commands -------------------------------------------------------

    def cmd_rset(self, args: str) -> Reply:
        if args:
            raise refuse(501, "5.5.4", "RSET takes no arguments")
        self.transaction = Transaction()
        if self.state in TRANSACTION_STATES:
            self.state = State.READY
        return reply(250, "2.0.0", "reset")

    def cmd_noop(self, args: str) -> Reply:
        return reply(250, "2.0.0", "OK")  # RFC 5321 section 4.1.1.9: arguments ignored

    def cmd_vrfy(self, args: str) -> Reply:
        if not args.strip(" "):
            raise refuse(501, "5.5.4", "syntax: VRFY <user or mailbox>")
        # RFC 5321 section 7.3: verification disabled is answered with 252.
        return reply(252, "2.5.0", "cannot VRFY user, but will accept the message")

    def cmd_expn(self, args: str) -> Reply:
        if not args.strip(" "):
            raise refuse(501, "5.5.4", "syntax: EXPN <list>")
        return reply(252, "2.5.0", "cannot EXPN lists here, but will accept the message")

    def cmd_help(self, args: str) -> Reply:
        topic = args.strip(" ").upper()
        if topic and topic not in self.known_commands:
            raise refuse(504, "5.5.4", f"no help for {topic}")
        if topic:
            return reply(214, "2.0.0", f"{topic}: see RFC 5321 and its extensions")
        commands = " ".join(sorted(self.known_commands))
        return Response(214, "2.0.0", ("commands:", commands, "end of HELP"))

    def cmd_quit(self, args: str) -> Reply:
        if args:
            raise refuse(501, "5.5.4", "QUIT takes no arguments")
        self._log("quit")
        return reply(221, "2.0.0", f"{self.config.domain} closing connection", close=True)

    def cmd_starttls(self, args: str) -> Reply:
        if args:
            raise refuse(501, "5.5.4", "STARTTLS takes no arguments")
        if self.tls:
            raise refuse(503, "5.5.1", "TLS already active")
        if not self.config.starttls_available:
            raise refuse(502, "5.5.1", "STARTTLS not offered by this server")
        self.state = State.TLS
        self._pending.clear()  # RFC 3207 section 4.2: pipelined plaintext is discarded
        return reply(220, "2.0.0", "ready to start TLS")

    # --- AUTH (RFC 4954) ------------------------------------------------------

    def cmd_auth(self, args: str) -> Reply:
        if self.authenticated_user is not None:
            raise refuse(503, "5.5.1", "already authenticated")
        if not (self.tls or self.config.auth_without_tls):
            raise refuse(538, "5.7.11", "encryption required for AUTH")
        mechanism, _, initial = args.partition(" ")
        mechanism = mechanism.upper()
        if not mechanism:
            raise refuse(501, "5.5.4", "syntax: AUTH mechanism [initial-response]")
        if mechanism not in self.auth_mechanisms:
            raise refuse(504, "5.5.4", f"mechanism {mechanism} not supported")
        if mechanism == "PLAIN":
            self._sasl_step = self._plain_response
            if not initial:
                self.state = State.AUTH
                return reply(334, "", "")
        elif mechanism == "CRAM-MD5":
            # RFC 2195: the server speaks first, so RFC 4954 section 4 refuses
            # an initial response with 501.
            if initial:
                raise refuse(501, "5.7.0", "CRAM-MD5 takes no initial response")
            self._cram_challenge = (
                f"<{secrets.token_hex(8)}.{int(time.time())}@{self.config.domain}>"
            )
            self._sasl_step = self._cram_response
            self.state = State.AUTH
            return reply(334, "", base64.b64encode(self._cram_challenge.encode()).decode())
        else:
            self._sasl_step = self._login_username
            if not initial:
                self.state = State.AUTH
                return reply(334, "", base64.b64encode(b"Username:").decode())
        # RFC 4954 section 4: "=" is an empty initial response.
        return self._sasl_feed(b"" if initial == "=" else initial.encode("ascii", "replace"))

    def _sasl_response(self, line: bytes) -> Reply:
        self.state = State.READY
        if line == b"*":
            self._sasl_step = None
            return reply(501, "5.7.0", "authentication cancelled")
        return self._sasl_feed(line)

    def _sasl_feed(self, encoded: bytes) -> Reply:
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            self._sasl_step = None
            self.state = State.READY
            return reply(501, "5.5.2", "cannot decode the base64 response")
        step = self._sasl_step
        assert step is not None
        return step(decoded)

    def _plain_response(self, decoded: bytes) -> Reply:
        parts = decoded.split(b"\x00")
        if len(parts) != 3:
            return self._auth_failed()
        authzid, authcid, password = parts
        if authzid and authzid != authcid:
            return self._auth_failed()
        return self._check_password(authcid, password)

    def _cram_response(self, decoded: bytes) -> Reply:
        """RFC 2195: ``user SP hex(HMAC-MD5(secret, challenge))``."""
        self._sasl_step = None
        self.state = State.READY
        user_octets, _, digest = decoded.rpartition(b" ")
        try:
            user = user_octets.decode("utf-8")
        except UnicodeDecodeError:
            return self._auth_failed()
        secret = self.users.secret_for(user)
        if secret is None:
            return self._auth_failed(user)
        wanted = hmac.new(secret.encode(), self._cram_challenge.encode(), "md5").hexdigest()
        if not hmac.compare_digest(wanted.encode(), digest.lower()):
            return self._auth_failed(user)
        self.authenticated_user = user
        self._log("auth", user=user, mechanism="CRAM-MD5")
        return reply(235, "2.7.0", "authentication succeeded")

    def _login_username(self, decoded: bytes) -> Reply:
        self._login_user = decoded
        self._sasl_step = self._login_password
        self.state = State.AUTH
        return reply(334, "", base64.b64encode(b"Password:").decode())

    def _login_password(self, decoded: bytes) -> Reply:
        return self._check_password(self._login_user, decoded)

    def _check_password(self, user_octets: bytes, password: bytes) -> Reply:
        self._sasl_step = None
        self.state = State.READY
        try:
            user = user_octets.decode("utf-8")
        except UnicodeDecodeError:
            return self._auth_failed()
        secret = self.users.secret_for(user)
        if secret is None or not hmac.compare_digest(secret.encode("utf-8"), password):
            return self._auth_failed(user)
        self.authenticated_user = user
        self._log("auth", user=user)
        return reply(235, "2.7.0", "authentication succeeded")

    def _auth_failed(self, user: str = "?") -> Reply:
        self._sasl_step = None
        self.state = State.READY
        self._log("auth-failed", user=user)
        return reply(535, "5.7.8", "authentication credentials invalid")

    # --- Internals ------------------------------------------------------------

    def _close_with(self, code: int, enhanced: str, text: str) -> bytes:
        if self.closed:
            return b""
        data = reply(code, enhanced, f"{self.config.domain} {text}").to_bytes()
        self._finish()
        return data

    def _finish(self) -> None:
        self.transaction = Transaction()
        self.state = State.CLOSED
        self._pending.clear()

    def _log(self, event: str, *, level: int = logging.INFO, **fields: object) -> None:
        """One structured line per event; callers never pass secrets."""
        if not log.isEnabledFor(level):
            return
        details = " ".join(f"{key}={value}" for key, value in fields.items())
        log.log(level, "session=%s event=%s %s", self.session_id, event, details)
