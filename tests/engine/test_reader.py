"""The sans-I/O reply reader. Every case is fed whole, one byte at a time,
and with trailing garbage (which must stay buffered, untouched); and read
both line by line (`next_event()`) and in runs (`next_event(bulk=True)`,
whose BodyLines events are spread back into lines to compare)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from conformance.pop3 import framing
from conformance.pop3.framing import FramingFinding
from conformance.pop3.reader import (
    BodyEnd,
    BodyLine,
    BodyLines,
    ConnectionEnded,
    Event,
    Flood,
    ReplyReader,
    State,
    StatusLine,
)

GARBAGE = b"GARBAGE\x00 not part of the reply"


def whole(reader: ReplyReader, data: bytes) -> list[Event]:
    reader.feed(data)
    return drain(reader)


def byte_by_byte(reader: ReplyReader, data: bytes) -> list[Event]:
    events: list[Event] = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        events.extend(drain(reader))
    return events


def drain(reader: ReplyReader) -> list[Event]:
    events = []
    while (event := reader.next_event()) is not None:
        events.append(event)
    return events


def drain_bulk(reader: ReplyReader) -> list[Event]:
    """Read in runs; each BodyLines spread into the BodyLines it stands for."""
    events: list[Event] = []
    while (event := reader.next_event(bulk=True)) is not None:
        events.extend(event.each() if isinstance(event, BodyLines) else [event])
    return events


def whole_in_runs(reader: ReplyReader, data: bytes) -> list[Event]:
    reader.feed(data)
    return drain_bulk(reader)


def in_chunks_in_runs(reader: ReplyReader, data: bytes, size: int = 7) -> list[Event]:
    events: list[Event] = []
    for i in range(0, len(data), size):
        reader.feed(data[i : i + size])
        events.extend(drain_bulk(reader))
    return events


FEEDERS: dict[str, Callable[[ReplyReader, bytes], list[Event]]] = {
    "whole": whole,
    "byte-by-byte": byte_by_byte,
    "whole-in-runs": whole_in_runs,
    "7-octet-chunks-in-runs": in_chunks_in_runs,
}


@dataclass(frozen=True)
class Feeding:
    """How a case is fed: all at once or byte by byte, with or without
    garbage after the reply (which must stay buffered, untouched)."""

    mode: str
    garbage: bytes


FEEDINGS = [Feeding(mode, garbage) for mode in FEEDERS for garbage in (b"", GARBAGE)]


def read(
    data: bytes, how: Feeding, *, multiline: bool = False, eof: bool = False, **limits: int
) -> tuple[ReplyReader, list[Event]]:
    reader = ReplyReader(**limits)
    reader.begin_reply(multiline)
    events = FEEDERS[how.mode](reader, data if eof else data + how.garbage)
    if eof:
        reader.feed_eof()
        events += drain_bulk(reader) if how.mode.endswith("in-runs") else drain(reader)
    return reader, events


def rules(events: list[Event]) -> list[str]:
    return [e.rule.key for e in events if isinstance(e, FramingFinding)]


def without_findings(events: list[Event]) -> list[Event]:
    return [e for e in events if not isinstance(e, FramingFinding)]


@pytest.fixture(params=FEEDINGS, ids=lambda f: f"{f.mode}{'+garbage' if f.garbage else ''}")
def how(request: pytest.FixtureRequest) -> Feeding:
    return request.param


@pytest.mark.parametrize(
    ("raw", "status"),
    [(b"+OK 2 320\r\n", "+OK"), (b"-ERR no such message\r\n", "-ERR"), (b"+OK\r\n", "+OK")],
)
def test_single_line_replies(how: Feeding, raw: bytes, status: str) -> None:
    reader, events = read(raw, how)
    assert events == [StatusLine(raw, raw[:-2], status)]
    assert reader.state is State.DONE
    assert reader.buffered == how.garbage


def test_multiline_body_is_unstuffed_and_counted(how: Feeding) -> None:
    raw = b"+OK 3 octets\r\nSubject: x\r\n..dot\r\n...\r\n\r\n.\r\n"
    reader, events = read(raw, how, multiline=True)
    assert events == [
        StatusLine(b"+OK 3 octets\r\n", b"+OK 3 octets", "+OK"),
        BodyLine(b"Subject: x\r\n", b"Subject: x"),
        BodyLine(b"..dot\r\n", b".dot"),
        BodyLine(b"...\r\n", b".."),
        BodyLine(b"\r\n", b""),
        BodyEnd(len(b"Subject: x\r\n.dot\r\n..\r\n\r\n")),
    ]
    assert reader.buffered == how.garbage


def test_negative_reply_to_a_multiline_command_has_no_body(how: Feeding) -> None:
    reader, events = read(b"-ERR no\r\n.\r\n", how, multiline=True)
    assert without_findings(events) == [StatusLine(b"-ERR no\r\n", b"-ERR no", "-ERR")]
    assert reader.buffered == b".\r\n" + how.garbage


def test_empty_body(how: Feeding) -> None:
    reader, events = read(b"+OK\r\n.\r\n", how, multiline=True)
    assert events[-1] == BodyEnd(0)
    assert reader.buffered == how.garbage


def test_bare_lf_is_a_line_end_finding_and_the_line_still_counts(how: Feeding) -> None:
    reader, events = read(b"+OK 1 2\n", how)
    assert rules(events) == ["line-end"]
    assert StatusLine(b"+OK 1 2\n", b"+OK 1 2", "+OK") in events
    assert reader.buffered == how.garbage


def test_bare_cr_inside_a_body_line(how: Feeding) -> None:
    reader, events = read(b"+OK\r\na\rb\r\n.\r\n", how, multiline=True)
    assert rules(events) == ["line-end"]
    finding = next(e for e in events if isinstance(e, FramingFinding))
    assert "bare CR" in finding.detail and "a\\rb\\r\\n" in finding.detail
    assert reader.buffered == how.garbage


@pytest.mark.parametrize("line", [b"+ok\r\n", b"+OKAY\r\n", b"OK\r\n", b"-ERR\tx\r\n", b" +OK\r\n"])
def test_status_not_exactly_ok_or_err(how: Feeding, line: bytes) -> None:
    reader, events = read(line, how)
    assert rules(events) == ["status"]
    assert StatusLine(line, line[:-2], None) in events
    assert reader.buffered == how.garbage


def test_status_line_length_limit(how: Feeding) -> None:
    at_limit = b"+OK " + b"x" * (512 - 6) + b"\r\n"
    _, events = read(at_limit, how)
    assert len(at_limit) == 512 and rules(events) == []
    _, events = read(b"+OK " + b"x" * (512 - 5) + b"\r\n", how)
    assert rules(events) == ["status-length"]
    finding = next(e for e in events if isinstance(e, FramingFinding))
    assert finding.rule.requirements == ("POP3-1939-RESP-02", "POP3-2449-LEN-03")
    assert "513 octets" in finding.detail


def test_unstuffed_dot_line(how: Feeding) -> None:
    reader, events = read(b"+OK\r\n.hidden\r\n.\r\n", how, multiline=True)
    assert rules(events) == ["stuffing"]
    assert BodyLine(b".hidden\r\n", b"hidden") in events
    assert reader.buffered == how.garbage


def test_eof_inside_the_body_is_a_terminator_finding(how: Feeding) -> None:
    reader, events = read(b"+OK\r\nline\r\npart", how, multiline=True, eof=True)
    assert rules(events) == ["terminator"]
    assert isinstance(events[-1], ConnectionEnded) and events[-1].partial == b"part"
    assert reader.state is State.BROKEN


def test_eof_inside_the_status_line(how: Feeding) -> None:
    _, events = read(b"+OK no line end", how, eof=True)
    assert rules(events) == ["line-end"]
    assert events[-1] == ConnectionEnded(b"+OK no line end")


def test_eof_before_anything(how: Feeding) -> None:
    _, events = read(b"", how, eof=True)
    assert events == [ConnectionEnded(b"")]


def test_endless_line_stops_at_the_bound() -> None:
    reader = ReplyReader(max_line_octets=1000)
    reader.begin_reply(False)
    for _ in range(50):
        reader.feed(b"x" * 100)
        events = drain(reader)
        if events:
            break
    assert events == [Flood("a line longer than 1000 octets without LF")]
    assert reader.state is State.BROKEN
    assert reader.buffered == b""
    reader.feed(b"y" * 10_000)  # ignored: the reader holds nothing more
    assert reader.buffered == b"" and drain(reader) == []


def test_long_line_arriving_in_one_chunk_with_its_lf_is_a_flood(how: Feeding) -> None:
    _, events = read(b"+OK " + b"x" * 2000 + b"\r\n", how, max_line_octets=1000)
    assert any(isinstance(e, Flood) for e in events)


def test_body_larger_than_the_bound(how: Feeding) -> None:
    body = b"+OK\r\n" + b"0123456789\r\n" * 20 + b".\r\n"
    _, events = read(body, how, multiline=True, max_body_octets=100)
    assert events[-1] == Flood("a body larger than 100 octets")
    assert sum(isinstance(e, BodyLine) for e in events) == 8


PIPELINED = b"+OK a\r\n+OK\r\n1 2\r\n.\r\n-ERR c\r\n"
PIPELINED_MODES = [False, True, False]


def statuses(events: list[Event]) -> list[str | None]:
    return [e.status for e in events if isinstance(e, StatusLine)]


def test_pipelined_replies_in_one_chunk() -> None:
    reader = ReplyReader()
    reader.feed(PIPELINED)
    events: list[Event] = []
    for multiline in PIPELINED_MODES:
        reader.begin_reply(multiline)
        events += drain(reader)
        assert reader.state is State.DONE
    assert statuses(events) == ["+OK", "+OK", "-ERR"]
    assert BodyEnd(5) in events and reader.buffered == b""


def test_pipelined_replies_byte_by_byte() -> None:
    reader = ReplyReader()
    modes = list(PIPELINED_MODES)
    reader.begin_reply(modes.pop(0))
    events: list[Event] = []
    for i in range(len(PIPELINED)):
        reader.feed(PIPELINED[i : i + 1])
        events += drain(reader)
        if reader.state is State.DONE and modes:
            reader.begin_reply(modes.pop(0))
    assert statuses(events) == ["+OK", "+OK", "-ERR"] and not modes


def test_framing_rule_table_matches_the_documented_requirements() -> None:
    table = {rule.key: rule.requirements for rule in framing.RULES}
    assert table == {
        "line-end": ("POP3-1939-RESP-01", "POP3-1939-SIZE-03"),
        "status": ("POP3-1939-RESP-03", "POP3-1939-RESP-04"),
        "status-length": ("POP3-1939-RESP-02", "POP3-2449-LEN-03"),
        "terminator": ("POP3-1939-MULTI-01",),
        "stuffing": ("POP3-1939-MULTI-02",),
        "unsolicited": ("POP3-1939-GREET-02", "POP3-1939-RESP-01"),
    }


def test_a_sasl_challenge_is_a_reply_only_inside_an_auth_exchange() -> None:
    from conformance.pop3.framing import FramingFinding
    from conformance.pop3.reader import ReplyReader, StatusLine

    for continuation, expected in ((True, "+"), (False, None)):
        reader = ReplyReader()
        reader.begin_reply(False, continuation=continuation)
        for octet in b"+ dGVzdA==\r\n":  # one byte at a time
            reader.feed(bytes([octet]))
        events = []
        while (event := reader.next_event()) is not None:
            events.append(event)
        status = next(e for e in events if isinstance(e, StatusLine))
        assert status.status == expected
        assert any(isinstance(e, FramingFinding) for e in events) is (not continuation)


# -- reading a body in runs ----------------------------------------------------

#: Bodies whose lines meet every rule the run reader checks together: plain
#: lines, stuffed lines, the terminator, bare CR and LF, an unstuffed dot.
TRICKY_BODIES = [
    b"+OK\r\nab\r\n..dot\r\ncd\r\n...\r\n\r\n.\r\n",
    b"+OK\r\n..\r\n.\r\n",
    b"+OK\r\nx\r\n\r\n.\r\n",
    b"+OK\r\nab\r\nc\rd\r\ne\nf\r\n.x\r\ng\r\n.\r\n",
    b"+OK\r\n\r\n.\n.\r\n",
]


def reference_events(data: bytes) -> tuple[list[Event], bytes]:
    """Line by line, one byte at a time: the events a reader without runs gives."""
    reader = ReplyReader()
    reader.begin_reply(True)
    return byte_by_byte(reader, data), reader.buffered


def split_reads(data: bytes, cuts: tuple[int, ...], *, bulk: bool) -> tuple[list[Event], bytes]:
    reader = ReplyReader()
    reader.begin_reply(True)
    events: list[Event] = []
    for start, end in zip((0, *cuts), (*cuts, len(data)), strict=True):
        reader.feed(data[start:end])
        events += drain_bulk(reader) if bulk else drain(reader)
    return events, reader.buffered


def test_run_reading_matches_line_by_line_reading_for_these_bodies() -> None:
    events, buffered = reference_events(TRICKY_BODIES[0] + GARBAGE)
    assert events == [
        StatusLine(b"+OK\r\n", b"+OK", "+OK"),
        BodyLine(b"ab\r\n", b"ab"),
        BodyLine(b"..dot\r\n", b".dot"),
        BodyLine(b"cd\r\n", b"cd"),
        BodyLine(b"...\r\n", b".."),
        BodyLine(b"\r\n", b""),
        BodyEnd(len(b"ab\r\n.dot\r\ncd\r\n..\r\n\r\n")),
    ]
    assert buffered == GARBAGE
    events, _ = reference_events(TRICKY_BODIES[3])
    assert rules(events) == ["line-end", "line-end", "stuffing"]


@pytest.mark.parametrize("bulk", [False, True], ids=["lines", "runs"])
@pytest.mark.parametrize("body", TRICKY_BODIES)
def test_a_body_split_at_every_boundary_reads_the_same(body: bytes, bulk: bool) -> None:
    data = body + GARBAGE
    expected = reference_events(data)
    for cut in range(1, len(data)):
        assert split_reads(data, (cut,), bulk=bulk) == expected, cut


@pytest.mark.parametrize("bulk", [False, True], ids=["lines", "runs"])
@pytest.mark.parametrize("around", [b"\r\n.\r\n", b"\r\n.."])
def test_a_body_split_twice_around_a_terminator_or_stuffing_reads_the_same(
    around: bytes, bulk: bool
) -> None:
    body = b"+OK\r\nab\r\n..dot\r\ncd\r\n.\r\n"
    data = body + GARBAGE
    at = body.index(around, 4)
    expected = reference_events(data)
    window = range(max(1, at - 3), min(len(data), at + len(around) + 3))
    for first in window:
        for second in window:
            if first < second:
                assert split_reads(data, (first, second), bulk=bulk) == expected, (first, second)


def test_plain_lines_come_as_one_run_that_stops_before_a_dot_line() -> None:
    reader = ReplyReader()
    reader.begin_reply(True)
    reader.feed(b"+OK\r\na\r\nb\r\n..c\r\nd\r\n.\r\n")
    events = []
    while (event := reader.next_event(bulk=True)) is not None:
        events.append(event)
    assert events == [
        StatusLine(b"+OK\r\n", b"+OK", "+OK"),
        BodyLines(b"a\r\nb\r\n", [b"a", b"b"]),
        BodyLine(b"..c\r\n", b".c"),
        BodyLines(b"d\r\n", [b"d"]),
        BodyEnd(len(b"a\r\nb\r\n.c\r\nd\r\n")),
    ]


def test_a_run_with_a_bare_line_end_is_read_line_by_line_with_its_findings_in_place() -> None:
    reader = ReplyReader()
    reader.begin_reply(True)
    reader.feed(b"+OK\r\na\r\nb\nc\r\n.\r\n")
    events = drain_bulk(reader)
    assert [type(e).__name__ for e in events] == [
        "StatusLine",
        "BodyLine",
        "FramingFinding",
        "BodyLine",
        "BodyLine",
        "BodyEnd",
    ]
    assert rules(events) == ["line-end"] and BodyLine(b"b\n", b"b") in events


def test_a_body_bound_crossed_inside_a_run_stops_after_the_last_line_that_fits() -> None:
    reader = ReplyReader(max_body_octets=100)
    reader.begin_reply(True)
    reader.feed(b"+OK\r\n" + b"0123456789\r\n" * 20 + b".\r\n")
    events = drain_bulk(reader)
    assert events[-1] == Flood("a body larger than 100 octets")
    assert sum(isinstance(e, BodyLine) for e in events) == 8
    assert reader.state is State.BROKEN


def test_an_overlong_line_inside_a_run_is_a_flood_after_the_lines_before_it() -> None:
    reader = ReplyReader(max_line_octets=50)
    reader.begin_reply(True)
    reader.feed(b"+OK\r\n" + b"a" * 40 + b"\r\n" + b"b" * 51 + b"\r\n" + b"c\r\n.\r\n")
    events = drain_bulk(reader)
    assert events[1:] == [
        BodyLine(b"a" * 40 + b"\r\n", b"a" * 40),
        Flood("a line longer than 50 octets"),
    ]


def test_a_megabyte_body_in_64k_chunks_reads_whole_and_counted() -> None:
    line = b"abcdefghij" * 7 + b"\r\n"
    body = line * 15_000
    data = b"+OK\r\n" + body + b"..\r\n.\r\n"
    reader = ReplyReader()
    reader.begin_reply(True)
    lines: list[bytes] = []
    end = None
    for i in range(0, len(data), 65_536):
        reader.feed(data[i : i + 65_536])
        while (event := reader.next_event(bulk=True)) is not None:
            if isinstance(event, BodyLines):
                lines += event.lines
            elif isinstance(event, BodyLine):
                lines.append(event.data)
            elif isinstance(event, BodyEnd):
                end = event
    assert end == BodyEnd(len(body) + 3)
    assert lines == [line[:-2]] * 15_000 + [b"."]
    assert reader.state is State.DONE and reader.buffered == b""
