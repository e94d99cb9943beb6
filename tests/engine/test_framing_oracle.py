"""Each framing rule, shown failing against a scripted server that breaks
it. Framing findings FAIL whatever the scenario's level."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_fakes import CLOSE, RESET, SendThenClose, run_text, scripted

from conformance.core.results import Verdict

NOOP_STEPS = """\
      - open: a
      - S: +OK
      - login
      - C: NOOP
      - S: +OK
      - C: QUIT
      - S: +OK
"""
UIDL_STEPS = """\
      - open: a
      - S: +OK
      - login
      - C: UIDL
      - S: +OK
      - C: QUIT
      - S: +OK
"""

# rule -> (command, broken reply, steps, requirement)
BROKEN = {
    "bare LF": ("NOOP", b"+OK\n", NOOP_STEPS, "POP3-1939-RESP-01"),
    "bare CR in a body line": ("UIDL", b"+OK\r\n1 a\rb\r\n.\r\n", UIDL_STEPS, "POP3-1939-RESP-01"),
    "lower-case status": ("NOOP", b"+ok\r\n", NOOP_STEPS, "POP3-1939-RESP-03"),
    "status without SP": ("NOOP", b"+OKdone\r\n", NOOP_STEPS, "POP3-1939-RESP-03"),
    "overlong status line": (
        "NOOP",
        b"+OK " + b"x" * 600 + b"\r\n",
        NOOP_STEPS,
        "POP3-1939-RESP-02",
    ),
    "unstuffed dot line": ("UIDL", b"+OK\r\n.1 a\r\n.\r\n", UIDL_STEPS, "POP3-1939-MULTI-02"),
    "doubled terminator": ("UIDL", b"+OK\r\n1 a\r\n.\r\n.\r\n", UIDL_STEPS, "POP3-1939-MULTI-01"),
    # after a command, stray data breaks one-reply-per-command (RESP-01);
    # GREET-02 (one greeting line) only before the first command
    "unsolicited extra line": (
        "NOOP",
        b"+OK\r\n+OK surprise\r\n",
        NOOP_STEPS,
        "POP3-1939-RESP-01",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
@pytest.mark.parametrize("level", ["MUST", "MAY"])
def test_each_rule_fails_whatever_the_level(tmp_path: Path, case: str, level: str) -> None:
    command, reply, steps, requirement = BROKEN[case]
    with scripted({command: reply}) as server:
        result = run_text(tmp_path, server, steps, level=level)
    assert result.verdict is Verdict.FAIL, result.message
    framing_failures = [f for f in result.failures if f.kind == "framing"]
    assert framing_failures, result.failures
    assert framing_failures[0].requirement == requirement
    assert framing_failures[0].level == "MUST"


def test_the_same_steps_pass_against_a_correct_server(tmp_path: Path) -> None:
    with scripted() as server:
        assert run_text(tmp_path, server, NOOP_STEPS).verdict is Verdict.PASS
        assert run_text(tmp_path, server, UIDL_STEPS).verdict is Verdict.PASS


RETR_STEPS = "      - open: a\n      - S: +OK\n      - login\n      - C: RETR 1\n      - S: +OK\n"


def test_close_inside_the_body_is_a_missing_terminator(tmp_path: Path) -> None:
    with scripted({"RETR 1": SendThenClose(b"+OK\r\nSubject: x\r\nhalf a li")}) as server:
        result = run_text(tmp_path, server, RETR_STEPS)
    assert result.verdict is Verdict.FAIL
    terminator = [f for f in result.failures if f.requirement == "POP3-1939-MULTI-01"]
    assert terminator and "closed before the terminating" in terminator[0].actual
    assert "unfinished line 'half a li'" in terminator[0].actual
    closed = [f for f in result.failures if f.kind == "closed"]
    assert closed and "closed by the server in the middle of the body" in closed[0].actual


def test_silence_inside_the_body_is_a_stall(tmp_path: Path) -> None:
    with scripted({"RETR 1": b"+OK\r\nSubject: x\r\n"}) as server:
        result = run_text(tmp_path, server, RETR_STEPS, read_timeout=0.5)
    assert result.verdict is Verdict.FAIL
    assert "the body did not end: no more data within 0.5 s after C: RETR 1" in result.message


def test_close_instead_of_a_reply(tmp_path: Path) -> None:
    with scripted({"RETR 1": CLOSE}) as server:
        result = run_text(tmp_path, server, RETR_STEPS)
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].kind == "closed"
    assert "connection closed by the server instead of replying (C: RETR 1)" in result.message


def test_reset_instead_of_a_reply(tmp_path: Path) -> None:
    with scripted({"RETR 1": RESET}) as server:
        result = run_text(tmp_path, server, RETR_STEPS)
    assert result.verdict is Verdict.FAIL
    assert "connection reset by the server instead of replying" in result.message


def test_unsolicited_greeting_line_before_the_first_command(tmp_path: Path) -> None:
    steps = "      - open: a\n      - S: +OK\n      - C: QUIT\n      - S: +OK\n"
    with scripted(greeting=b"+OK hello\r\n+OK and again\r\n") as server:
        result = run_text(tmp_path, server, steps)
    framing = [f for f in result.failures if f.kind == "framing"]
    assert framing and framing[0].requirement == "POP3-1939-GREET-02"
    assert "'+OK and again\\r\\n' arrived before C: QUIT" in framing[0].actual
