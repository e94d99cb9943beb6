"""The sans-I/O SMTP reply reader. Every case is fed whole, one byte at a
time, and with trailing garbage (which must stay buffered, untouched)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from conformance.pop3.framing import FramingFinding
from conformance.smtp import framing
from conformance.smtp.reader import (
    ConnectionEnded,
    Event,
    Flood,
    Reply,
    ReplyReader,
    State,
    unsolicited,
)

GARBAGE = b"250 GARBAGE\x00 not part of the reply"


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


FEEDERS: dict[str, Callable[[ReplyReader, bytes], list[Event]]] = {
    "whole": whole,
    "byte-by-byte": byte_by_byte,
}


@dataclass(frozen=True)
class Feeding:
    mode: str
    garbage: bytes


FEEDINGS = [Feeding(mode, garbage) for mode in FEEDERS for garbage in (b"", GARBAGE)]


@pytest.fixture(params=FEEDINGS, ids=lambda f: f"{f.mode}{'+garbage' if f.garbage else ''}")
def how(request: pytest.FixtureRequest) -> Feeding:
    return request.param


def read(
    data: bytes, how: Feeding, *, eof: bool = False, **limits: int
) -> tuple[ReplyReader, list[Event]]:
    reader = ReplyReader(**limits)
    reader.begin_reply()
    events = FEEDERS[how.mode](reader, data if eof else data + how.garbage)
    if eof:
        reader.feed_eof()
        events += drain(reader)
    return reader, events


def rules(events: list[Event]) -> list[str]:
    return [e.rule.key for e in events if isinstance(e, FramingFinding)]


def replies(events: list[Event]) -> list[Reply]:
    return [e for e in events if isinstance(e, Reply)]


def test_single_line_reply(how: Feeding) -> None:
    reader, events = read(b"250 2.0.0 OK\r\n", how)
    assert rules(events) == []
    (reply,) = replies(events)
    assert reply.code == 250 and reply.texts == [b"2.0.0 OK"] and not reply.multiline
    assert reader.state is State.DONE
    assert reader.buffered == how.garbage


def test_multiline_reply_is_one_reply_with_every_line(how: Feeding) -> None:
    raw = b"250-mx.example greets you\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 HELP\r\n"
    reader, events = read(raw, how)
    assert events == replies(events)
    (reply,) = replies(events)
    assert reply.code == 250 and reply.multiline
    assert reply.texts == [b"mx.example greets you", b"PIPELINING", b"SIZE 1000", b"HELP"]
    assert reply.raw == raw
    assert reader.buffered == how.garbage


def test_pipelined_replies_are_read_one_per_begin_reply(how: Feeding) -> None:
    reader, events = read(b"250 2.1.0 ok\r\n550 5.1.1 no\r\n354 go\r\n", how)
    assert [r.code for r in replies(events)] == [250]
    codes = []
    for _ in range(2):
        reader.begin_reply()
        codes += [r.code for r in replies(drain(reader))]
    assert codes == [550, 354]
    assert reader.buffered == how.garbage


def test_different_codes_in_one_reply_are_a_finding(how: Feeding) -> None:
    reader, events = read(b"250-first\r\n251 second\r\n", how)
    assert rules(events) == ["smtp-same-code"]
    (reply,) = replies(events)
    assert reply.code == 250 and len(reply.lines) == 2
    assert reader.buffered == how.garbage


def test_the_seeds_220_to_everything_is_well_framed() -> None:
    """Framing cannot see a wrong code; the per-command code set judges it."""
    _, events = read(b"220 ok\r\n", Feeding("whole", b""))
    assert rules(events) == [] and replies(events)[0].code == 220


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (b"250 OK\n", "smtp-line-end"),
        (b"250 O\rK\r\n", "smtp-line-end"),
        (b"25O OK\r\n", "smtp-code"),
        (b"OK\r\n", "smtp-code"),
        (b"\r\n", "smtp-code"),
        (b"600 six\r\n", "smtp-code"),
        (b"160 one\r\n", "smtp-code"),
        (b"260 second digit\r\n", "smtp-code"),
        (b"250:OK\r\n", "smtp-continuation"),
        (b"250 tab\tok but \x01 is not\r\n", "smtp-text"),
        (b"250 " + b"x" * 507 + b"\r\n", "smtp-line-length"),
    ],
)
def test_each_broken_rule_is_named_and_the_reply_still_ends(
    how: Feeding, raw: bytes, rule: str
) -> None:
    reader, events = read(raw, how)
    assert rules(events) == [rule]
    assert len(replies(events)) == 1
    assert reader.state is State.DONE
    assert reader.buffered == how.garbage


def test_a_512_octet_line_is_within_the_limit(how: Feeding) -> None:
    reader, events = read(b"250 " + b"x" * 506 + b"\r\n", how)
    assert rules(events) == []
    assert reader.buffered == how.garbage


def test_findings_name_rfc_5321_requirements() -> None:
    for rule in framing.RULES:
        assert rule.requirements and all(r.startswith("SMTP-") for r in rule.requirements)
        assert "RFC 5321" in rule.summary
    _, events = read(b"250-a\r\n251 b\r\n", Feeding("whole", b""))
    finding = next(e for e in events if isinstance(e, FramingFinding))
    assert finding.requirement == "SMTP-5321-REPLY-02"
    assert "SMTP-5321-REPLY-02" in finding.expected()


def test_bare_code_is_marked_not_a_finding(how: Feeding) -> None:
    reader, events = read(b"334\r\n", how)
    assert rules(events) == []
    assert replies(events)[0].bare_code
    assert reader.buffered == how.garbage


def test_empty_auth_challenge_keeps_its_space(how: Feeding) -> None:
    _, events = read(b"334 \r\n", how)
    (reply,) = replies(events)
    assert reply.code == 334 and reply.texts == [b""] and not reply.bare_code


def test_eof_inside_a_multiline_reply() -> None:
    for feeding in (Feeding("whole", b""), Feeding("byte-by-byte", b"")):
        reader, events = read(b"250-one\r\n250-two\r\n250 thr", feeding, eof=True)
        assert rules(events) == ["smtp-incomplete", "smtp-line-end"]
        assert events[-1] == ConnectionEnded(b"250 thr")
        assert replies(events) == []
        assert reader.state is State.BROKEN


def test_eof_before_any_line_is_just_connection_ended() -> None:
    _, events = read(b"", Feeding("whole", b""), eof=True)
    assert events == [ConnectionEnded(b"")]


def test_a_line_without_lf_is_bounded(how: Feeding) -> None:
    reader, events = read(b"250 " + b"x" * 200, how, max_line_octets=100)
    assert isinstance(events[-1], Flood)
    assert reader.state is State.BROKEN
    reader.feed(b"more")
    assert reader.buffered == b""


def test_a_reply_with_too_many_lines_is_bounded(how: Feeding) -> None:
    reader, events = read(b"250-x\r\n" * 20 + b"250 end\r\n", how, max_reply_lines=10)
    assert isinstance(events[-1], Flood) and replies(events) == []
    assert reader.state is State.BROKEN


def test_a_reply_too_large_is_bounded(how: Feeding) -> None:
    _, events = read(b"250-" + b"x" * 300 + b"\r\n250 end\r\n", how, max_reply_octets=200)
    assert isinstance(events[-1], Flood)


def test_nothing_is_read_when_no_reply_is_due() -> None:
    reader = ReplyReader()
    reader.feed(b"421 bye\r\n")
    assert reader.next_event() is None and reader.state is State.IDLE
    finding = unsolicited(reader.take_buffered())
    assert finding.rule is framing.UNSOLICITED and "421 bye" in finding.detail
    assert finding.requirement == "SMTP-5321-SEQ-03"


def test_the_smtp_suite_package_does_not_import_the_reference_server() -> None:
    from pathlib import Path

    import conformance.smtp

    for path in Path(conformance.smtp.__file__).parent.glob("*.py"):
        text = path.read_text("utf-8")
        assert "import reference_server" not in text and "from reference_server" not in text, path
