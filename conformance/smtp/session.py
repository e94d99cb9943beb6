"""SMTP sessions: the driver's bounded connection with SMTP's reply reader,
read one reply at a time (every line of a multi-line reply, RFC 5321
§4.2.1) with each framing finding on the reply."""

from __future__ import annotations

from dataclasses import dataclass, field

from conformance.core.driver import Outcome, Session
from conformance.core.framing import FramingFinding
from conformance.core.transcript import show_bytes
from conformance.smtp.reader import ConnectionEnded, Flood, Reply, ReplyReader, State

#: A reply longer than this many lines is a flood (EHLO lists are ~20).
MAX_REPLY_LINES = 1_000
MAX_REPLY_OCTETS = 1 << 20
AUTH_CONTINUE = 334  # RFC 4954 §4: a SASL challenge; what the client sends next is secret


@dataclass
class SmtpRead:
    """What reading one reply gave: the reply (COMPLETE), or how it ended."""

    outcome: Outcome
    reply: Reply | None = None
    findings: list[FramingFinding] = field(default_factory=list)
    detail: str = ""  # for FLOOD / a partial line at EOF


def _reader(max_line_octets: int, max_body_octets: int) -> ReplyReader:
    return ReplyReader(
        max_line_octets,
        max_reply_lines=MAX_REPLY_LINES,
        max_reply_octets=min(max_body_octets, MAX_REPLY_OCTETS),
    )


class SmtpSession(Session):
    """One SMTP connection of a scenario."""

    reader_class = staticmethod(_reader)
    reader: ReplyReader

    def read_reply(self, deadline: float) -> SmtpRead:
        """One whole reply (the greeting, or the answer to one command)."""
        self.reader.begin_reply()
        read = SmtpRead(Outcome.COMPLETE)
        while True:
            event = self.reader.next_event()
            if event is None:
                if self.reader.state is State.DONE:
                    return read
                if self.reader.state is State.BROKEN:
                    read.outcome = Outcome.CLOSED
                    return read
                received = self._receive(deadline)
                if isinstance(received, Outcome):
                    read.outcome = received
                    return read
                continue
            if isinstance(event, Reply):
                read.reply = event
                if event.code != AUTH_CONTINUE:  # a 334 challenge: the exchange goes on
                    self.redactor.status_received()
            elif isinstance(event, FramingFinding):
                read.findings.append(event)
            elif isinstance(event, Flood):
                self.transcript.event(self.name, f"stopped reading: {event.what}")
                read.outcome, read.detail = Outcome.FLOOD, event.what
                return read
            elif isinstance(event, ConnectionEnded):
                read.outcome = Outcome.RESET if self._reset_seen else Outcome.CLOSED
                read.detail = show_bytes(event.partial) if event.partial else ""
                return read
