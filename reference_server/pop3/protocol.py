"""Sans-I/O POP3 protocol core (RFC 1939, RFC 2449, RFC 3206, LAST from RFC 1225,
STLS from RFC 2595, SASL AUTH from RFC 5034 / RFC 1734, UTF8 and LANG from RFC 6856).

Nothing in this module touches a socket or an event loop: feed received bytes
to :meth:`Pop3Session.receive_data` and send back the bytes it returns (or
:meth:`Pop3Session.feed` them and iterate :meth:`Pop3Session.replies` to get
one reply per command, executed lazily).  The only I/O happens inside the
injected maildrop store (:mod:`.storage`).

State machine
=============

A session is always in exactly one of these states::

    AUTHORIZATION   after the greeting, after a failed USER/PASS/APOP/AUTH
    USER_ACCEPTED   a sub-state of AUTHORIZATION: USER succeeded, PASS expected
    SASL            a sub-state of AUTHORIZATION: an AUTH exchange is under
                    way; each line is a base64 client response or ``*``
    TRANSACTION     authenticated, maildrop opened and locked
    CLOSED          QUIT answered (after UPDATE when it came from TRANSACTION),
                    autologout, or connection lost; nothing more is processed

Beside the state, a session knows whether TLS is active (``tls_active``:
after STLS, or from the start on an implicit-TLS listener, RFC 8314) and
whether a TLS handshake is due (``tls_pending``: between the ``+OK`` to STLS
and the transport's :meth:`Pop3Session.tls_started`).

Transitions (anything not listed is refused with ``-ERR`` and changes
nothing, except that USER_ACCEPTED falls back to AUTHORIZATION):

    AUTHORIZATION  --USER name ok-------------------------->  USER_ACCEPTED
    AUTHORIZATION  --APOP name digest ok, maildrop locked-->  TRANSACTION
    AUTHORIZATION  --AUTH mech [initial], challenge due---->  SASL
    AUTHORIZATION  --AUTH mech initial, verified, locked--->  TRANSACTION
    AUTHORIZATION  --AUTH (no argument: mechanism list)---->  AUTHORIZATION
    AUTHORIZATION  --STLS, TLS configured and not active--->  AUTHORIZATION + tls_pending
    AUTHORIZATION  --CAPA UTF8 LANG------------------------>  AUTHORIZATION
    AUTHORIZATION  --QUIT---------------------------------->  CLOSED (no UPDATE)
    USER_ACCEPTED  --PASS ok, maildrop locked-------------->  TRANSACTION
    USER_ACCEPTED  --PASS refused-------------------------->  AUTHORIZATION
    USER_ACCEPTED  --CAPA (answered)----------------------->  AUTHORIZATION
    USER_ACCEPTED  --STLS (user name forgotten)------------>  AUTHORIZATION + tls_pending
    USER_ACCEPTED  --QUIT---------------------------------->  CLOSED (no UPDATE)
    USER_ACCEPTED  --any other command (refused)----------->  AUTHORIZATION
    SASL           --response, next challenge due--------->  SASL
    SASL           --response, verified, maildrop locked--->  TRANSACTION
    SASL           --"*", bad base64, wrong credentials---->  AUTHORIZATION (-ERR)
    TRANSACTION    --STAT LIST RETR DELE NOOP RSET TOP UIDL LAST CAPA LANG-->  TRANSACTION
    TRANSACTION    --QUIT----------------------------------> UPDATE -> CLOSED
    any state      --autologout / connection lost---------->  CLOSED (no UPDATE)
    tls_pending    --transport: handshake done------------>  AUTHORIZATION, tls_active

Rules that follow from the RFCs:

* PASS is only valid immediately after a successful USER (RFC 1939 section 7);
  USER and APOP only in AUTHORIZATION, so a second USER in TRANSACTION is
  refused and never switches maildrops.
* Deletions are only marks until QUIT from TRANSACTION (UPDATE state,
  RFC 1939 section 6); autologout or a dropped connection releases the lock
  without touching the maildrop (section 3).
* Message numbers are decimal digits only; 0, numbers above the message
  count and numbers of messages marked deleted are refused, and a huge
  number never wraps around (Python integers are unbounded).
* A command line is at most 255 octets including CRLF (RFC 2449 section 4);
  a longer line is discarded as a whole and answered with one ``-ERR``.
  LF alone is accepted as a line terminator (an optional CR before it is
  stripped).
* Control characters (NUL included) or undecodable bytes in a command make
  it invalid: ``-ERR``, never a partially executed command.

TLS, SASL and the other extensions:

* STLS (RFC 2595 section 4) only in AUTHORIZATION, only when the transport
  can do TLS and TLS is not active yet (so never twice), and without
  arguments.  Its ``+OK`` carries ``start_tls`` and sets ``tls_pending``:
  whatever was buffered after the STLS line, and anything fed before
  :meth:`Pop3Session.tls_started`, is discarded unanswered -- plaintext never
  executes as if it had come inside TLS (the STARTTLS command-injection
  class).  A USER given before STLS is forgotten.  Inside TLS, CAPA no
  longer lists STLS.
* With ``require_tls`` (RFC 2595 section 2.2, RFC 5034 section 4) USER,
  APOP and AUTH are refused before TLS and CAPA lists neither USER nor SASL
  (but STLS) until TLS is active.
* AUTH (RFC 5034): the mechanisms of :mod:`.sasl`; challenges are
  ``+ <base64>`` lines (an empty one is ``+ `` and nothing else); ``=`` is
  an empty initial response; ``*`` cancels with ``-ERR``; bad base64 (RFC
  4648 alphabet, ``=`` only at the end) ends the exchange with ``-ERR`` and
  the session stays in AUTHORIZATION.  Client responses inside the
  exchange may be up to MAX_SASL_RESPONSE_OCTETS; the AUTH line itself keeps
  the 255-octet limit (RFC 5034 section 4).  Bare ``AUTH`` lists the
  mechanisms, one a line (RFC 1734 section 2 practice).
* Login policy (RFC 2449 sections 6.5, 8.1): a login of a user inside
  ``login_delay_seconds`` of that user's previous login is refused with
  ``[LOGIN-DELAY]`` after the credentials were checked; ``[IN-USE]``,
  ``[SYS/TEMP]``, ``[SYS/PERM]`` and ``[AUTH]`` as RFC 2449/3206 define them.
* EXPIRE (RFC 2449 section 6.7) is advertised from ``expire_days``; with
  ``EXPIRE 0`` the messages retrieved in a session are removed at its
  UPDATE (never before, and never on autologout or a dropped connection).
* UTF8 (RFC 6856 section 2): without UTF-8 mode a message whose header
  holds UTF-8 beyond ASCII is refused by RETR/TOP with ``[UTF8]``.  LANG
  (section 3) lists and selects languages; English is the only one.

Extension seam
==============

Every command is one method ``cmd_<keyword>(self, args: list[str]) -> Reply``
on :class:`Pop3Session`; the table :data:`Pop3Session.allowed_commands` maps
each state to the keywords accepted in it.  A subclass can override a
handler, change the table, or override :meth:`Pop3Session.capabilities` or
:meth:`Pop3Session.greeting_text`.  A handler returns a :class:`Response`
(serialised with correct byte-stuffing) or raw ``bytes`` that are sent
verbatim, which lets a deliberately faulty server put anything on the wire::

    class NoStuffingSession(Pop3Session):
        def cmd_retr(self, args: list[str]) -> Reply:
            number = self.parse_message_number(args)
            ...
            return b"+OK\\r\\n" + content + b".\\r\\n"

Pass the subclass to :func:`reference_server.pop3.server.start_server` as
``session_class``.  The storage side (octet counting, what happens at
UPDATE) is overridden by subclassing the classes in :mod:`.storage`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from reference_server import sasl
from reference_server.store.maildrop import (
    Maildrop,
    MaildropCorrupt,
    MaildropError,
    MaildropLocked,
    MaildropStore,
    StoredMessage,
)
from reference_server.users import LoginMethod, UserDirectory

# --- Limits (named after the RFC text that sets them) -----------------------

#: RFC 2449 section 4: command lines may be up to 255 octets including CRLF.
MAX_COMMAND_LINE_OCTETS = 255
#: RFC 1939 section 3: keywords are three or four characters (RFC 2449 section 3).
MAX_KEYWORD_OCTETS = 4
#: RFC 5034 section 4: SASL responses inside an exchange may exceed the
#: command limit; this bounds them (PLAIN's 3 x 255 octets need 1,028).
MAX_SASL_RESPONSE_OCTETS = 8192
#: RFC 6856 section 3: the languages LANG offers, tag -> name in itself.
LANGUAGES: Mapping[str, str] = {"en": "English"}
DEFAULT_LANGUAGE = "en"
#: RFC 1939 section 3: the autologout timer is at least 10 minutes.
MIN_AUTOLOGOUT_SECONDS = 600
DEFAULT_AUTOLOGOUT_SECONDS = MIN_AUTOLOGOUT_SECONDS
#: RFC 2449 section 4: a reply's first line is at most 512 octets with CRLF.
MAX_RESPONSE_LINE_OCTETS = 512
#: RFC 2449 section 6.7 / RFC 1939 section 7: a unique-id is 1 to 70 octets.
MAX_UID_OCTETS = 70

# --- Abuse limits (no RFC sets these; the values and why) --------------------

#: Consecutive ``-ERR`` replies after which the session is closed (the last
#: ``-ERR`` says so).  20 leaves room for a conformance suite's negative
#: probes and for a confused client, while a fuzzer or a password-guessing
#: loop on one connection is cut off quickly.  0: no limit.
DEFAULT_BAD_COMMAND_LIMIT = 20
#: Seconds a failed PASS/APOP/AUTH waits before its ``-ERR`` is sent, which
#: slows guessing on one connection (RFC 1939 section 13 leaves the means
#: open).  0 here because this is a test server that conformance suites
#: hammer with wrong passwords; a deployment would use 1-3 s.
DEFAULT_FAILED_LOGIN_DELAY_SECONDS = 0.0
#: How much of a streamed message's header is read to decide the RFC 6856
#: UTF-8 question; a header larger than this is judged on its first part.
MAX_HEADER_SCAN_OCTETS = 1024 * 1024

IMPLEMENTATION_NAME = "mailspec-reference-server-0.1"

CRLF = b"\r\n"
_DOT_AT_LINE_START = re.compile(rb"^\.", re.MULTILINE)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9]{2,3}")  # UTF8 has a digit
_HEX_DIGEST = re.compile(r"[0-9A-Fa-f]{32}")

log = logging.getLogger("reference_server.session")
_T = TypeVar("_T")


class State(enum.Enum):
    AUTHORIZATION = "AUTHORIZATION"
    USER_ACCEPTED = "USER_ACCEPTED"
    SASL = "SASL"
    TRANSACTION = "TRANSACTION"
    CLOSED = "CLOSED"


@dataclass(frozen=True)
class Response:
    """One reply: status line plus an optional multi-line body.

    ``body`` holds unstuffed content whose lines each end with CRLF; the
    serialiser byte-stuffs it (RFC 1939 section 3) and adds the terminator.
    ``close`` asks the transport to close the connection after sending;
    ``start_tls`` asks it to start the TLS handshake right after this reply
    (RFC 2595 section 4) and to call :meth:`Pop3Session.tls_started`.
    """

    ok: bool
    text: str = ""
    body: bytes | None = None
    close: bool = False
    start_tls: bool = False
    #: A body too large to hold: unstuffed CRLF content in pieces, read
    #: lazily (by the transport, one piece at a time) instead of ``body``.
    stream: Iterable[bytes] | None = field(default=None, compare=False)

    def status_line(self) -> bytes:
        status = b"+OK" if self.ok else b"-ERR"
        return status + (b" " + self.text.encode("utf-8") if self.text else b"") + CRLF

    def to_bytes(self) -> bytes:
        return b"".join(self.pieces())

    def pieces(self) -> Iterator[bytes]:
        """The serialised reply: status line, stuffed body pieces, terminator."""
        yield self.status_line()
        if self.stream is not None:
            yield from stuffed_pieces(self.stream)
        elif self.body is not None:
            yield _DOT_AT_LINE_START.sub(b"..", self.body)
        else:
            return
        yield b"." + CRLF


class StreamedResponse(Response):
    """A ``+OK`` whose body is read from the store piece by piece.

    ``body`` still works for subclasses that rewrite a reply (it reads the
    whole content then, once); the default path only iterates ``stream``."""

    def __init__(self, text: str, stream: Iterable[bytes]) -> None:
        object.__setattr__(self, "ok", True)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "close", False)
        object.__setattr__(self, "start_tls", False)
        object.__setattr__(self, "_source", stream)
        object.__setattr__(self, "_whole", None)

    @property  # type: ignore[override]
    def body(self) -> bytes:
        if self._whole is None:
            object.__setattr__(self, "_whole", b"".join(self._source))
        return self._whole

    @property  # type: ignore[override]
    def stream(self) -> Iterable[bytes]:
        return self._source if self._whole is None else (self._whole,)


class DelayedReply(bytes):
    """Reply octets the transport sends only after ``delay_seconds`` (the
    failed-login delay); the sans-I/O core itself never sleeps."""

    delay_seconds: float

    def __new__(cls, data: bytes, delay_seconds: float) -> DelayedReply:
        reply = super().__new__(cls, data)
        reply.delay_seconds = delay_seconds
        return reply


def stuffed_pieces(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """Byte-stuffing (RFC 1939 section 3) of content arriving in pieces:
    a dot that starts a line gets another, wherever the pieces are cut."""
    at_line_start = True
    for piece in pieces:
        if not piece:
            continue
        stuffed = piece.replace(b"\n.", b"\n..")
        if at_line_start and stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        at_line_start = piece.endswith(b"\n")
        yield stuffed


Reply = Response | bytes


def ok(text: str = "", body: bytes | None = None, *, close: bool = False) -> Response:
    return Response(True, text, body, close)


def err(text: str, *, close: bool = False) -> Response:
    return Response(False, text, None, close)


class CommandError(Exception):
    """Raised inside a handler to refuse the command with ``-ERR <message>``."""


class LoginHistory:
    """When each user last logged in, shared by the sessions of one server
    so LOGIN-DELAY (RFC 2449 section 6.5) holds across connections."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._last_login: dict[str, float] = {}

    def seconds_since_login(self, user: str) -> float | None:
        last = self._last_login.get(user)
        return None if last is None else self.clock() - last

    def record(self, user: str) -> None:
        self._last_login[user] = self.clock()


@dataclass
class SessionConfig:
    """Behaviour switches shared by every session of one server."""

    enable_apop: bool = False
    enable_last: bool = True
    #: RFC 2449 section 6.5; advertised as ``LOGIN-DELAY <n>``, enforced when > 0.
    login_delay_seconds: int = 0
    #: RFC 2449 section 6.7: days messages are kept at least; None is NEVER.
    expire_days: int | None = None
    #: The transport can start TLS (a certificate is configured): offer STLS.
    stls_available: bool = False
    #: RFC 2595 section 2.2: refuse every login before TLS is active.
    require_tls: bool = False
    #: SASL mechanisms offered by AUTH, in CAPA order (names from :mod:`.sasl`).
    sasl_mechanisms: tuple[str, ...] = sasl.DEFAULT_MECHANISMS
    #: Close after this many consecutive ``-ERR`` replies (0: never).
    bad_command_limit: int = DEFAULT_BAD_COMMAND_LIMIT
    #: Hold the ``-ERR`` of a failed PASS/APOP/AUTH this long (seconds).
    failed_login_delay_seconds: float = DEFAULT_FAILED_LOGIN_DELAY_SECONDS
    hostname: str = field(default_factory=socket.gethostname)
    login_history: LoginHistory = field(default_factory=LoginHistory)


def parse_decimal(token: str) -> int | None:
    """A non-negative decimal number (leading zeros allowed), else None."""
    if not token or not token.isascii() or not token.isdigit():
        return None
    return int(token)


#: The TRANSACTION commands that may skip the storage threads, and the
#: methods each runs through (Pop3Session.next_step_may_block checks that
#: none is overridden); all but QUIT only count octets.
_METHODS_RUN_BY: dict[str, tuple[str, ...]] = {
    "STAT": ("cmd_stat", "_drop_listing", "octets"),
    "LIST": ("cmd_list", "octets"),
    "RSET": ("cmd_rset", "_drop_listing", "octets"),
    "QUIT": ("cmd_quit", "enter_update", "_record_retrieved"),
}


class Pop3Session:
    """One POP3 conversation, from greeting to close, with no I/O of its own."""

    #: Keywords accepted in each state; everything else is refused.
    allowed_commands: Mapping[State, frozenset[str]] = {
        State.AUTHORIZATION: frozenset(
            {"USER", "APOP", "AUTH", "STLS", "QUIT", "CAPA", "UTF8", "LANG"}
        ),
        State.USER_ACCEPTED: frozenset({"PASS", "QUIT", "CAPA", "STLS"}),
        # Lines inside an AUTH exchange are responses, not commands.
        State.SASL: frozenset(),
        State.TRANSACTION: frozenset(
            {
                "STAT",
                "LIST",
                "RETR",
                "DELE",
                "NOOP",
                "RSET",
                "TOP",
                "UIDL",
                "LAST",
                "QUIT",
                "CAPA",
                "LANG",
            }
        ),
        State.CLOSED: frozenset(),
    }
    #: Every keyword this implementation knows, to tell "unknown" from "wrong state".
    known_commands: frozenset[str] = frozenset().union(*allowed_commands.values())
    #: TRANSACTION commands that only count octets (STAT, LIST, RSET): store-
    #: free too when the maildrop holds every size in memory
    #: (:meth:`Maildrop.holds_sizes`: Maildir and mbox measure at login). QUIT
    #: is store-free when UPDATE has nothing to write (nothing deleted or
    #: retrieved, and a commit of nothing that does no I/O).
    counting_commands: frozenset[str] = frozenset(_METHODS_RUN_BY) - {"QUIT"}
    #: Commands whose handlers never touch the store, per state: a transport
    #: may run them on its event loop (:meth:`next_step_may_block`).  Every
    #: other accepted command may wait on the disk: PASS, APOP and AUTH (and
    #: every line of a SASL exchange) lock and read the maildrop, QUIT in
    #: TRANSACTION is UPDATE, RETR and TOP read the message, STAT, LIST and
    #: RSET count octets (a Maildrop subclass may read content for that:
    #: see :attr:`counting_commands`).
    store_free_commands: Mapping[State, frozenset[str]] = {
        State.AUTHORIZATION: frozenset({"USER", "STLS", "QUIT", "CAPA", "UTF8", "LANG"}),
        State.USER_ACCEPTED: frozenset({"QUIT", "CAPA", "STLS"}),
        State.SASL: frozenset(),
        State.TRANSACTION: frozenset({"DELE", "NOOP", "UIDL", "LAST", "CAPA", "LANG"}),
        State.CLOSED: frozenset(),
    }

    def __init__(
        self,
        store: MaildropStore,
        users: UserDirectory,
        config: SessionConfig | None = None,
        *,
        session_id: str = "-",
        peer: str = "-",
    ) -> None:
        self.store = store
        self.users = users
        self.config = config or SessionConfig()
        self.session_id = session_id
        self.peer = peer
        self.state = State.AUTHORIZATION
        self.user_name: str | None = None
        self.maildrop: Maildrop | None = None
        self.messages: list[StoredMessage] = []
        self.deleted: set[int] = set()
        #: RFC 1225 LAST: the unique-ids earlier sessions retrieved (read once,
        #: at login), the value at login, the current value, and the numbers
        #: RETR touched in this session.
        self.seen_at_login: set[str] = set()
        self.initial_highest_accessed = 0
        self.highest_accessed = 0
        self.retrieved: set[int] = set()
        self._sizes_in_memory = False  # set at login: Maildrop.holds_sizes()
        self.apop_timestamp: str | None = (
            f"<{os.getpid()}.{secrets.token_hex(8)}@{self.config.hostname}>"
            if self.config.enable_apop
            else None
        )
        #: RFC 2595 / RFC 8314: TLS protects the connection; a handshake is due.
        self.tls_active = False
        self.tls_pending = False
        #: RFC 6856: UTF-8 mode and the LANG language.
        self.utf8_mode = False
        self.language = DEFAULT_LANGUAGE
        self.sasl_exchange: sasl.Mechanism | None = None
        self._pending = bytearray()
        self._discarding_long_line = False
        #: Consecutive -ERR replies so far (the bad-command limit).
        self.bad_commands = 0
        self._login_failed = False
        #: Pieces of a streamed reply body still to be handed out by replies().
        self._stream: Iterator[bytes] | None = None

    # --- Public driver API ----------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def greeting(self) -> bytes:
        """The first line the server sends (RFC 1939 section 4)."""
        self._log("connect", peer=self.peer)
        return ok(self.greeting_text()).to_bytes()

    def greeting_text(self) -> str:
        text = "mailspec reference POP3 server ready"
        if self.apop_timestamp:
            text += " " + self.apop_timestamp
        return text

    def receive_data(self, data: bytes) -> bytes:
        """Consume received octets; return every reply due, in command order."""
        self.feed(data)
        return b"".join(self.replies())

    def feed(self, data: bytes) -> None:
        """Buffer received octets; :meth:`replies` then executes complete lines.

        Between the ``+OK`` to STLS and :meth:`tls_started` nothing is kept:
        plaintext sent there must never run as if it came inside TLS."""
        if self.tls_pending:
            if data:
                self._log("discarded-after-stls", octets=len(data))
            return
        self._pending += data

    def line_limit(self) -> int:
        """Longest line accepted in the current state, terminator included."""
        if self.state is State.SASL:
            return MAX_SASL_RESPONSE_OCTETS
        return MAX_COMMAND_LINE_OCTETS

    def tls_started(self, *, version: str = "", cipher: str = "") -> None:
        """The transport finished a TLS handshake (after STLS, or at connect on
        an implicit-TLS listener): AUTHORIZATION inside TLS, nothing from
        before it remembered (RFC 2595 section 4, RFC 8314 section 3.1)."""
        self.tls_active = True
        self.tls_pending = False
        self._pending.clear()
        self._discarding_long_line = False
        self.user_name = None
        if self.state is State.USER_ACCEPTED:
            self.state = State.AUTHORIZATION
        # RFC 8314 section 4: log the negotiated TLS with the connection.
        self._log("tls", version=version or "-", cipher=cipher or "-")

    def replies(self) -> Iterator[bytes]:
        """Execute buffered complete lines one by one, yielding each reply.

        A transport can send (and wait for the peer to read) each reply
        before the next command runs, so pipelined RETRs never pile up in
        memory.  Stops after a reply that closes the session: bytes after
        QUIT are never processed (RFC 1939 section 6); and after the ``+OK``
        to STLS, whose pipelined followers are dropped (RFC 2595 section 4).

        The reply to RETR or TOP of a large message comes in several pieces
        (status line, then body pieces read from the store as the iterator
        advances, then the terminator), so a transport that sends each piece
        before asking for the next holds one piece at a time.  A piece may be
        a :class:`DelayedReply`: send it only after its delay.
        """
        while not self.closed and not self.tls_pending:
            newline = self._pending.find(b"\n")
            limit = self.line_limit()
            if newline < 0:
                if len(self._pending) > limit:
                    # Bounded buffer: drop the excess, answer once the line ends.
                    self._pending.clear()
                    self._discarding_long_line = True
                return
            line = bytes(self._pending[:newline])
            del self._pending[: newline + 1]
            if self._discarding_long_line or len(line) + 1 > limit:
                self._discarding_long_line = False
                if self.state is State.SASL:
                    self._end_sasl()
                refusal = self._count_reply(err("command line too long"))
                if refusal.close:
                    self._close_without_update()
                yield refusal.to_bytes()
                continue
            yield self.handle_line(line)
            if self._stream is not None:
                # Kept while it runs: next_step_may_block() sees the body pending.
                try:
                    yield from self._stream
                finally:
                    self._stream = None

    def next_step_may_block(self) -> bool:
        """Whether advancing :meth:`replies` once may wait on the store.

        False when no complete line is buffered, or the next line is refused
        before any handler runs, or names a command in
        :attr:`store_free_commands`, or is one of :attr:`counting_commands`
        or QUIT while it needs nothing from the store; True for the next
        piece of a streamed body (read from the store as it is sent), inside a SASL exchange,
        and for every other command.  A transport runs the False steps
        inline and the True ones where a slow disk stalls only this session.
        """
        if self._stream is not None:
            return True
        if self.closed or self.tls_pending:
            return False
        newline = self._pending.find(b"\n")
        if newline < 0:
            return False
        if self.state is State.SASL:
            return True
        space = self._pending.find(b" ", 0, newline)
        end = newline if space < 0 else space
        if end > MAX_KEYWORD_OCTETS + 1:  # no keyword: refused, no handler runs
            return False
        keyword = bytes(self._pending[:end]).rstrip(b"\r").decode("ascii", "replace").upper()
        if (
            keyword not in self.allowed_commands[self.state]
            or keyword in self.store_free_commands[self.state]
        ):
            return False
        if (
            self.state is State.TRANSACTION
            and keyword in _METHODS_RUN_BY
            and self._runs_our_code(keyword)
        ):
            if keyword == "QUIT":
                return self._update_touches_store()
            return not self._sizes_in_memory  # one of counting_commands
        return True

    def _runs_our_code(self, keyword: str) -> bool:
        """Whether the methods `keyword` runs through are this class's own:
        a subclass that overrides one (the cmd_<keyword> seam) may read the
        store there, so its command stays on the storage threads."""
        cls = type(self)
        return all(
            getattr(cls, name) is getattr(Pop3Session, name) for name in _METHODS_RUN_BY[keyword]
        )

    def _update_touches_store(self) -> bool:
        """Whether UPDATE now would write: a removal, the LAST record of a
        RETR (RFC 1225), or a commit this maildrop's class does not promise
        to skip when there is nothing to remove."""
        assert self.maildrop is not None
        return bool(self.deleted or self.retrieved) or not self.maildrop.empty_commit_is_free()

    def autologout(self) -> None:
        """The inactivity timer fired: close without UPDATE (RFC 1939 section 3)."""
        self._log("autologout")
        self._close_without_update()

    def connection_lost(self) -> None:
        """The transport went away: release the maildrop, delete nothing."""
        if not self.closed:
            self._log("connection-lost", state=self.state.value)
            self._close_without_update()

    # --- Line dispatch --------------------------------------------------------

    def handle_line(self, line: bytes) -> bytes:
        """Execute one command line (without its line terminator)."""
        if line.endswith(b"\r"):
            line = line[:-1]
        self._login_failed = False
        if self.state is State.SASL:
            reply = self._sasl_response(line)
        else:
            reply = self._dispatch(line)
        if isinstance(reply, Response):
            reply = self._count_reply(reply)
            if reply.close:
                self._close_without_update()
            elif reply.start_tls:
                self.tls_pending = True
                self._pending.clear()  # pipelined after STLS: never answered
            if reply.stream is not None:
                # Status line now; the body follows piece by piece from replies().
                pieces = reply.pieces()
                first = next(pieces)
                self._stream = pieces
                return first
            data = reply.to_bytes()
        else:
            data = reply
            if reply.startswith(b"+OK"):
                self.bad_commands = 0
            elif reply.startswith(b"-ERR"):
                self.bad_commands += 1
        delay = self.config.failed_login_delay_seconds
        if self._login_failed and delay > 0:
            return DelayedReply(data, delay)
        return data

    def _count_reply(self, reply: Response) -> Response:
        """The bad-command limit: the Nth ``-ERR`` in a row closes the session
        (without UPDATE), and says so in its text."""
        if reply.ok:
            self.bad_commands = 0
            return reply
        self.bad_commands += 1
        limit = self.config.bad_command_limit
        if limit <= 0 or self.bad_commands < limit or reply.close:
            return reply
        self._log("bad-command-limit", count=self.bad_commands)
        return err(f"{reply.text} (too many bad commands: closing)", close=True)

    def _dispatch(self, line: bytes) -> Reply:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse("command is not valid UTF-8")
        if not text:
            return self._refuse("empty command")
        if _CONTROL_CHARACTERS.search(text):
            return self._refuse("control characters are not allowed in commands")
        keyword, separator, rest = text.partition(" ")
        if not _KEYWORD.fullmatch(keyword):
            return self._refuse("unknown command")
        keyword = keyword.upper()
        if keyword == "LAST" and not self.config.enable_last:
            return self._refuse("unknown command")
        if keyword not in self.allowed_commands[self.state]:
            if keyword in self.known_commands:
                return self._refuse(f"{keyword} is not allowed in this state")
            return self._refuse("unknown command")
        if keyword == "PASS":
            # RFC 1939 section 7: the password is the rest of the line, spaces included.
            args = [rest] if separator else []
        else:
            # One space between arguments (RFC 1939 section 3): "LIST " or
            # "LIST  1" carry an empty argument and are refused.
            args = rest.split(" ") if separator else []
        if log.isEnabledFor(logging.DEBUG):
            self._log("command", level=logging.DEBUG, keyword=keyword, state=self.state.value)
        handler: Callable[[list[str]], Reply] = getattr(self, "cmd_" + keyword.lower())
        try:
            reply = handler(args)
        except CommandError as refusal:
            reply = err(str(refusal))
        except Exception:
            log.exception("session=%s handler for %s failed", self.session_id, keyword)
            reply = err("[SYS/TEMP] internal server error")
        return reply

    def _refuse(self, text: str) -> Response:
        if self.state is State.USER_ACCEPTED:
            self.state = State.AUTHORIZATION
            self.user_name = None
        return err(text)

    # --- Argument helpers -----------------------------------------------------

    @staticmethod
    def expect_arguments(args: list[str], minimum: int, maximum: int) -> None:
        if len(args) < minimum:
            raise CommandError("missing argument")
        if len(args) > maximum:
            raise CommandError("too many arguments")

    def parse_message_number(self, token: str) -> int:
        """Validate a message number naming a live message; returns it (1-based)."""
        number = parse_decimal(token)
        if number is None:
            raise CommandError("message number must be a decimal number")
        if number < 1 or number > len(self.messages):
            raise CommandError("no such message")
        if number in self.deleted:
            raise CommandError(f"message {number} is marked deleted")
        return number

    def message(self, number: int) -> StoredMessage:
        return self.messages[number - 1]

    def octets(self, number: int) -> int:
        assert self.maildrop is not None
        return self.maildrop.octet_count(self.message(number))

    def live_numbers(self) -> list[int]:
        return [n for n in range(1, len(self.messages) + 1) if n not in self.deleted]

    # --- AUTHORIZATION --------------------------------------------------------

    def login_allowed(self) -> bool:
        """RFC 2595 section 2.2: with require_tls, no login before TLS."""
        return self.tls_active or not self.config.require_tls

    def refuse_before_tls(self) -> None:
        if not self.login_allowed():
            # RFC 8314 section 4.1: the refusal does not depend on the credentials.
            raise CommandError("[AUTH] TLS is required: send STLS first")

    def cmd_user(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 1, 1)
        if not args[0]:
            raise CommandError("missing user name")
        if not self.login_allowed():
            # No [AUTH] on USER (RFC 3206 section 5); this says nothing about the user.
            raise CommandError("TLS is required: send STLS first")
        # Unknown names get +OK too, so USER does not reveal who exists (RFC 2449 8.1.2).
        self.user_name = args[0]
        self.state = State.USER_ACCEPTED
        return ok("send PASS")

    def cmd_pass(self, args: list[str]) -> Reply:
        user = self.user_name
        self.state = State.AUTHORIZATION
        self.user_name = None
        if not args or not args[0]:
            raise CommandError("missing password")
        assert user is not None
        secret = self.users.secret_for(user)
        if (
            secret is None
            or self.users.method_for(user) is not LoginMethod.PASS
            or not hmac.compare_digest(secret.encode("utf-8"), args[0].encode("utf-8"))
        ):
            self._failed_login(user=user, method="PASS")
            return err("[AUTH] invalid user name or password")
        return self.open_maildrop(user, method="PASS")

    def cmd_apop(self, args: list[str]) -> Reply:
        if self.apop_timestamp is None:
            raise CommandError("APOP is not enabled on this server")
        self.expect_arguments(args, 2, 2)
        self.refuse_before_tls()
        user, digest = args
        if not user or not _HEX_DIGEST.fullmatch(digest):
            raise CommandError("APOP needs a name and a 32-digit hex MD5 digest")
        secret = self.users.secret_for(user)
        if secret is None or self.users.method_for(user) is not LoginMethod.APOP:
            self._failed_login(user=user, method="APOP")
            return err("[AUTH] invalid user name or digest")
        expected = hashlib.md5(
            (self.apop_timestamp + secret).encode("utf-8"), usedforsecurity=False
        ).hexdigest()
        if not hmac.compare_digest(expected, digest.lower()):
            self._failed_login(user=user, method="APOP")
            return err("[AUTH] invalid user name or digest")
        return self.open_maildrop(user, method="APOP")

    def open_maildrop(self, user: str, *, method: str) -> Reply:
        """Lock and read the maildrop, then enter TRANSACTION (RFC 1939 section 4).

        Called once the credentials are proven, so ``[LOGIN-DELAY]`` and
        ``[IN-USE]`` never tell a wrong password from a right one."""
        delay = self.config.login_delay_seconds
        since = self.config.login_history.seconds_since_login(user)
        if delay > 0 and since is not None and since < delay:
            self._log("login-refused", user=user, reason="login-delay")
            return err(f"[LOGIN-DELAY] wait {delay} seconds between logins")
        try:
            maildrop = self.store.open(user)
        except MaildropLocked:
            self._log("login-refused", user=user, reason="in-use")
            return err("[IN-USE] maildrop is locked by another session")
        except MaildropCorrupt as problem:
            self._log("login-refused", user=user, reason="corrupt", detail=str(problem))
            return err("[SYS/PERM] maildrop cannot be read")
        except (MaildropError, OSError) as problem:
            self._log("login-refused", user=user, reason="unavailable", detail=str(problem))
            return err("[SYS/TEMP] maildrop is temporarily unavailable")
        self.maildrop = maildrop
        self.messages = list(maildrop.messages)
        self._sizes_in_memory = maildrop.holds_sizes()
        self.deleted = set()
        # The maildrop stays locked until UPDATE, so nobody else can change
        # the record in between: read it once here, reuse it at UPDATE.
        self.seen_at_login = maildrop.seen_uids()
        self.initial_highest_accessed = max(
            (n for n, m in enumerate(self.messages, start=1) if m.uid in self.seen_at_login),
            default=0,
        )
        self.highest_accessed = self.initial_highest_accessed
        self.retrieved = set()
        self.user_name = user
        self.state = State.TRANSACTION
        self.config.login_history.record(user)
        self._log("login", user=user, method=method, messages=len(self.messages))
        count, size = self._drop_listing()
        return ok(f"{user} has {count} messages ({size} octets)")

    # --- STLS (RFC 2595 section 4) ---------------------------------------------

    def cmd_stls(self, args: list[str]) -> Reply:
        # A USER before STLS is forgotten whatever the outcome (RFC 2595 section 9).
        self.state = State.AUTHORIZATION
        self.user_name = None
        self.expect_arguments(args, 0, 0)
        if not self.config.stls_available:
            raise CommandError("STLS is not available: no TLS certificate configured")
        if self.tls_active:
            raise CommandError("TLS is already active")
        self._log("stls")
        return Response(True, "begin TLS negotiation", start_tls=True)

    # --- AUTH (RFC 5034, RFC 1734) ---------------------------------------------

    def cmd_auth(self, args: list[str]) -> Reply:
        if not args:
            # RFC 1734 practice: bare AUTH lists the mechanisms, one a line.
            offered = self.config.sasl_mechanisms if self.login_allowed() else ()
            body = b"".join(name.encode("ascii") + CRLF for name in offered)
            return ok("SASL mechanisms follow", body)
        self.expect_arguments(args, 1, 2)
        name = args[0].upper()  # RFC 5034 section 5: mechanism names in any case
        if name not in self.config.sasl_mechanisms or name not in sasl.MECHANISMS:
            raise CommandError("unsupported SASL mechanism")
        self.refuse_before_tls()
        mechanism = sasl.MECHANISMS[name](self.users, self.config.hostname)
        initial: bytes | None = None
        if len(args) == 2:
            if not mechanism.accepts_initial_response:
                raise CommandError(f"{name} does not take an initial response")
            initial = b"" if args[1] == "=" else decode_base64(args[1].encode("utf-8"))
            if initial is None:
                raise CommandError("initial response is not valid base64")
        self._log("auth-start", mechanism=name)
        return self._sasl_step(mechanism, mechanism.start(initial))

    def _sasl_response(self, line: bytes) -> Reply:
        mechanism = self.sasl_exchange
        assert mechanism is not None
        self._end_sasl()
        try:
            return self._sasl_continue(mechanism, line)
        except Exception:
            log.exception("session=%s %s exchange failed", self.session_id, mechanism.name)
            return err("[SYS/TEMP] internal server error")

    def _sasl_continue(self, mechanism: sasl.Mechanism, line: bytes) -> Reply:
        if line == b"*":
            # RFC 5034 section 4: a lone "*" cancels; the answer is -ERR.
            self._log("auth-cancelled", mechanism=mechanism.name)
            return err("authentication cancelled")
        data = decode_base64(line)
        if data is None:
            self._log("auth-failed", mechanism=mechanism.name, reason="bad-base64")
            return err("response is not valid base64")
        return self._sasl_step(mechanism, mechanism.respond(data))

    def _sasl_step(self, mechanism: sasl.Mechanism, step: sasl.Step) -> Reply:
        if isinstance(step, sasl.Challenge):
            self.state = State.SASL
            self.sasl_exchange = mechanism
            # RFC 5034 section 4: "+", one space, base64, nothing else.
            return b"+ " + base64.b64encode(step.data) + CRLF
        if isinstance(step, sasl.Refused):
            if step.credentials:
                self._failed_login(method="AUTH", mechanism=mechanism.name)
            else:
                self._log("login-failed", method="AUTH", mechanism=mechanism.name)
            return err(f"[AUTH] {step.text}" if step.credentials else step.text)
        return self.open_maildrop(step.user, method=f"AUTH-{mechanism.name}")

    def _end_sasl(self) -> None:
        self.sasl_exchange = None
        self.state = State.AUTHORIZATION

    # --- UTF8 and LANG (RFC 6856) ----------------------------------------------

    def cmd_utf8(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 0, 0)
        self.utf8_mode = True
        return ok("UTF-8 mode enabled")

    def refuse_utf8_message(self, number: int) -> None:
        """RFC 6856 section 2.1: without UTF-8 mode, a message whose header
        needs UTF-8 is not sent as is (no surrogates here: -ERR [UTF8])."""
        if not self.utf8_mode and header_needs_utf8(self.message_header(number)):
            raise CommandError("[UTF8] this message needs UTF-8 mode: send UTF8 first")

    def message_header(self, number: int) -> bytes:
        """The header section (and its blank line), at most MAX_HEADER_SCAN_OCTETS."""
        message = self.message(number)
        if not message.streamed:
            return self.read_message(lambda: message.content)
        header = bytearray()
        for piece in top_pieces(self.read_message(message.chunks), 0):
            header += piece
            if len(header) >= MAX_HEADER_SCAN_OCTETS:
                break
        return bytes(header[:MAX_HEADER_SCAN_OCTETS])

    def cmd_lang(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 0, 1)
        if not args:
            body = b"".join(f"{tag} {name}\r\n".encode() for tag, name in LANGUAGES.items())
            return ok("language listing follows", body)
        chosen = match_language(args[0])
        if chosen is None:
            raise CommandError("unsupported language")
        self.language = chosen
        # RFC 6856 section 3.2: "+OK", the exact tag chosen, then the text.
        return ok(f"{chosen} language is now {LANGUAGES[chosen]}")

    # --- Both states ----------------------------------------------------------

    def capabilities(self) -> list[str]:
        """CAPA lines (RFC 2449 section 6).

        The same before and after login except STLS, listed only in
        AUTHORIZATION while TLS is not active (RFC 2595 section 4).  With
        ``require_tls``, USER and SASL appear only once TLS is active."""
        expire = "NEVER" if self.config.expire_days is None else str(self.config.expire_days)
        capabilities = ["TOP"]
        if self.login_allowed():
            capabilities.append("USER")
        capabilities += [
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            f"EXPIRE {expire}",
            f"LOGIN-DELAY {self.config.login_delay_seconds}",
        ]
        if self.login_allowed() and self.config.sasl_mechanisms:
            capabilities.append("SASL " + " ".join(self.config.sasl_mechanisms))
        if self.stls_offered():
            capabilities.append("STLS")
        capabilities += ["UTF8", "LANG", f"IMPLEMENTATION {IMPLEMENTATION_NAME}"]
        return capabilities

    def stls_offered(self) -> bool:
        return (
            self.config.stls_available
            and not self.tls_active
            and self.state in (State.AUTHORIZATION, State.USER_ACCEPTED)
        )

    def cmd_capa(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 0, 0)
        if self.state is State.USER_ACCEPTED:
            # RFC 1939 section 7: PASS only *immediately* after USER; a CAPA in
            # between ends the USER/PASS pair (strict sequencing reading).
            self.state = State.AUTHORIZATION
            self.user_name = None
        body = b"".join(line.encode("ascii") + CRLF for line in self.capabilities())
        return ok("capability list follows", body)

    def cmd_quit(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 0, 0)
        if self.state is not State.TRANSACTION:
            self._log("quit", state="AUTHORIZATION")
            return ok("bye", close=True)
        return self.enter_update()

    def enter_update(self) -> Reply:
        """UPDATE state: remove the marked messages, release the lock, close."""
        assert self.maildrop is not None
        removed = set(self.deleted)
        if self.config.expire_days == 0:
            # RFC 2449 section 6.7: with EXPIRE 0, retrieved means deleted at UPDATE.
            removed |= self.retrieved
        doomed = [self.message(n) for n in sorted(removed)]
        try:
            self.maildrop.commit(doomed)
        except Exception as problem:
            self._log("update-failed", user=self.user_name, detail=str(problem))
            if not isinstance(problem, (MaildropError, OSError)):
                log.exception("session=%s commit failed", self.session_id)
            return err("[SYS/TEMP] some deleted messages were not removed", close=True)
        self._record_retrieved(doomed)
        self._log("update", user=self.user_name, removed=len(doomed))
        return ok(f"bye, {len(doomed)} messages removed", close=True)

    def _record_retrieved(self, removed: list[StoredMessage]) -> None:
        """Remember this session's RETRs for the next login's LAST (RFC 1225)."""
        assert self.maildrop is not None
        if not self.retrieved:
            return
        gone = {m.uid for m in removed}
        present = {m.uid for m in self.messages} - gone
        seen = self.seen_at_login | {self.message(n).uid for n in self.retrieved}
        try:
            self.maildrop.record_seen(seen & present)
        except OSError as problem:  # bookkeeping only: the UPDATE itself succeeded
            self._log("seen-record-failed", user=self.user_name, detail=str(problem))

    # --- TRANSACTION ----------------------------------------------------------

    def _drop_listing(self) -> tuple[int, int]:
        live = self.live_numbers()
        return len(live), sum(self.octets(n) for n in live)

    def cmd_stat(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 0, 0)
        count, size = self._drop_listing()
        return ok(f"{count} {size}")

    def cmd_list(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 0, 1)
        if args:
            number = self.parse_message_number(args[0])
            return ok(f"{number} {self.octets(number)}")
        # One octet count per message: the header's total is the listing's sum.
        sizes = [(n, self.octets(n)) for n in self.live_numbers()]
        body = b"".join(b"%d %d\r\n" % entry for entry in sizes)
        return ok(f"{len(sizes)} messages ({sum(size for _, size in sizes)} octets)", body)

    def cmd_retr(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 1, 1)
        number = self.parse_message_number(args[0])
        self.refuse_utf8_message(number)
        message = self.message(number)
        text = f"{self.octets(number)} octets"
        if message.streamed:
            reply = StreamedResponse(text, self.read_message(message.chunks))
        else:
            reply = ok(text, self.read_message(lambda: message.content))
        self.highest_accessed = max(self.highest_accessed, number)
        self.retrieved.add(number)
        return reply

    def cmd_top(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 2, 2)
        number = self.parse_message_number(args[0])
        line_count = parse_decimal(args[1])
        if line_count is None:
            raise CommandError("line count must be a non-negative decimal number")
        self.refuse_utf8_message(number)
        message = self.message(number)
        text = "top of message follows"
        if message.streamed:
            return StreamedResponse(text, top_pieces(self.read_message(message.chunks), line_count))
        return ok(text, top_of_message(self.read_message(lambda: message.content), line_count))

    def read_message(self, reader: Callable[[], _T]) -> _T:
        """Open a message's content; a store failure is a clean ``-ERR``
        before any octet of the reply is sent."""
        try:
            return reader()
        except (MaildropError, OSError) as problem:
            self._log("read-failed", user=self.user_name, detail=str(problem))
            raise CommandError("[SYS/TEMP] message cannot be read now") from None

    def cmd_dele(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 1, 1)
        number = self.parse_message_number(args[0])
        self.deleted.add(number)
        self.highest_accessed = max(self.highest_accessed, number)
        return ok(f"message {number} marked deleted")

    def cmd_noop(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 0, 0)
        return ok()

    def cmd_rset(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 0, 0)
        self.deleted.clear()
        # RFC 1225: LAST goes back to its value at the start of the session.
        self.highest_accessed = self.initial_highest_accessed
        count, size = self._drop_listing()
        return ok(f"maildrop has {count} messages ({size} octets)")

    def cmd_uidl(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 0, 1)
        if args:
            number = self.parse_message_number(args[0])
            return ok(f"{number} {self.message(number).uid}")
        body = b"".join(
            f"{n} {self.message(n).uid}\r\n".encode("ascii") for n in self.live_numbers()
        )
        return ok("unique-id listing follows", body)

    def cmd_last(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 0, 0)
        return ok(str(self.highest_accessed))

    # --- Internals ------------------------------------------------------------

    def _failed_login(self, **fields: object) -> None:
        """Wrong credentials: logged, and the reply waits out the failed-login delay."""
        self._login_failed = True
        self._log("login-failed", **fields)

    def _close_without_update(self) -> None:
        if self.maildrop is not None:
            self.maildrop.release()
            self.maildrop = None
        self.state = State.CLOSED
        self._pending.clear()

    def _log(self, event: str, *, level: int = logging.INFO, **fields: object) -> None:
        """One structured line per event; callers never pass secrets."""
        if not log.isEnabledFor(level):
            return
        details = " ".join(f"{key}={value}" for key, value in fields.items())
        log.log(level, "session=%s event=%s %s", self.session_id, event, details)


def top_of_message(content: bytes, body_lines: int) -> bytes:
    """Header, blank separator line and the first ``body_lines`` body lines.

    ``content`` is CRLF-normalised.  Without a blank line the whole message
    is header, so it is returned whole (RFC 1939 section 7, TOP).
    """
    separator = content.find(b"\r\n\r\n")
    if content.startswith(b"\r\n"):
        header_end = 2
    elif separator < 0:
        return content
    else:
        header_end = separator + 4
    position = header_end
    for _ in range(body_lines):
        line_end = content.find(b"\r\n", position)
        if line_end < 0:
            return content
        position = line_end + 2
    return content[:position]


def top_pieces(pieces: Iterable[bytes], body_lines: int) -> Iterator[bytes]:
    """:func:`top_of_message` over content in pieces: yields its prefix.

    In the CRLF wire form every LF ends a line and the only 2-octet line is
    the empty one, so the header ends after the first line of length 2."""
    in_header = True
    remaining = body_lines
    line_length = 0
    for piece in pieces:
        start = 0
        while (line_feed := piece.find(b"\n", start)) >= 0:
            length = line_length + line_feed + 1 - start
            line_length = 0
            start = line_feed + 1
            if in_header:
                if length == 2:
                    in_header = False
                    if remaining == 0:
                        yield piece[:start]
                        return
            else:
                remaining -= 1
                if remaining == 0:
                    yield piece[:start]
                    return
        line_length += len(piece) - start
        yield piece


def decode_base64(data: bytes) -> bytes | None:
    """Strict RFC 4648 base64 (RFC 5034 section 4): any character outside the
    alphabet, or ``=`` anywhere but the end, makes it invalid (None)."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def header_needs_utf8(content: bytes) -> bool:
    """The header section holds UTF-8 beyond ASCII (RFC 6532 headers).

    Legacy 8-bit bytes that are not UTF-8 are left to RFC 1939 rules."""
    end = content.find(b"\r\n\r\n")
    header = content if end < 0 else content[:end]
    if header.isascii():
        return False
    try:
        header.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def match_language(language_range: str) -> str | None:
    """RFC 4647 basic filtering of one range against :data:`LANGUAGES`;
    ``*`` is the administrator's preferred language (RFC 6856 section 3.2)."""
    if language_range == "*":
        return DEFAULT_LANGUAGE
    wanted = language_range.lower()
    for tag in LANGUAGES:
        if tag.lower() == wanted or tag.lower().startswith(wanted + "-"):
            return tag
    return None
