"""A sans-I/O, incremental reader of SMTP replies (RFC 5321 §4.2).

Feed it the bytes as they arrive (`feed`, `feed_eof`); call `begin_reply`
when a reply is due and ask for events (`next_event`): framing findings as
they are seen, then one `Reply` once its last line (code SP, or a bare code)
has arrived. Bytes after that reply stay buffered, untouched, for the next
`begin_reply` (pipelined replies) or for the unsolicited-data check.

Bounds: an unfinished line longer than `max_line_octets`, a reply of more
than `max_reply_lines` lines or `max_reply_octets` octets is a `Flood`, and
the reader accepts nothing more. The 512-octet reply-line limit of RFC 5321
§4.5.3.1.5 is a finding, not a bound: the line is still read.

A line that does not start with three digits cannot be framed: it is
reported (smtp-code) and ends the reply, with `code` None, so a broken
server never makes the reader wait for a last line that will not come."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from conformance.core.framing import FramingFinding
from conformance.core.reading import ReplyBuffer
from conformance.core.transcript import show_bytes
from conformance.smtp import framing

CRLF = b"\r\n"
MAX_REPLY_LINE_OCTETS = 512  # RFC 5321 §4.5.3.1.5, CRLF included
_CODE = re.compile(rb"[0-9]{3}")
_VALID_CODE = re.compile(rb"[2-5][0-5][0-9]")  # RFC 5321 §4.2 Reply-code
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # textstring: HT, SP, printable


@dataclass(frozen=True)
class ReplyLine:
    raw: bytes  # with its line end as received
    line: bytes  # without the line end
    code: int | None  # None: the line does not start with three digits
    last: bool  # code SP, bare code, or unframeable
    text: bytes  # after the code and its separator


@dataclass(frozen=True)
class Reply:
    lines: tuple[ReplyLine, ...]

    @property
    def code(self) -> int | None:
        """The first line's code (RFC 5321 §4.2.1: all lines carry it)."""
        return self.lines[0].code

    @property
    def texts(self) -> list[bytes]:
        return [line.text for line in self.lines]

    @property
    def raw(self) -> bytes:
        return b"".join(line.raw for line in self.lines)

    @property
    def multiline(self) -> bool:
        return len(self.lines) > 1

    @property
    def bare_code(self) -> bool:
        """The last line is the code alone, without the SP that RFC 5321
        §4.2.1 says SHOULD follow (SMTP-5321-REPLY-03)."""
        return len(self.lines[-1].line) == 3 and self.code is not None

    @property
    def positive(self) -> bool:
        return self.code is not None and 200 <= self.code < 400


@dataclass(frozen=True)
class Flood:
    """A bound was crossed; the reader accepts nothing more."""

    what: str


@dataclass(frozen=True)
class ConnectionEnded:
    """EOF arrived while a reply was incomplete."""

    partial: bytes  # an unfinished line, if any


Event = Reply | Flood | ConnectionEnded | FramingFinding


class State(enum.Enum):
    IDLE = "idle"  # no reply expected
    REPLY = "reply"  # reading the lines of one reply
    DONE = "done"  # reply complete; call begin_reply for the next one
    BROKEN = "broken"  # flood or EOF: nothing more will be parsed


class ReplyReader(ReplyBuffer):
    def __init__(
        self,
        max_line_octets: int = 65_536,
        max_reply_lines: int = 1_000,
        max_reply_octets: int = 1 << 20,
    ) -> None:
        self.max_line_octets = max_line_octets
        self.max_reply_lines = max_reply_lines
        self.max_reply_octets = max_reply_octets
        super().__init__()
        self._state = State.IDLE
        self._lines: list[ReplyLine] = []
        self._reply_octets = 0
        self._pending: list[Event] = []

    @property
    def state(self) -> State:
        return self._state

    @property
    def _broken(self) -> bool:
        return self._state is State.BROKEN

    # -- replies -------------------------------------------------------------

    def begin_reply(self) -> None:
        """The next bytes are one reply (to a command, or the greeting)."""
        if self._state is State.BROKEN:
            return
        self._state = State.REPLY
        self._lines = []
        self._reply_octets = 0

    def next_event(self) -> Event | None:
        """The next event, or None when more bytes are needed (or the reader
        is idle, done or broken)."""
        while not self._pending and self._state is State.REPLY:
            if not self._step():
                break
        return self._pending.pop(0) if self._pending else None

    # -- internals -----------------------------------------------------------

    def _step(self) -> bool:
        """Read one line if one is complete; False when more bytes are needed."""
        buffer = self._buffer
        newline = buffer.find(b"\n", self._scan_from)
        if newline < 0:
            unfinished = len(buffer) - self._start
            if unfinished > self.max_line_octets:
                self._break(Flood(f"a line longer than {self.max_line_octets} octets without LF"))
            elif self._eof:
                self._on_eof(bytes(buffer[self._start :]))
            else:
                self._scan_from = len(buffer)
            return False
        raw = bytes(buffer[self._start : newline + 1])
        self._start = self._scan_from = newline + 1
        if self._start > 65_536 and self._start * 2 > len(buffer):
            del buffer[: self._start]
            self._start = self._scan_from = 0
        if len(raw) - 2 > self.max_line_octets:
            self._break(Flood(f"a line longer than {self.max_line_octets} octets"))
            return False
        self._reply_octets += len(raw)
        if len(self._lines) >= self.max_reply_lines or self._reply_octets > self.max_reply_octets:
            self._break(
                Flood(
                    f"a reply of more than {self.max_reply_lines} lines "
                    f"or {self.max_reply_octets} octets"
                )
            )
            return False
        self._on_line(raw)
        return True

    def _on_line(self, raw: bytes) -> None:
        line = raw[:-2] if raw.endswith(CRLF) else raw[:-1]
        if not raw.endswith(CRLF):
            self._finding(framing.LINE_END, f"reply line ends in a bare LF: {show_bytes(raw)}")
        if b"\r" in line:
            self._finding(framing.LINE_END, f"bare CR inside a reply line: {show_bytes(raw)}")
        if len(line) + 2 > MAX_REPLY_LINE_OCTETS:
            self._finding(
                framing.LINE_LENGTH,
                f"reply line is {len(line) + 2} octets with CRLF (limit {MAX_REPLY_LINE_OCTETS})",
            )
        reply_line = self._parse(raw, line)
        if _CONTROL.search(reply_line.text.replace(b"\r", b"")):
            self._finding(framing.TEXT, f"control character in the reply text: {show_bytes(raw)}")
        if self._lines and reply_line.code is not None and reply_line.code != self._lines[0].code:
            self._finding(
                framing.SAME_CODE,
                f"line has code {reply_line.code}, the reply began with {self._lines[0].code}: "
                f"{show_bytes(raw)}",
            )
        self._lines.append(reply_line)
        if reply_line.last:
            self._pending.append(Reply(tuple(self._lines)))
            self._state = State.DONE

    def _parse(self, raw: bytes, line: bytes) -> ReplyLine:
        head = line[:3]
        if not _CODE.fullmatch(head):
            self._finding(
                framing.CODE,
                f"reply line does not start with a three-digit code: {show_bytes(raw)}",
            )
            return ReplyLine(raw, line, None, True, line)
        if not _VALID_CODE.fullmatch(head):
            self._finding(
                framing.CODE,
                f"reply code {head.decode()} is outside 2yz-5yz with y 0-5: {show_bytes(raw)}",
            )
        code = int(head)
        separator = line[3:4]
        if separator == b"-":
            return ReplyLine(raw, line, code, False, line[4:])
        if separator in (b" ", b""):
            return ReplyLine(raw, line, code, True, line[4:])
        self._finding(
            framing.CONTINUATION,
            f"the code is followed by {show_bytes(separator)}, not '-', SP or CRLF: "
            f"{show_bytes(raw)}",
        )
        return ReplyLine(raw, line, code, True, line[3:])

    def _on_eof(self, partial: bytes) -> None:
        if self._lines:
            self._finding(
                framing.INCOMPLETE,
                f"connection closed after {len(self._lines)} continuation line(s) and no last line",
            )
        if partial:
            self._finding(
                framing.LINE_END,
                f"connection closed inside a line without CRLF: {show_bytes(partial)}",
            )
        self._pending.append(ConnectionEnded(partial))
        self._state = State.BROKEN
        self.take_buffered()

    def _break(self, flood: Flood) -> None:
        self._pending.append(flood)
        self._state = State.BROKEN
        self.take_buffered()

    def _finding(self, rule: framing.FramingRule, detail: str) -> None:
        self._pending.append(framing.finding(rule, detail))


def unsolicited(data: bytes) -> FramingFinding:
    """The finding for bytes that arrived when no reply was due."""
    return framing.finding(
        framing.UNSOLICITED, f"{len(data)} octets no command asked for: {show_bytes(data[:80])}"
    )
