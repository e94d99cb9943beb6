"""The reusable robustness oracles (alive_or_closed, recover, mailbox_same,
not_authenticated) and the SECURITY level: each passes on a well-behaved
server and fails on one that breaks its rule."""

from __future__ import annotations

from pathlib import Path

from engine_fakes import (
    STALL,
    SendThenClose,
    correct_replies,
    run_text,
    scripted,
    small_fixture,
    steps,
)

from conformance.core.results import Failure, Verdict
from conformance.core.verdicts import verdict_for

OK = b"+OK ready <1.2@test>\r\n"
BAD_COMMAND = steps("open: a", "S: +OK", "C: XYZZY", "S: -ERR", "  or_close: true")


def test_alive_or_closed_passes_when_the_server_closes_after_its_reply(tmp_path: Path) -> None:
    with scripted({"XYZZY": SendThenClose(b"-ERR go away\r\n")}) as server:
        result = run_text(tmp_path, server, BAD_COMMAND + steps("alive_or_closed"))
    assert result.verdict is Verdict.PASS, result.message


def test_alive_or_closed_passes_when_noop_is_still_answered(tmp_path: Path) -> None:
    with scripted() as server:
        result = run_text(tmp_path, server, BAD_COMMAND + steps("alive_or_closed"))
    assert result.verdict is Verdict.PASS, result.message
    assert b"NOOP\r\n" in b"".join(e.data for e in result.transcript if e.session == "a")


def test_alive_or_closed_fails_a_server_that_goes_silent(tmp_path: Path) -> None:
    with scripted({"NOOP": STALL}) as server:
        result = run_text(
            tmp_path, server, BAD_COMMAND + steps("alive_or_closed"), level="SECURITY",
            read_timeout=0.5,
        )  # fmt: skip
    assert result.verdict is Verdict.FAIL  # silence: MUST at any level
    assert "no reply within 0.5 s after C: NOOP" in result.message


def test_recover_fails_when_a_new_connection_is_not_greeted(tmp_path: Path) -> None:
    body = steps("open: a", "S: +OK", "C: XYZZY", "S: -ERR", "recover")
    # connections: the probe, session a, then recover's
    with scripted(greeting=[OK, OK, b"-ERR too many connections\r\n"]) as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.FAIL
    assert "a new connection to be greeted with +OK" in result.message
    with scripted() as server:
        assert run_text(tmp_path, server, body).verdict is Verdict.PASS


def test_mailbox_same_fails_when_the_maildrop_changed_under_the_session(tmp_path: Path) -> None:
    full = correct_replies(small_fixture())["UIDL"]
    body = steps("open: a", "S: +OK", "login", "mailbox_same")
    with scripted({"UIDL": [full, b"+OK\r\n1 uid-2\r\n.\r\n"]}) as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.FAIL
    (failure,) = result.failures  # the after-scenario re-check does not repeat it
    assert failure.kind == "maildrop"
    assert "UIDL lists 1 messages where it listed 2" in failure.actual
    with scripted() as server:
        assert run_text(tmp_path, server, body).verdict is Verdict.PASS


def test_not_authenticated_fails_when_stat_works_after_a_refused_login(tmp_path: Path) -> None:
    body = steps(
        "open: a", "S: +OK", "C: USER {user}", "S: +OK", "C: PASS {wrong_password}", "S: -ERR",
        "not_authenticated",
    )  # fmt: skip
    with scripted() as server:  # answers STAT +OK in any state
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.FAIL
    assert "the session is not authenticated" in result.message
    with scripted({"STAT": b"-ERR not logged in\r\n"}) as server:
        assert run_text(tmp_path, server, body).verdict is Verdict.PASS


def test_security_level_warns_unless_security_is_asked_for() -> None:
    failure = Failure(step=1, step_text="x", expected="e", actual="a", level="SECURITY")
    assert verdict_for([failure], strict=False) is Verdict.WARN
    assert verdict_for([failure], strict=True) is Verdict.WARN  # --strict is about SHOULD/MAY
    assert verdict_for([failure], strict=False, security=True) is Verdict.FAIL
