"""A server that never answers yields a verdict within the deadline plus a
small slack; one that floods is cut off at the configured bound."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from engine_fakes import (
    FLOOD_BODY,
    FLOOD_LINE,
    STALL,
    config_for,
    run_text,
    scripted,
    small_fixture,
    steps,
)

from conformance.core.driver import Outcome, deadline_after
from conformance.core.errors import TargetUnreachable
from conformance.core.results import Direction, Verdict
from conformance.core.transcript import Transcript
from conformance.pop3.engine import Runner
from conformance.pop3.session import Pop3Session as Session

SLACK_SECONDS = 1.5
RETR_STEPS = "      - open: a\n      - S: +OK\n      - login\n      - C: RETR 1\n      - S: +OK\n"


def test_stalled_reply_gives_a_precise_failure_in_bounded_time(tmp_path: Path) -> None:
    with scripted({"RETR 1": STALL}) as server:
        started = time.monotonic()
        result = run_text(tmp_path, server, RETR_STEPS, read_timeout=0.8)
        took = time.monotonic() - started
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].kind == "timeout"
    assert result.message.endswith("got no reply within 0.8 s after C: RETR 1")
    assert took < 0.8 + SLACK_SECONDS


def test_auth_replies_use_the_auth_timeout(tmp_path: Path) -> None:
    wrong = steps(
        "open: a", "S: +OK", "C: USER {user}", "S: +OK", "C: PASS {wrong_password}", "S: -ERR"
    )
    with scripted({"PASS alice-secret-not-the-password": STALL}) as server:
        result = run_text(tmp_path, server, wrong, read_timeout=0.2, auth_timeout=0.7)
    assert "no reply within 0.7 s after C: PASS ***" in result.message


def test_step_timeout_overrides_the_default(tmp_path: Path) -> None:
    with scripted({"RETR 1": STALL}) as server:
        result = run_text(tmp_path, server, RETR_STEPS + "        timeout: 0.3\n", read_timeout=5.0)
    assert "no reply within 0.3 s after C: RETR 1" in result.message


def test_scenario_deadline_caps_every_step(tmp_path: Path) -> None:
    with scripted({"RETR 1": STALL}) as server:
        started = time.monotonic()
        result = run_text(tmp_path, server, RETR_STEPS, extra="    timeout: 0.6\n", read_timeout=10)
        took = time.monotonic() - started
    assert result.verdict is Verdict.FAIL
    assert "scenario deadline of 0.6 s passed after C: RETR 1" in result.message
    assert took < 0.6 + SLACK_SECONDS


def test_silent_greeting_makes_the_target_unreachable_in_bounded_time() -> None:
    with scripted(greeting=STALL) as server:
        started = time.monotonic()
        with pytest.raises(
            TargetUnreachable, match="connection opened but no greeting arrived: no reply"
        ):
            with Runner(config_for(server, read_timeout=0.5), fixture=small_fixture()):
                pass
        assert time.monotonic() - started < 0.5 + SLACK_SECONDS


def received_octets(transcript: Transcript) -> int:
    return sum(len(e.data) for e in transcript.entries if e.direction is Direction.SERVER)


@pytest.mark.parametrize(
    ("flood", "limit", "what"),
    [
        (FLOOD_LINE, "max_line_octets", "without LF"),
        (FLOOD_BODY, "max_body_octets", "a body larger"),
    ],
)
def test_flood_is_cut_at_the_bound(flood: object, limit: str, what: str) -> None:
    bound = 200_000
    limits = {"max_line_octets": 65_536, "max_body_octets": 64 << 20, limit: bound}
    with scripted({"RETR 1": flood}) as server:  # type: ignore[dict-item]
        transcript = Transcript()
        session = Session.connect("a", "127.0.0.1", server.port, transcript, timeout=2, **limits)
        session.read_reply(False, deadline_after(2))
        session.send(b"RETR 1\r\n")
        reply = session.read_reply(True, deadline_after(10))
        session.close()
    assert reply.outcome is Outcome.FLOOD and what in reply.detail
    assert session.reader.buffered == b""
    # memory stays bounded: reading stopped within one receive chunk of the bound
    assert received_octets(transcript) <= bound + 2 * 65_536


def test_body_flood_verdict_names_the_terminator_rule(tmp_path: Path) -> None:
    with scripted({"RETR 1": FLOOD_BODY}) as server:
        result = run_text(tmp_path, server, RETR_STEPS, max_body_octets=300_000)
    assert result.verdict is Verdict.FAIL
    assert result.failures[-1].requirement == "POP3-1939-MULTI-01"
    assert "a body larger than 300000 octets after C: RETR 1" in result.failures[-1].actual


def test_flood_verdict_is_a_framing_fail(tmp_path: Path) -> None:
    with scripted({"RETR 1": FLOOD_LINE}) as server:
        result = run_text(tmp_path, server, RETR_STEPS, max_line_octets=100_000)
    assert result.verdict is Verdict.FAIL
    assert result.failures[-1].kind == "framing"
    assert result.failures[-1].requirement == "POP3-1939-RESP-01"
    assert (
        "a line longer than 100000 octets without LF after C: RETR 1" in result.failures[-1].actual
    )


def test_idle_fails_when_the_server_talks(tmp_path: Path) -> None:
    steps = "      - open: a\n      - S: +OK\n      - C: NOOP\n      - idle: 0.3\n"
    with scripted({"NOOP": b"+OK\r\n-ERR autologout soon\r\n"}) as server:
        result = run_text(
            tmp_path, server, steps.replace("      - idle", "      - S: +OK\n      - idle")
        )
    assert result.verdict is Verdict.FAIL
    assert "'-ERR autologout soon\\r\\n' arrived while idle" in result.failures[0].actual


def test_expect_open_and_expect_close(tmp_path: Path) -> None:
    quitting = steps("open: a", "S: +OK", "expect_open: 0.3", "C: QUIT", "S: +OK", "expect_close")
    with scripted() as server:
        assert run_text(tmp_path, server, quitting).verdict is Verdict.PASS
    lingering = steps("open: a", "S: +OK", "C: NOOP", "S: +OK", "expect_close:", "  timeout: 0.3")
    with scripted() as server:
        result = run_text(tmp_path, server, lingering)
    assert result.verdict is Verdict.FAIL
    assert "connection still open after 0.3 s" in result.message
    with scripted({"NOOP": STALL}) as server:
        closing = steps("open: a", "S: +OK", "C: QUIT", "S: +OK", "expect_open: 0.3")
        result = run_text(tmp_path, server, closing)
    assert result.verdict is Verdict.FAIL and "connection closed by the server" in result.message


def test_a_status_line_trickling_without_crlf_ends_at_the_reply_deadline(
    tmp_path: Path,
) -> None:
    from engine_fakes import Trickle

    with scripted({"NOOP": Trickle(b"+", b"OK and on and on ")}) as server:
        started = time.monotonic()
        result = run_text(tmp_path, server, steps("open: a", "S: +OK", "C: NOOP", "S: +OK"),
                          read_timeout=0.8)  # fmt: skip
        took = time.monotonic() - started
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].kind == "timeout"
    assert "no reply within 0.8 s after C: NOOP" in result.message
    assert took < 0.8 + SLACK_SECONDS


def test_a_body_trickling_one_octet_at_a_time_is_cut_at_the_deadline(tmp_path: Path) -> None:
    from engine_fakes import Trickle

    # announces a 10 GB message, then sends it one octet every 20 ms
    slow = Trickle(b"+OK 10737418240 octets\r\n", b"a line of the endless body\r\n", 0.02)
    with scripted({"RETR 1": slow}) as server:
        started = time.monotonic()
        result = run_text(tmp_path, server, RETR_STEPS, read_timeout=0.8)
        took = time.monotonic() - started
    assert result.verdict is Verdict.FAIL
    assert result.failures[-1].requirement == "POP3-1939-MULTI-01"
    assert "the body did not end" in result.failures[-1].actual
    assert took < 0.8 + SLACK_SECONDS
