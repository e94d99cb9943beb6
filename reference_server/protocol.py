"""Sans-I/O POP3 protocol core (RFC 1939, RFC 2449, RFC 3206, LAST from RFC 1225).

Nothing in this module touches a socket or an event loop: feed received bytes
to :meth:`Pop3Session.receive_data` and send back the bytes it returns (or
:meth:`Pop3Session.feed` them and iterate :meth:`Pop3Session.replies` to get
one reply per command, executed lazily).  The only I/O happens inside the
injected maildrop store (:mod:`.storage`).

State machine
=============

A session is always in exactly one of these states::

    AUTHORIZATION   after the greeting, after a failed USER/PASS/APOP
    USER_ACCEPTED   a sub-state of AUTHORIZATION: USER succeeded, PASS expected
    TRANSACTION     authenticated, maildrop opened and locked
    CLOSED          QUIT answered (after UPDATE when it came from TRANSACTION),
                    autologout, or connection lost; nothing more is processed

Transitions (anything not listed is refused with ``-ERR`` and changes
nothing, except that USER_ACCEPTED falls back to AUTHORIZATION):

    AUTHORIZATION  --USER name ok-------------------------->  USER_ACCEPTED
    AUTHORIZATION  --APOP name digest ok, maildrop locked-->  TRANSACTION
    AUTHORIZATION  --QUIT---------------------------------->  CLOSED (no UPDATE)
    AUTHORIZATION  --CAPA---------------------------------->  AUTHORIZATION
    USER_ACCEPTED  --PASS ok, maildrop locked-------------->  TRANSACTION
    USER_ACCEPTED  --PASS refused-------------------------->  AUTHORIZATION
    USER_ACCEPTED  --CAPA (answered)----------------------->  AUTHORIZATION
    USER_ACCEPTED  --QUIT---------------------------------->  CLOSED (no UPDATE)
    USER_ACCEPTED  --any other command (refused)----------->  AUTHORIZATION
    TRANSACTION    --STAT LIST RETR DELE NOOP RSET TOP UIDL LAST CAPA-->  TRANSACTION
    TRANSACTION    --QUIT----------------------------------> UPDATE -> CLOSED
    any state      --autologout / connection lost---------->  CLOSED (no UPDATE)

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

Pass the subclass to :func:`reference_server.server.start_server` as
``session_class``.  The storage side (octet counting, what happens at
UPDATE) is overridden by subclassing the classes in :mod:`.storage`.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from .storage import (
    Maildrop,
    MaildropCorrupt,
    MaildropError,
    MaildropLocked,
    MaildropStore,
    StoredMessage,
)

# --- Limits (named after the RFC text that sets them) -----------------------

#: RFC 2449 section 4: command lines may be up to 255 octets including CRLF.
MAX_COMMAND_LINE_OCTETS = 255
#: RFC 1939 section 3: the autologout timer is at least 10 minutes.
MIN_AUTOLOGOUT_SECONDS = 600
DEFAULT_AUTOLOGOUT_SECONDS = MIN_AUTOLOGOUT_SECONDS
#: RFC 2449 section 4: a reply's first line is at most 512 octets with CRLF.
MAX_RESPONSE_LINE_OCTETS = 512
#: RFC 2449 section 6.7 / RFC 1939 section 7: a unique-id is 1 to 70 octets.
MAX_UID_OCTETS = 70

IMPLEMENTATION_NAME = "mailspec-reference-server-0.1"

CRLF = b"\r\n"
_DOT_AT_LINE_START = re.compile(rb"^\.", re.MULTILINE)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_KEYWORD = re.compile(r"[A-Za-z]{3,4}")
_HEX_DIGEST = re.compile(r"[0-9A-Fa-f]{32}")

log = logging.getLogger("reference_server.session")


class State(enum.Enum):
    AUTHORIZATION = "AUTHORIZATION"
    USER_ACCEPTED = "USER_ACCEPTED"
    TRANSACTION = "TRANSACTION"
    CLOSED = "CLOSED"


@dataclass(frozen=True)
class Response:
    """One reply: status line plus an optional multi-line body.

    ``body`` holds unstuffed content whose lines each end with CRLF; the
    serialiser byte-stuffs it (RFC 1939 section 3) and adds the terminator.
    ``close`` asks the transport to close the connection after sending.
    """

    ok: bool
    text: str = ""
    body: bytes | None = None
    close: bool = False

    def to_bytes(self) -> bytes:
        status = b"+OK" if self.ok else b"-ERR"
        line = status + (b" " + self.text.encode("utf-8") if self.text else b"") + CRLF
        if self.body is None:
            return line
        return line + _DOT_AT_LINE_START.sub(b"..", self.body) + b"." + CRLF


Reply = Response | bytes


def ok(text: str = "", body: bytes | None = None, *, close: bool = False) -> Response:
    return Response(True, text, body, close)


def err(text: str, *, close: bool = False) -> Response:
    return Response(False, text, None, close)


class CommandError(Exception):
    """Raised inside a handler to refuse the command with ``-ERR <message>``."""


@dataclass
class SessionConfig:
    """Behaviour switches shared by every session of one server."""

    enable_apop: bool = False
    enable_last: bool = True
    #: RFC 2449 section 6.5; advertised as ``LOGIN-DELAY <n>`` (not enforced at 0).
    login_delay_seconds: int = 0
    hostname: str = field(default_factory=socket.gethostname)


class LoginMethod(enum.Enum):
    """How a user may authenticate. RFC 1939 section 13 recommends one
    method per user, so a user is either a PASS user or an APOP user."""

    PASS = "pass"
    APOP = "apop"


class UserDirectory:
    """Maps user names to their shared secret and their one login method."""

    def __init__(self, secrets_by_user: Mapping[str, str] | None = None) -> None:
        self._secrets: dict[str, str] = dict(secrets_by_user or {})
        self._methods: dict[str, LoginMethod] = {}

    def secret_for(self, user: str) -> str | None:
        return self._secrets.get(user)

    def method_for(self, user: str) -> LoginMethod:
        return self._methods.get(user, LoginMethod.PASS)

    def set(self, user: str, secret: str, method: LoginMethod = LoginMethod.PASS) -> None:
        self._secrets[user] = secret
        self._methods[user] = method

    def remove(self, user: str) -> None:
        self._secrets.pop(user, None)
        self._methods.pop(user, None)

    def clear(self) -> None:
        self._secrets.clear()
        self._methods.clear()

    def names(self) -> list[str]:
        return list(self._secrets)


def parse_decimal(token: str) -> int | None:
    """A non-negative decimal number (leading zeros allowed), else None."""
    if not token or not token.isascii() or not token.isdigit():
        return None
    return int(token)


class Pop3Session:
    """One POP3 conversation, from greeting to close, with no I/O of its own."""

    #: Keywords accepted in each state; everything else is refused.
    allowed_commands: Mapping[State, frozenset[str]] = {
        State.AUTHORIZATION: frozenset({"USER", "APOP", "QUIT", "CAPA"}),
        State.USER_ACCEPTED: frozenset({"PASS", "QUIT", "CAPA"}),
        State.TRANSACTION: frozenset(
            {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "LAST", "QUIT", "CAPA"}
        ),
        State.CLOSED: frozenset(),
    }
    #: Every keyword this implementation knows, to tell "unknown" from "wrong state".
    known_commands: frozenset[str] = frozenset().union(*allowed_commands.values())

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
        self.apop_timestamp: str | None = (
            f"<{os.getpid()}.{secrets.token_hex(8)}@{self.config.hostname}>"
            if self.config.enable_apop
            else None
        )
        self._pending = bytearray()
        self._discarding_long_line = False

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
        """Buffer received octets; :meth:`replies` then executes complete lines."""
        self._pending += data

    def replies(self) -> Iterator[bytes]:
        """Execute buffered complete lines one by one, yielding each reply.

        A transport can send (and wait for the peer to read) each reply
        before the next command runs, so pipelined RETRs never pile up in
        memory.  Stops after a reply that closes the session: bytes after
        QUIT are never processed (RFC 1939 section 6).
        """
        while not self.closed:
            newline = self._pending.find(b"\n")
            if newline < 0:
                if len(self._pending) > MAX_COMMAND_LINE_OCTETS:
                    # Bounded buffer: drop the excess, answer once the line ends.
                    self._pending.clear()
                    self._discarding_long_line = True
                return
            line = bytes(self._pending[:newline])
            del self._pending[: newline + 1]
            if self._discarding_long_line or len(line) + 1 > MAX_COMMAND_LINE_OCTETS:
                self._discarding_long_line = False
                yield err("command line too long").to_bytes()
                continue
            yield self.handle_line(line)

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
        reply = self._dispatch(line)
        if isinstance(reply, Response):
            if reply.close:
                self._close_without_update()
            return reply.to_bytes()
        return reply

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

    def cmd_user(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 1, 1)
        if not args[0]:
            raise CommandError("missing user name")
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
            self._log("login-failed", user=user, method="PASS")
            return err("[AUTH] invalid user name or password")
        return self.open_maildrop(user, method="PASS")

    def cmd_apop(self, args: list[str]) -> Reply:
        if self.apop_timestamp is None:
            raise CommandError("APOP is not enabled on this server")
        self.expect_arguments(args, 2, 2)
        user, digest = args
        if not user or not _HEX_DIGEST.fullmatch(digest):
            raise CommandError("APOP needs a name and a 32-digit hex MD5 digest")
        secret = self.users.secret_for(user)
        if secret is None or self.users.method_for(user) is not LoginMethod.APOP:
            self._log("login-failed", user=user, method="APOP")
            return err("[AUTH] invalid user name or digest")
        expected = hashlib.md5(
            (self.apop_timestamp + secret).encode("utf-8"), usedforsecurity=False
        ).hexdigest()
        if not hmac.compare_digest(expected, digest.lower()):
            self._log("login-failed", user=user, method="APOP")
            return err("[AUTH] invalid user name or digest")
        return self.open_maildrop(user, method="APOP")

    def open_maildrop(self, user: str, *, method: str) -> Reply:
        """Lock and read the maildrop, then enter TRANSACTION (RFC 1939 section 4)."""
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
        self._log("login", user=user, method=method, messages=len(self.messages))
        count, size = self._drop_listing()
        return ok(f"{user} has {count} messages ({size} octets)")

    # --- Both states ----------------------------------------------------------

    def capabilities(self) -> list[str]:
        """CAPA lines (RFC 2449 section 6); identical before and after login."""
        capabilities = [
            "TOP",
            "USER",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "EXPIRE NEVER",
            f"LOGIN-DELAY {self.config.login_delay_seconds}",
            f"IMPLEMENTATION {IMPLEMENTATION_NAME}",
        ]
        return capabilities

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
        doomed = [self.message(n) for n in sorted(self.deleted)]
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
        self.highest_accessed = max(self.highest_accessed, number)
        self.retrieved.add(number)
        return ok(f"{self.octets(number)} octets", self.message(number).content)

    def cmd_top(self, args: list[str]) -> Reply:
        self.expect_arguments(args, 2, 2)
        number = self.parse_message_number(args[0])
        line_count = parse_decimal(args[1])
        if line_count is None:
            raise CommandError("line count must be a non-negative decimal number")
        return ok(
            "top of message follows", top_of_message(self.message(number).content, line_count)
        )

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

    def _close_without_update(self) -> None:
        if self.maildrop is not None:
            self.maildrop.release()
            self.maildrop = None
        self.state = State.CLOSED
        self._pending.clear()

    def _log(self, event: str, *, level: int = logging.INFO, **fields: object) -> None:
        """One structured line per event; callers never pass secrets."""
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
