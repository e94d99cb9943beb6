"""Raw TCP sessions to the target: bounded, deadline-driven reads, and a
transcript of the exact bytes both ways. Never poplib or smtplib: the suite
must see what the server really sends. Protocol-neutral: a protocol's
session subclass (conformance.pop3.session) brings its reply reader."""

from __future__ import annotations

import enum
import select
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol, Self

from conformance.core.results import Direction
from conformance.core.tls import PeerInfo, TlsError, describe_peer, handshake
from conformance.core.transcript import ClientRedactor, Transcript

RECV_CHUNK_OCTETS = 65_536
TLS_SEND_PIECE_OCTETS = 16_384  # one TLS record
CRLF = b"\r\n"


class ConnectError(Exception):
    """The session could not be set up; message names address and cause.
    `tcp_open` is True when TCP connected and what followed failed (the
    implicit-TLS handshake), so no hint asks whether anything listens."""

    tcp_open = False


class ImplicitTlsFailed(ConnectError):
    """TCP connected; the implicit-TLS handshake did not complete."""

    tcp_open = True


class ResolveError(ConnectError):
    """The host name did not resolve (no connection was attempted)."""


class Outcome(enum.StrEnum):
    COMPLETE = "complete"
    CLOSED = "closed"  # orderly EOF from the server
    RESET = "reset"  # connection reset by the server
    TIMEOUT = "timeout"  # nothing (more) arrived before the deadline
    FLOOD = "flood"  # a size bound was crossed
    DATA = "data"  # bytes arrived while waiting for silence


@dataclass
class Quiet:
    """What happened while waiting for nothing to happen."""

    outcome: Outcome  # TIMEOUT = stayed quiet; CLOSED/RESET; DATA = bytes arrived
    data: bytes = b""


def deadline_after(seconds: float) -> float:
    return time.monotonic() + seconds


class ReplyFeed(Protocol):
    """A protocol's sans-I/O reply reader as the driver feeds it (e.g.
    conformance.pop3.reader.ReplyReader): bytes in, EOF, and what is
    buffered beyond the replies read so far."""

    @property
    def at_eof(self) -> bool: ...
    def feed(self, data: bytes) -> None: ...
    def feed_eof(self) -> None: ...
    def take_buffered(self) -> bytes: ...


class Session:
    """One TCP connection of a scenario: bounded reads into the protocol's
    reply reader, writes, TLS, quiet waits. A protocol's session subclass
    names its reader (`reader_class`) and reads replies with it."""

    reader_class: ClassVar[Callable[[int, int], ReplyFeed]]

    def __init__(
        self,
        name: str,
        sock: socket.socket,
        transcript: Transcript,
        *,
        max_line_octets: int,
        max_body_octets: int,
        redact: bool,
    ) -> None:
        self.name = name
        self.sock = sock
        self.transcript = transcript
        self.reader = self.reader_class(max_line_octets, max_body_octets)
        self.redactor = ClientRedactor(redact)
        self.closed_by_server = False  # EOF or reset seen
        self.closed_by_us = False
        self.greeting: bytes | None = None
        self.tls: PeerInfo | None = None  # set once a handshake completed
        #: how TLS ended: True = close_notify, False = TCP closed without it
        self.tls_close_notify: bool | None = None
        self._reset_seen = False

    @classmethod
    def connect(
        cls,
        name: str,
        host: str,
        port: int,
        transcript: Transcript,
        *,
        timeout: float,
        max_line_octets: int = 65_536,
        max_body_octets: int = 64 << 20,
        redact: bool = True,
        tls: tuple[ssl.SSLContext, str] | None = None,
    ) -> Self:
        """Connect; with `tls` (context, server name), start TLS at once
        (RFC 8314 implicit TLS). ConnectError names a TLS failure too."""
        deadline = deadline_after(timeout)
        sock = open_connection(host, port, timeout)
        transcript.event(name, f"connected to {format_address(host, port)}")
        session = cls(
            name,
            sock,
            transcript,
            max_line_octets=max_line_octets,
            max_body_octets=max_body_octets,
            redact=redact,
        )
        if tls is not None:
            try:
                session.start_tls(tls[0], tls[1], deadline)
            except TlsError as exc:
                session.close()
                raise ImplicitTlsFailed(
                    f"implicit TLS with {format_address(host, port)} failed: {exc}"
                ) from None
        return session

    @property
    def usable(self) -> bool:
        return not (self.closed_by_server or self.closed_by_us)

    # -- TLS -------------------------------------------------------------------

    def start_tls(self, context: ssl.SSLContext, server_name: str, deadline: float) -> bytes:
        """Complete a TLS client handshake on this connection (RFC 2595 §4:
        right after the CRLF of STLS's +OK; RFC 8314 §3.1: right after
        connect). Returns the plaintext bytes the server had sent beyond the
        last reply read (they are discarded: nothing may follow +OK in the
        clear). TlsError on failure; the session is then closed."""
        leftover = self.reader.take_buffered()
        try:
            self.sock = handshake(self.sock, context, server_name, deadline)
        except TlsError as exc:
            self.transcript.event(self.name, str(exc))
            self.close()
            raise
        self.tls = describe_peer(self.sock)  # type: ignore[arg-type]
        self.transcript.event(self.name, f"TLS established: {self.tls.version} {self.tls.cipher}")
        return leftover

    # -- writing ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send `data` in one write; the transcript gets the redacted form.

        Under TLS a large write goes out in pieces, and what the server sent
        meanwhile is read first: a server that refuses an over-long line and
        closes (an allowed abuse limit) makes the next TLS write fail, after
        which its -ERR could no longer be read."""
        self.transcript.record(self.name, Direction.CLIENT, self.redactor.redact(data))
        try:
            if self.tls is None or len(data) <= TLS_SEND_PIECE_OCTETS:
                self.sock.sendall(data)
                return
            for start in range(0, len(data), TLS_SEND_PIECE_OCTETS):
                while self._readable_now() and not self.reader.at_eof:
                    if not self._receive(time.monotonic() + 0.05):
                        break
                if self.reader.at_eof:
                    raise BrokenPipeError("the server closed the connection during the write")
                self.sock.sendall(data[start : start + TLS_SEND_PIECE_OCTETS])
        except OSError as exc:
            self.transcript.event(self.name, f"send failed: {exc}")
            self.closed_by_server = True

    def send_chopped(
        self, data: bytes, octets: int, pause: float, deadline: float, *, complete_at: int
    ) -> bool:
        """Send `data` `octets` at a time, `pause` seconds apart (TCP_NODELAY
        is on, so each write is its own segment). What the server sends in
        the pauses is read into the reply reader, for the replies to come.
        True when something arrived before the octet at `complete_at` (the
        end of the first line) was written: an answer to half a command.

        The transcript gets the whole redacted data once, then an event for
        the chopping: a PASS cut into pieces would escape the redactor."""
        self.transcript.record(self.name, Direction.CLIENT, self.redactor.redact(data))
        pieces = [data[start : start + octets] for start in range(0, len(data), octets)]
        self.transcript.event(
            self.name, f"written in {len(pieces)} pieces of {octets} octets, {pause:g} s apart"
        )
        early = False
        written = 0
        try:
            for index, piece in enumerate(pieces):
                if index:
                    until = min(time.monotonic() + pause, deadline)
                    while not self.reader.at_eof:
                        received = self._receive(until)
                        if isinstance(received, Outcome):
                            break
                        early = early or written <= complete_at
                if self.reader.at_eof:
                    self.transcript.event(
                        self.name, f"the server closed after {written} of {len(data)} octets"
                    )
                    return early
                self.sock.sendall(piece)
                written += len(piece)
        except OSError as exc:
            self.transcript.event(self.name, f"send failed: {exc}")
            self.closed_by_server = True
        return early

    # -- reading ---------------------------------------------------------------

    def _receive(self, deadline: float) -> bytes | Outcome:
        """One chunk fed to the reader; or TIMEOUT. EOF and reset are fed as
        EOF (the reader reports what was unfinished)."""
        if self.reader.at_eof:
            return Outcome.RESET if self._reset_seen else Outcome.CLOSED
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Outcome.TIMEOUT
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(RECV_CHUNK_OCTETS)
        except TimeoutError:
            return Outcome.TIMEOUT
        except ssl.SSLError as exc:
            if not is_unexpected_eof(exc):
                self._reset_seen = True
                self.transcript.event(self.name, f"receive failed: {exc}")
                self._mark_eof()
                return b""
            # TCP ended inside TLS without close_notify: an EOF for the reader
            self.tls_close_notify = False
            self.transcript.event(
                self.name, "connection closed by the server (EOF, no close_notify)"
            )
            self._mark_eof()
            return b""
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            self._reset_seen = True
            self.transcript.event(self.name, f"connection reset by the server ({exc.strerror})")
            self._mark_eof()
            return b""
        except OSError as exc:
            self._reset_seen = True
            self.transcript.event(self.name, f"receive failed: {exc}")
            self._mark_eof()
            return b""
        if not chunk:
            if self.tls is not None:
                self.tls_close_notify = True
            self.transcript.event(self.name, "connection closed by the server (EOF)")
            self._mark_eof()
            return b""
        self.transcript.record(self.name, Direction.SERVER, chunk)
        self.reader.feed(chunk)
        return chunk

    def _mark_eof(self) -> None:
        self.closed_by_server = True
        self.reader.feed_eof()

    def drain_unsolicited(self) -> bytes:
        """Bytes that arrived while no reply was expected: what is already
        buffered plus what the socket holds right now (no waiting)."""
        if self.usable:
            while self._readable_now():
                received = self._receive(time.monotonic() + 0.05)
                if not isinstance(received, bytes) or not received:
                    break
        return self.reader.take_buffered()

    def _readable_now(self) -> bool:
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True  # decrypted bytes the kernel socket no longer shows
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(readable)

    def wait_quiet(self, seconds: float, deadline: float) -> Quiet:
        """Wait `seconds` (capped by `deadline`); report the first data, close
        or reset. TIMEOUT means nothing happened."""
        pending = self.reader.take_buffered()
        if pending:
            return Quiet(Outcome.DATA, pending)
        if self.closed_by_server:
            return Quiet(Outcome.RESET if self._reset_seen else Outcome.CLOSED)
        until = min(time.monotonic() + seconds, deadline)
        received = self._receive(until)
        if isinstance(received, Outcome):
            return Quiet(received)
        if received:
            return Quiet(Outcome.DATA, self.reader.take_buffered())
        return Quiet(Outcome.RESET if self._reset_seen else Outcome.CLOSED)

    def collect_for(self, seconds: float, deadline: float) -> Quiet:
        """Wait the whole of `seconds` (capped by `deadline`), keeping every
        byte that arrives: DATA with all of it, else TIMEOUT, CLOSED or
        RESET. Unlike :meth:`wait_quiet` it does not return at the first
        chunk, so how a server's replies are split into segments cannot
        change what the wait saw."""
        until = min(time.monotonic() + seconds, deadline)
        collected = b""
        while True:
            quiet = self.wait_quiet(max(0.0, until - time.monotonic()), until)
            if quiet.outcome is not Outcome.DATA:
                return Quiet(Outcome.DATA, collected) if collected else quiet
            collected += quiet.data
            if time.monotonic() >= until:
                return Quiet(Outcome.DATA, collected)

    def close(self) -> None:
        if not self.closed_by_us:
            self.closed_by_us = True
            try:
                self.sock.close()
            except OSError:
                pass
            self.transcript.event(self.name, "closed by the client")


def is_unexpected_eof(exc: ssl.SSLError) -> bool:
    """TCP closed under TLS without close_notify. Python 3.11.7+ raises
    SSLEOFError; Debian 12's 3.11.2 a plain SSLError with this reason."""
    return isinstance(exc, ssl.SSLEOFError) or exc.reason == "UNEXPECTED_EOF_WHILE_READING"


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def open_connection(host: str, port: int, timeout: float) -> socket.socket:
    """Connect over IPv4 or IPv6 (every address getaddrinfo gives, in
    order); ConnectError names each attempt's failure."""
    where = format_address(host, port)
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ResolveError(f"cannot resolve {host!r}: {exc.strerror}") from None
    problems = []
    deadline = deadline_after(timeout)
    for family, kind, proto, _name, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except TimeoutError:
            problems.append(f"{address[0]}: no answer within {timeout:.1f} s")
        except ConnectionRefusedError:
            problems.append(f"{address[0]}: connection refused")
        except OSError as exc:
            problems.append(f"{address[0]}: {exc.strerror or exc}")
        sock.close()
    raise ConnectError(f"cannot connect to {where}: " + "; ".join(problems or ["no address"]))
