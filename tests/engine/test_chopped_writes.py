"""`chop:` / `pause:` on `C:` and `send:` (security catalogue R12): the bytes
go out a few octets per write; a server must answer the reassembled line
once. A reply before the line end was written is a SYNTAX-02 finding; and
several `send:` steps for one line leave the labels of later replies right."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from engine_fakes import ScriptedServer, run_text, scripted, steps

from conformance.core.errors import ScenarioError
from conformance.core.results import Direction, Verdict
from conformance.core.scenario import (
    DEFAULT_CHOP_PAUSE_SECONDS,
    Chop,
    CommandStep,
    SendStep,
    load_scenario_file,
)


class AnswersEachRead(ScriptedServer):
    """Takes every TCP read as a command (no line reassembly)."""

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.sendall(self.greeting)
            while not self._stopping.is_set():
                chunk = conn.recv(65536)
                if not chunk:
                    return
                self.received.append(chunk)
                conn.sendall(b"+OK\r\n" if chunk.strip() else b"-ERR empty\r\n")
        except OSError:
            return
        finally:
            conn.close()


def _file(tmp_path: Path, step_lines: str) -> Path:
    path = tmp_path / "chop.yaml"
    path.write_text(
        'section: "s"\nscenarios:\n  - id: area.name\n    title: t\n'
        "    requirements: [POP3-1939-SYNTAX-02]\n    level: MUST\n"
        "    steps:\n      - open: a\n      - S: +OK\n" + step_lines,
        encoding="utf-8",
    )
    return path


def test_chop_and_pause_load_as_a_chop_of_the_step(tmp_path: Path) -> None:
    text = (
        "      - C: CAPA\n        chop: 1\n        pause: 0.05\n"
        '      - send: "NOOP\\r\\n"\n        chop: 2\n'
        "      - C: NOOP\n"
    )
    (scenario,) = load_scenario_file(_file(tmp_path, text))
    command, send, plain = scenario.steps[2:]
    assert isinstance(command, CommandStep) and command.chop == Chop(octets=1, pause=0.05)
    assert isinstance(send, SendStep)
    assert send.chop == Chop(octets=2, pause=DEFAULT_CHOP_PAUSE_SECONDS)
    assert isinstance(plain, CommandStep) and plain.chop is None


@pytest.mark.parametrize(
    ("modifiers", "line", "fragment"),
    [
        ("        chop: 0\n", 11, "field 'chop': must be a whole number of octets"),
        ("        chop: 1.5\n", 11, "field 'chop': must be a whole number of octets"),
        ("        chop: true\n", 11, "field 'chop'"),
        ("        pause: 0.1\n", 11, "'pause' needs 'chop: OCTETS'"),
        ("        chop: 1\n        pause: 60\n", 12, "field 'pause': must be 0 to 5 seconds"),
        ("        chop: 1\n        pause: -1\n", 12, "field 'pause'"),
    ],
)
def test_bad_chop_names_file_line_and_field(
    tmp_path: Path, modifiers: str, line: int, fragment: str
) -> None:
    path = _file(tmp_path, "      - C: NOOP\n" + modifiers)
    with pytest.raises(ScenarioError) as caught:
        load_scenario_file(path)
    assert str(caught.value).startswith(f"{path}:{line}: "), str(caught.value)
    assert fragment in caught.value.detail


def test_chop_is_not_a_modifier_of_a_reply(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="'chop' is not allowed on 'S'"):
        load_scenario_file(_file(tmp_path, "      - C: NOOP\n      - S: +OK\n        chop: 1\n"))


CHOPPED_CAPA = steps(
    "C: CAPA", "S: +OK", "  save: whole",
    "C: CAPA", "  chop: 1", "S: +OK", "  save: one",
    "C: CAPA", "  chop: 3", "  pause: 0", "S: +OK", "  save: three",
    "assert: one == whole and three == whole",
)  # fmt: skip


def test_chopped_command_is_answered_once_by_a_line_server(tmp_path: Path) -> None:
    with scripted() as server:
        result = run_text(tmp_path, server, steps("open: a", "S: +OK") + CHOPPED_CAPA)
    assert result.verdict is Verdict.PASS, result.message
    assert server.received.count(b"CAPA") == 3  # (a probe connection may QUIT first)
    sent = [e.data for e in result.transcript if e.direction is Direction.CLIENT]
    assert sent == [b"CAPA\r\n"] * 3  # the whole command once per step, not per piece
    events = [e.data for e in result.transcript if e.direction is Direction.EVENT]
    assert b"written in 6 pieces of 1 octets, 0.02 s apart" in events


def test_reply_before_the_line_end_fails_syntax_02(tmp_path: Path) -> None:
    server = AnswersEachRead(replies={})
    with server:
        result = run_text(
            tmp_path, server, steps("open: a", "S: +OK", "C: NOOP", "  chop: 1", "S: +OK")
        )
    assert result.verdict is Verdict.FAIL
    (failure,) = result.failures
    assert failure.requirement == "POP3-1939-SYNTAX-02" and failure.step == 3
    assert "arrived before the line end of C: NOOP" in failure.actual
    assert len(server.received) >= 2  # the pieces went out as separate reads


def test_pause_zero_still_writes_pieces(tmp_path: Path) -> None:
    with scripted() as server:
        body = steps("open: a", "S: +OK", "C: NOOP", "  chop: 2", "  pause: 0", "S: +OK")
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.PASS, result.message


def test_sends_of_one_line_label_the_replies_after_them(tmp_path: Path) -> None:
    """'NO' + 'OP\\r\\n' is one command: the reply after the next C: is that
    command's, so a mismatch there names it (not the second send)."""
    body = steps(
        "open: a", "S: +OK", "login",
        'send: "NO"', 'send: "OP\\r\\n"', "S: +OK",
        "C: STAT", "S: -ERR",
    )  # fmt: skip
    with scripted() as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.FAIL
    (failure,) = result.failures
    assert failure.step == 8 and "after C: STAT" in failure.expected, failure.one_line()


def test_chopped_send_then_a_multiline_reply_reads_its_body(tmp_path: Path) -> None:
    """Before one pending reply per line, each piece of a chopped write was a
    pending reply, and the RETR after it was read as a one-line reply."""
    body = steps(
        "open: a", "S: +OK", "login",
        'send: "NOOP\\r\\n"', "  chop: 1", "S: +OK",
        "C: RETR 1", "S: +OK", "  body: {message: 1}",
        "C: QUIT", "S: +OK", "expect_close",
    )  # fmt: skip
    with scripted() as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.PASS, result.message


def test_reply_to_an_unfinished_send_is_labelled_with_its_bytes(tmp_path: Path) -> None:
    body = steps("open: a", "S: +OK", 'send: "XYZZY"', "S: +OK", "  timeout: 0.3")
    with scripted() as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.FAIL
    assert "send: 'XYZZY'" in result.failures[0].actual, result.failures[0].one_line()
