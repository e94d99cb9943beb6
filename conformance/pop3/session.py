"""POP3 sessions: the driver's bounded connection with POP3's reply reader,
read one reply at a time (a status line, and for a positive multi-line
reply its dot-stuffed body) with every framing finding on the reply."""

from __future__ import annotations

from dataclasses import dataclass, field

from conformance.core.driver import CRLF, Outcome, Session
from conformance.core.framing import FramingFinding
from conformance.core.transcript import show_bytes
from conformance.pop3.reader import (
    BodyEnd,
    BodyLine,
    BodyLines,
    ConnectionEnded,
    Flood,
    ReplyReader,
    State,
    StatusLine,
)


@dataclass
class Reply:
    outcome: Outcome
    status: StatusLine | None = None
    lines: list[bytes] = field(default_factory=list)  # unstuffed body lines
    body_octets: int | None = None  # RFC 1939 §11 count, when the body ended
    findings: list[FramingFinding] = field(default_factory=list)
    detail: str = ""  # for FLOOD / partial data

    @property
    def body(self) -> bytes:
        return CRLF.join(self.lines) + CRLF if self.lines else b""


class Pop3Session(Session):
    """One POP3 connection of a scenario."""

    reader_class = ReplyReader
    reader: ReplyReader

    def read_reply(
        self, multiline_if_positive: bool, deadline: float, *, continuation: bool = False
    ) -> Reply:
        """One reply; with `continuation`, a SASL challenge counts as one
        (status "+")."""
        self.reader.begin_reply(multiline_if_positive, continuation=continuation)
        reply = Reply(Outcome.COMPLETE)
        while True:
            event = self.reader.next_event(bulk=True)
            if event is None:
                if self.reader.state is State.DONE:
                    return reply
                if self.reader.state is State.BROKEN:
                    reply.outcome = Outcome.CLOSED
                    return reply
                received = self._receive(deadline)
                if isinstance(received, Outcome):
                    reply.outcome = received
                    return reply
                continue
            if isinstance(event, BodyLines):
                reply.lines += event.lines
            elif isinstance(event, StatusLine):
                reply.status = event
                if not event.continuation:  # a challenge: the AUTH exchange goes on
                    self.redactor.status_received()
            elif isinstance(event, BodyLine):
                reply.lines.append(event.data)
            elif isinstance(event, BodyEnd):
                reply.body_octets = event.octets
            elif isinstance(event, FramingFinding):
                reply.findings.append(event)
            elif isinstance(event, Flood):
                self.transcript.event(self.name, f"stopped reading: {event.what}")
                reply.outcome, reply.detail = Outcome.FLOOD, event.what
                return reply
            elif isinstance(event, ConnectionEnded):
                reply.outcome = Outcome.RESET if self._reset_seen else Outcome.CLOSED
                reply.detail = show_bytes(event.partial) if event.partial else ""
                return reply
