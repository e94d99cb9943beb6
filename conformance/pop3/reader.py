"""A sans-I/O, incremental reader of POP3 replies.

Feed it the bytes as they arrive (`feed`, `feed_eof`); ask for events
(`next_event`): the status line, each body line (unstuffed), the end of the
body, and framing findings. It never buffers more than `max_line_octets`
of an unfinished line nor accepts more than `max_body_octets` of body: past
either bound it reports a `Flood` and stops.

A body is read in runs, not line by line: the complete lines up to the next
one that starts with '.' (a stuffed line or the terminator) are checked
together with bytes.count/split over the buffer. A run whose every line ends
in CRLF, holds no other CR and fits the bounds is one `BodyLines` event
(`next_event(bulk=True)`; plain `next_event()` hands it out line by line).
A run that breaks any of those rules is read one line at a time, with the
same findings, in the same order, as a line-by-line reader gives.

Octets are counted as RFC 1939 §11 counts a message: unstuffed, every line
ending counted as CRLF, without the terminating line."""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from conformance.core.reading import ReplyBuffer
from conformance.core.transcript import show_bytes
from conformance.pop3 import framing
from conformance.pop3.framing import FramingFinding

CR, LF = 0x0D, 0x0A
CRLF = b"\r\n"
TERMINATION_OCTET = b"."  # RFC 1939 §3
DOT = TERMINATION_OCTET[0]
LINE_STARTING_WITH_DOT = b"\n."  # RFC 1939 §3: where a run of plain body lines ends
STATUS_POSITIVE, STATUS_NEGATIVE = b"+OK", b"-ERR"  # RFC 1939 §3
CONTINUATION = b"+"  # RFC 5034 §4: a SASL server challenge is "+" SP base64
MAX_STATUS_LINE_OCTETS = 512  # RFC 1939 §3 / RFC 2449 §4, CRLF included


@dataclass(frozen=True)
class StatusLine:
    raw: bytes  # with its line end as received
    line: bytes  # without the line end
    status: str | None  # "+OK" | "-ERR" | "+" (a SASL challenge) | None when malformed

    @property
    def positive(self) -> bool:
        return self.status == "+OK"

    @property
    def continuation(self) -> bool:
        return self.status == "+"

    @property
    def looks_positive(self) -> bool:
        """`+OK` in any case: what a lenient client takes as positive (and so
        reads a body after). The strict form is `positive`."""
        return self.line[:3].upper() == STATUS_POSITIVE


@dataclass(frozen=True)
class BodyLine:
    raw: bytes  # as received, stuffing and line end included
    data: bytes  # unstuffed, without the line end


@dataclass(frozen=True)
class BodyLines:
    """Consecutive body lines that need no unstuffing and break no framing
    rule: each ends in CRLF, holds no other CR, does not start with '.',
    and fits `max_line_octets`. Only `next_event(bulk=True)` returns it."""

    raw: bytes  # exactly as received: the lines with their CRLFs
    lines: list[bytes]  # without the CRLFs (unstuffed: nothing to unstuff)

    def each(self) -> list[BodyLine]:
        """The same lines as one BodyLine each."""
        return [BodyLine(line + CRLF, line) for line in self.lines]


@dataclass(frozen=True)
class BodyEnd:
    octets: int  # RFC 1939 §11 size of the body


@dataclass(frozen=True)
class Flood:
    """A bound was crossed; the reader accepts nothing more."""

    what: str


@dataclass(frozen=True)
class ConnectionEnded:
    """EOF arrived while a reply was incomplete."""

    partial: bytes  # an unfinished line, if any


Event = StatusLine | BodyLine | BodyLines | BodyEnd | Flood | ConnectionEnded | FramingFinding


class State(enum.Enum):
    IDLE = "idle"  # no reply expected: bytes that arrive are unsolicited
    STATUS = "status"
    BODY = "body"
    DONE = "done"  # reply complete; call begin_reply for the next one
    BROKEN = "broken"  # flood or EOF: nothing more will be parsed


class ReplyReader(ReplyBuffer):
    def __init__(self, max_line_octets: int = 65_536, max_body_octets: int = 64 << 20) -> None:
        self.max_line_octets = max_line_octets
        self.max_body_octets = max_body_octets
        super().__init__()
        self._state = State.IDLE
        self._multiline_if_positive = False
        self._continuation_allowed = False
        self._body_octets = 0
        self._slow_lines = 0  # body lines still to be read one at a time
        self._pending: deque[Event] = deque()

    @property
    def state(self) -> State:
        return self._state

    @property
    def _broken(self) -> bool:
        return self._state is State.BROKEN

    # -- replies -------------------------------------------------------------

    def begin_reply(self, multiline_if_positive: bool, *, continuation: bool = False) -> None:
        """The next bytes are a reply; a positive one carries a body when
        `multiline_if_positive`. With `continuation` (inside an AUTH
        exchange) a line starting "+ " or a lone "+" is a SASL challenge,
        status "+", not a malformed status."""
        if self._state is State.BROKEN:
            return
        self._state = State.STATUS
        self._multiline_if_positive = multiline_if_positive
        self._continuation_allowed = continuation
        self._body_octets = 0
        self._slow_lines = 0

    def next_event(self, *, bulk: bool = False) -> Event | None:
        """The next event, or None when more bytes are needed (or the reader
        is idle/done/broken). With `bulk`, a run of plain body lines comes
        as one BodyLines event; without, as one BodyLine per line."""
        pending = self._pending
        if not pending:
            if self._state is State.BODY:
                self._advance_body()
            elif self._state is State.STATUS:
                taken = self._take_line()
                if taken is not None:
                    self._on_status_line(*taken)
            if not pending:
                return None
        event = pending.popleft()
        if not bulk and type(event) is BodyLines:
            each = event.each()
            pending.extendleft(reversed(each[1:]))
            return each[0]
        return event

    # -- internals -----------------------------------------------------------

    def _advance_body(self) -> None:
        if not self._slow_lines and self._take_plain_run():
            return
        taken = self._take_line()
        if taken is None:
            return
        if self._slow_lines:
            self._slow_lines -= 1
        self._on_body_line(*taken)

    def _take_plain_run(self) -> bool:
        """The complete lines before the next line starting with '.' as one
        BodyLines event when every one is plain (see BodyLines) and the body
        bound holds after them; otherwise those lines are marked to be read
        one at a time (the line-by-line checks then report exactly what is
        wrong, and where). False when nothing was taken."""
        buffer, start = self._buffer, self._start
        if start >= len(buffer) or buffer[start] == DOT:
            return False  # a dot line is read on its own; no bytes: _take_line
        last_lf = buffer.rfind(b"\n", self._scan_from)
        if last_lf < 0:
            return False  # no complete line: _take_line applies the bounds and EOF
        dot_line = buffer.find(LINE_STARTING_WITH_DOT, start, last_lf + 1)
        end = last_lf + 1 if dot_line < 0 else dot_line + 1
        run = bytes(buffer[start:end])
        lines = run.split(CRLF)
        lines.pop()  # the run ends in LF: after a final CRLF the piece is empty
        count = len(lines)  # CRLFs in the run
        plain = (
            run.count(b"\n") == count  # no bare LF
            and run.count(b"\r") == count  # no bare CR
            and self._body_octets + len(run) <= self.max_body_octets
            and (
                len(run) - 2 <= self.max_line_octets or max(map(len, lines)) <= self.max_line_octets
            )
        )
        if not plain:
            self._slow_lines = run.count(b"\n")
            return False
        self._start = self._scan_from = end
        self._compact()
        self._body_octets += len(run)  # plain: unstuffed data + CRLF == raw
        self._pending.append(BodyLines(run, lines))
        return True

    def _take_line(self) -> tuple[bytes, bytes] | None:
        buffer = self._buffer
        newline = buffer.find(b"\n", self._scan_from)
        if newline < 0:
            unfinished = len(buffer) - self._start
            if unfinished > self.max_line_octets:
                self._break(Flood(f"a line longer than {self.max_line_octets} octets without LF"))
            elif self._eof:
                self._on_eof_inside_reply(bytes(buffer[self._start :]))
            else:
                self._scan_from = len(buffer)
            return None
        raw = bytes(buffer[self._start : newline + 1])
        self._start = newline + 1
        self._scan_from = self._start
        self._compact()
        if len(raw) - 2 > self.max_line_octets:
            self._break(Flood(f"a line longer than {self.max_line_octets} octets"))
            return None
        line = raw[:-2] if raw.endswith(CRLF) else raw[:-1]
        self._check_line_end(raw, line)
        return raw, line

    def _compact(self) -> None:
        if self._start > 65_536 and self._start * 2 > len(self._buffer):
            del self._buffer[: self._start]
            self._scan_from -= self._start
            self._start = 0

    def _discard_all(self) -> None:
        super()._discard_all()
        self._slow_lines = 0

    def _check_line_end(self, raw: bytes, line: bytes) -> None:
        if not raw.endswith(CRLF):
            self._pending.append(
                framing.finding(framing.LINE_END, f"line ends in a bare LF: {show_bytes(raw)}")
            )
        if b"\r" in line:
            self._pending.append(
                framing.finding(framing.LINE_END, f"bare CR inside a line: {show_bytes(raw)}")
            )

    def _on_status_line(self, raw: bytes, line: bytes) -> None:
        status = status_of(line)
        if status is None and self._continuation_allowed and is_continuation(line):
            # RFC 5034 §4: challenges may be longer than a status line
            self._pending.append(StatusLine(raw, line, CONTINUATION.decode()))
            self._state = State.DONE
            return
        if status is None:
            self._pending.append(
                framing.finding(
                    framing.STATUS,
                    f"status line does not start with '+OK' or '-ERR' followed by SP or CRLF: "
                    f"{show_bytes(raw)}",
                )
            )
        if len(line) + 2 > MAX_STATUS_LINE_OCTETS:
            self._pending.append(
                framing.finding(
                    framing.STATUS_LENGTH,
                    f"status line is {len(line) + 2} octets with CRLF "
                    f"(limit {MAX_STATUS_LINE_OCTETS})",
                )
            )
        status_line = StatusLine(raw, line, status)
        self._pending.append(status_line)
        if status_line.looks_positive and self._multiline_if_positive:
            self._state = State.BODY
        else:
            self._state = State.DONE

    def _on_body_line(self, raw: bytes, line: bytes) -> None:
        if line == TERMINATION_OCTET:
            self._pending.append(BodyEnd(self._body_octets))
            self._state = State.DONE
            return
        data = line
        if line.startswith(TERMINATION_OCTET):
            data = line[1:]
            if not line.startswith(b".."):
                self._pending.append(
                    framing.finding(
                        framing.STUFFING,
                        f"body line starts with '.' but is not stuffed: {show_bytes(raw)}",
                    )
                )
        self._body_octets += len(data) + 2
        if self._body_octets > self.max_body_octets:
            self._break(Flood(f"a body larger than {self.max_body_octets} octets"))
            return
        self._pending.append(BodyLine(raw, data))

    def _on_eof_inside_reply(self, partial: bytes) -> None:
        if self._state is State.BODY:
            self._pending.append(
                framing.finding(
                    framing.TERMINATOR,
                    "connection closed before the terminating '.' CRLF line"
                    + (f" (unfinished line {show_bytes(partial)})" if partial else ""),
                )
            )
        elif partial:
            self._pending.append(
                framing.finding(
                    framing.LINE_END,
                    f"connection closed inside a line without CRLF: {show_bytes(partial)}",
                )
            )
        self._pending.append(ConnectionEnded(partial))
        self._state = State.BROKEN
        self._discard_all()

    def _break(self, flood: Flood) -> None:
        self._pending.append(flood)
        self._state = State.BROKEN
        self._discard_all()


def is_continuation(line: bytes) -> bool:
    """A SASL challenge line: "+" alone or "+" SP and data (RFC 5034 §4; the
    shape of the data is judged by the scenario, not here)."""
    return line == CONTINUATION or line.startswith(CONTINUATION + b" ")


def status_of(line: bytes) -> str | None:
    """ "+OK"/"-ERR" when the line starts with exactly that followed by SP or
    end of line (RFC 1939 §3), else None."""
    for indicator in (STATUS_POSITIVE, STATUS_NEGATIVE):
        if line == indicator or line.startswith(indicator + b" "):
            return indicator.decode()
    return None
