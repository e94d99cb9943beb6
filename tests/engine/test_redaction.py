"""Secrets sent by PASS, APOP and AUTH never reach a transcript (unless
redaction is switched off)."""

from __future__ import annotations

from pathlib import Path

from engine_fakes import client_bytes, run_text, scripted, steps, transcript_bytes

from conformance.core.results import Verdict
from conformance.core.transcript import ClientRedactor

LOGINS = steps(
    "open: a", "S: +OK", "login", "C: QUIT", "S: +OK",
    "open: b", "S: +OK", "  session: b",
    "C: APOP {user} {apop_digest(password)}", "  session: b", "S: +OK", "  session: b",
    "C: QUIT", "  session: b", "S: +OK", "  session: b",
    "open: c", "S: +OK", "  session: c",
    'send: "PASS {password}\\r\\n"', "  session: c", "S: +OK", "  session: c",
)  # fmt: skip


def test_pass_and_apop_arguments_never_appear(tmp_path: Path) -> None:
    with scripted({"APOP": b"+OK\r\n", "PASS": b"-ERR\r\n"}) as server:
        result = run_text(tmp_path, server, LOGINS)
        sent = b"\n".join(server.received)
    assert result.verdict is Verdict.PASS, result.message
    assert b"alice-secret" in sent  # the server did get the secrets...
    everything = transcript_bytes(result)
    assert b"alice-secret" not in everything  # ...the transcript did not
    assert b"PASS ***\r\n" in client_bytes(result)
    assert b"APOP ***\r\n" in client_bytes(result)
    digest = next(line for line in server.received if line.startswith(b"APOP")).split()[2]
    assert digest not in everything


def test_redaction_can_be_switched_off(tmp_path: Path) -> None:
    with scripted({"APOP": b"+OK\r\n", "PASS": b"-ERR\r\n"}) as server:
        result = run_text(tmp_path, server, LOGINS, redact=False)
    assert b"PASS alice-secret\r\n" in client_bytes(result)


def test_auth_initial_response_and_continuation_lines() -> None:
    redactor = ClientRedactor(True)
    assert redactor.redact(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n") == b"AUTH PLAIN ***\r\n"
    assert redactor.redact(b"c2VjcmV0\r\n") == b"***\r\n"  # still inside the exchange
    redactor.status_received()
    assert redactor.redact(b"STAT\r\n") == b"STAT\r\n"
    assert redactor.redact(b"pass  hunter2\r\nNOOP\r\n") == b"pass  ***\r\nNOOP\r\n"
    assert ClientRedactor(False).redact(b"PASS x\r\n") == b"PASS x\r\n"


def test_a_secret_on_any_line_of_a_write_is_found_whatever_separates_the_lines() -> None:
    for data, shown in [
        (b"NOOP\r\nPASS hunter2\r\n", b"NOOP\r\nPASS ***\r\n"),
        (b"NOOP\rapop alice 0123abcd\r\n", b"NOOP\rapop ***\r\n"),
        (b"NOOP\nAuth PLAIN AGFsaWNl\n", b"NOOP\nAuth PLAIN ***\n"),
        (b"PASS hunter2", b"PASS ***"),
    ]:
        assert ClientRedactor(True).redact(data) == shown, data


def test_writes_that_start_no_secret_are_kept_as_they_are() -> None:
    for data in [b"NOOP\r\n", b"RETR 1\r\nTOP 1 0\r\n", b"USER passwd\r\n", b" PASS x\r\n", b""]:
        assert ClientRedactor(True).redact(data) == data
