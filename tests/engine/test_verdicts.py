"""Every verdict the engine produces, and the reasons it gives."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from engine_fakes import config_for, run_text, scenario_file, scripted, small_fixture, steps

from conformance.core.config import RunConfig
from conformance.core.errors import TargetUnreachable
from conformance.core.results import Direction, Verdict
from conformance.core.scenario import load_scenario_file
from conformance.pop3.engine import Runner, run_suite

STAT_OK = steps("open: a", "S: +OK", "login", "C: STAT", 'S: "+OK {count} {size:int}"')
# LIST 1 is not used by the pre-scenario verification, so it can be broken alone
LIST_ONE = steps("open: a", "S: +OK", "login", "C: LIST 1", 'S: "+OK {count - 1} {size:int}"')
BROKEN_LIST_ONE = {"LIST 1": b"+OK 3 999\r\n"}


def test_pass_captures_and_asserts(tmp_path: Path) -> None:
    body = STAT_OK + steps(
        "C: LIST", "S: +OK", '  body: {each: "{msg:int} {octets:int}", count: count}',
        "assert: sum(octets) == size", "C: QUIT", "S: +OK", "expect_close",
    )  # fmt: skip
    with scripted() as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.PASS, result.message
    assert result.failures == [] and result.message == ""
    assert result.duration > 0 and result.source.endswith("case.yaml:3")


def test_must_mismatch_fails_and_names_step_expected_and_got(tmp_path: Path) -> None:
    with scripted(BROKEN_LIST_ONE) as server:
        result = run_text(tmp_path, server, LIST_ONE + steps("C: NOOP", "S: +OK"))
    assert result.verdict is Verdict.FAIL
    (failure,) = result.failures
    assert failure.step == 5 and failure.step_text == "S: +OK {count - 1} {size:int}"
    assert failure.expected == "'+OK {count - 1} {size:int}' after C: LIST 1"
    assert "{count - 1} = '1' at column 1, got '3 999'" in failure.actual
    assert failure.level == "MUST" and failure.kind == "mismatch"
    assert result.message == failure.one_line()
    assert b"NOOP" not in b"".join(e.data for e in result.transcript)  # stopped at the failure


def test_should_mismatch_warns_and_strict_turns_it_into_fail(tmp_path: Path) -> None:
    with scripted(BROKEN_LIST_ONE) as server:
        assert run_text(tmp_path, server, LIST_ONE, level="SHOULD").verdict is Verdict.WARN
        assert run_text(tmp_path, server, LIST_ONE, level="MAY").verdict is Verdict.WARN
        strict = run_text(tmp_path, server, LIST_ONE, level="SHOULD", strict=True)
    assert strict.verdict is Verdict.FAIL


def test_step_level_makes_one_check_soft_and_the_scenario_goes_on(tmp_path: Path) -> None:
    body = STAT_OK.replace("{count}", "9") + "        level: SHOULD\n" + steps("C: NOOP", "S: -ERR")
    with scripted() as server:
        result = run_text(tmp_path, server, body)
    assert [f.level for f in result.failures] == ["SHOULD", "MUST"]
    assert result.verdict is Verdict.FAIL
    with scripted() as server:
        soft_only = run_text(
            tmp_path, server, STAT_OK.replace("{count}", "9") + "        level: SHOULD\n"
        )
    assert soft_only.verdict is Verdict.WARN


def test_failed_assert_shows_every_name(tmp_path: Path) -> None:
    with scripted() as server:
        result = run_text(tmp_path, server, STAT_OK + steps("assert: size == count * 1000"))
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].kind == "assert"
    assert "count = 2, size = " in result.failures[0].actual


def test_needs_skip_names_the_missing_capability(tmp_path: Path) -> None:
    with scripted() as server:
        result = run_text(tmp_path, server, STAT_OK, extra="    needs: [UIDL, PIPELINING]\n")
    assert result.verdict is Verdict.SKIP
    assert result.message == "target lacks PIPELINING (not in the configured capabilities)"
    assert result.transcript == []  # nothing was sent


def test_else_skip(tmp_path: Path) -> None:
    body = steps(
        "open: a", "S: +OK", "login", "C: LAST", 'S: "+OK {n:int}"', "  else_skip: LAST refused"
    )
    with scripted({"LAST": b"-ERR what?\r\n"}) as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.SKIP
    assert result.message == "LAST refused (C: LAST answered '-ERR what?\\r\\n')"
    with scripted({"LAST": b"+OK x\r\n"}) as server:
        assert run_text(tmp_path, server, body).verdict is Verdict.FAIL


def test_skip_if(tmp_path: Path) -> None:
    body = STAT_OK + steps("skip_if: size > 10", "  reason: big maildrop", "C: NOOP", "S: -ERR")
    with scripted() as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.SKIP and result.message == "big maildrop (size > 10)"


def test_or_close_accepts_a_close_after_the_reply(tmp_path: Path) -> None:
    from engine_fakes import SendThenClose

    body = steps(
        "open: a", "S: +OK", "C: USER x", "S: -ERR", "  or_close: true", "C: NOOP", "S: +OK"
    )
    with scripted({"USER x": SendThenClose(b"-ERR go away\r\n")}) as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.PASS, result.message
    with scripted({"USER x": SendThenClose(b"-ERR go away\r\n")}) as server:
        strict_body = body.replace("        or_close: true\n", "")
        assert run_text(tmp_path, server, strict_body).verdict is Verdict.FAIL


def test_or_close_never_accepts_a_close_instead_of_the_reply(tmp_path: Path) -> None:
    from engine_fakes import CLOSE

    body = steps("open: a", "S: +OK", "C: USER x", "S: -ERR", "  or_close: true")
    with scripted({"USER x": CLOSE}) as server:
        result = run_text(tmp_path, server, body, level="SHOULD")
    # silence is a finding at any level: a MUST failure in a SHOULD scenario
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].level == "MUST" and result.failures[0].kind == "closed"


def test_a_close_after_a_refused_pass_is_the_allowed_branch(tmp_path: Path) -> None:
    from engine_fakes import SendThenClose

    body = steps(
        "open: a", "S: +OK", "C: USER {user}", "S: +OK", "C: PASS {wrong_password}", "S: -ERR",
        "C: USER {user}", "S: +OK", "C: PASS {password}", "S: +OK",
    )  # fmt: skip
    refusal = SendThenClose(b"-ERR wrong\r\n")
    with scripted({"PASS alice-secret-not-the-password": refusal}) as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.PASS, result.message
    assert any(b"an allowed abuse limit" in e.data for e in result.transcript)


def test_a_farewell_err_line_before_the_allowed_close_is_not_unsolicited(
    tmp_path: Path,
) -> None:
    from engine_fakes import SendThenClose

    body = steps(
        "open: a", "S: +OK", "C: USER {user}", "S: +OK", "C: PASS {wrong_password}", "S: -ERR",
        "idle: 0.3", "C: NOOP", "S: -ERR",
    )  # fmt: skip
    refusal = SendThenClose(b"-ERR wrong\r\n-ERR too many failures, bye\r\n")
    with scripted({"PASS alice-secret-not-the-password": refusal}) as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.FAIL  # idle saw the farewell line: data while idle
    body = body.replace("      - idle: 0.3\n", "")
    with scripted({"PASS alice-secret-not-the-password": refusal}) as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.PASS, result.message


def test_login_after_the_scenario_sent_user_sends_only_pass(tmp_path: Path) -> None:
    body = steps("open: a", "S: +OK", "C: USER {user}", "S: +OK", "login", "C: NOOP", "S: +OK")
    with scripted({}) as server:
        result = run_text(tmp_path, server, body)
    sent = b"".join(
        e.data for e in result.transcript if e.session == "a" and e.direction is Direction.CLIENT
    )
    assert result.verdict is Verdict.PASS, result.message
    assert sent.count(b"USER ") == 1 and sent.count(b"PASS ") == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_when_the_run_starts_is_target_unreachable() -> None:
    config = RunConfig(host="127.0.0.1", port=free_port(), provision="none", read_timeout=1)
    with pytest.raises(TargetUnreachable, match="connection refused"):
        run_suite([], config)


def test_connection_refused_during_a_scenario_is_error(tmp_path: Path) -> None:
    (scenario,) = load_scenario_file(scenario_file(tmp_path, STAT_OK))
    with scripted() as server, Runner(config_for(server), fixture=small_fixture()) as runner:
        runner.port = free_port()
        result = runner.run(scenario)
    assert result.verdict is Verdict.ERROR
    assert "connection refused" in result.message


def test_a_miscounting_stat_is_judged_by_the_scenario_not_hidden_by_set_up(
    tmp_path: Path,
) -> None:
    with scripted({"STAT": b"+OK 1 10\r\n"}) as server:
        result = run_text(tmp_path, server, STAT_OK)
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].requirement == "POP3-1939-STAT-01"


def test_a_store_without_the_fixture_is_error_naming_the_message(tmp_path: Path) -> None:
    with scripted({"TOP 1 0": b"+OK\r\nSubject: other\r\n\r\n.\r\n"}) as server:
        result = run_text(tmp_path, server, STAT_OK)
    assert result.verdict is Verdict.ERROR
    assert "the store does not hold the fixture" in result.message
    assert "message 1 should be one.eml" in result.message
    assert "provision: none cannot restore it" in result.message


def test_runtime_expression_error_is_error_not_fail(tmp_path: Path) -> None:
    body = steps("open: a", "S: +OK", "login", "C: LIST 1", 'S: ["+OK {n:int} {size:int}", "+OK"]',
                 "assert: size > 0")  # fmt: skip
    with scripted({"LIST 1": b"+OK\r\n"}) as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.ERROR
    assert "name 'size' is not defined" in result.message


def test_slow_scenarios_skip_unless_asked(tmp_path: Path) -> None:
    with scripted() as server:
        assert run_text(tmp_path, server, STAT_OK, extra="    slow: true\n").verdict is Verdict.SKIP
        slow = run_text(tmp_path, server, STAT_OK, extra="    slow: true\n", slow=True)
    assert slow.verdict is Verdict.PASS


def test_run_suite_reports_progress_and_fingerprint(tmp_path: Path) -> None:
    (scenario,) = load_scenario_file(scenario_file(tmp_path, STAT_OK))
    seen: list[tuple[str, int, int]] = []
    with scripted() as server:
        result = run_suite(
            [scenario, scenario],
            config_for(server),
            progress=lambda r, i, n: seen.append((r.scenario_id, i, n)),
            fixture=small_fixture(),
        )
    assert seen == [("test.case", 1, 2), ("test.case", 2, 2)]
    assert result.exit_code == 0 and result.counts()[Verdict.PASS] == 2
    assert result.target.greeting.startswith("+OK scripted")
    assert result.config["accounts"] == {}


def test_timeout_autologout_skips_when_the_targets_timer_is_unknown(tmp_path: Path) -> None:
    body = steps("open: a", "S: +OK", "login", "expect_close:", "  timeout: autologout")
    with scripted() as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.SKIP
    assert "autologout timer is unknown" in result.message and "--autologout" in result.message


def test_timeout_autologout_waits_for_the_configured_timer_plus_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conformance.pop3.engine

    monkeypatch.setattr(conformance.pop3.engine, "AUTOLOGOUT_GRACE_SECONDS", 0.5)
    body = steps("open: a", "S: +OK", "login", "expect_close:", "  timeout: autologout")
    with scripted() as server:
        result = run_text(tmp_path, server, body, autologout=1)
    assert result.verdict is Verdict.FAIL
    assert "connection still open after 1.5 s" in result.message


def test_a_timeout_that_is_neither_a_number_nor_autologout_is_a_loader_error(
    tmp_path: Path,
) -> None:
    from conformance.core.errors import ScenarioError

    body = steps("open: a", "S: +OK", "  timeout: soon")
    with pytest.raises(ScenarioError, match="positive number of seconds or 'autologout'"):
        load_scenario_file(scenario_file(tmp_path, body))


IN_USE = b"-ERR [IN-USE] maildrop busy\r\n"


def test_a_login_refused_in_use_is_retried_when_no_session_of_the_scenario_holds_it(
    tmp_path: Path,
) -> None:
    from engine_fakes import small_fixture

    password = small_fixture().accounts["main"].password
    # verification login: two [IN-USE] then +OK; the scenario's login: [IN-USE] then +OK
    replies = {f"PASS {password}": [IN_USE, IN_USE, b"+OK\r\n", IN_USE, b"+OK\r\n"]}
    with scripted(replies) as server:
        result = run_text(tmp_path, server, STAT_OK)
    assert result.verdict is Verdict.PASS, result.message
    retried = [e for e in result.transcript if e.data == b"maildrop in use: login retried"]
    assert len(retried) == 1


def test_a_login_refused_in_use_while_another_session_holds_the_maildrop_is_judged_at_once(
    tmp_path: Path,
) -> None:
    from engine_fakes import small_fixture

    password = small_fixture().accounts["main"].password
    replies = {f"PASS {password}": [b"+OK\r\n", b"+OK\r\n", IN_USE, b"+OK\r\n"]}
    body = steps(
        "open: a", "S: +OK", "login", "open: b", "S: +OK", "  session: b", "login:", "  session: b"
    )
    with scripted(replies) as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.FAIL
    assert "IN-USE" in result.message


def test_an_explicit_step_timeout_never_shortens_an_authentication_reply() -> None:
    from conformance.core.verdicts import reply_timeout

    config = RunConfig(read_timeout=10.0, auth_timeout=45.0)
    assert reply_timeout(5.0, True, config) == 45.0
    assert reply_timeout(90.0, True, config) == 90.0
    assert reply_timeout(None, True, config) == 45.0
    assert reply_timeout(5.0, False, config) == 5.0
    assert reply_timeout(None, False, config) == 10.0


def test_scenario_deadlines_grow_with_raised_reply_deadlines() -> None:
    from conformance.core.verdicts import deadline_scale

    assert deadline_scale(RunConfig()) == 1.0
    assert deadline_scale(RunConfig(auth_timeout=90.0)) == 3.0
    assert deadline_scale(RunConfig(read_timeout=40.0)) == 4.0
    assert deadline_scale(RunConfig(read_timeout=2.0, auth_timeout=2.0)) == 1.0


def test_an_ignored_empty_line_is_judged_at_the_scenario_level_not_as_silence(
    tmp_path: Path,
) -> None:
    from engine_fakes import STALL

    body = steps("open: a", "S: +OK", 'send: "\\r\\n"', "S: -ERR", "  timeout: 0.3")
    with scripted({"": STALL}) as server:
        result = run_text(tmp_path, server, body, level="SHOULD")
    assert result.verdict is Verdict.WARN, result.message  # an empty line is no command
    body = steps("open: a", "S: +OK", "C: NOOP", "S: +OK", "  timeout: 0.3")
    with scripted({"NOOP": STALL}) as server:
        result = run_text(tmp_path, server, body, level="SHOULD")
    assert result.verdict is Verdict.FAIL  # a command's silence is a MUST finding


def test_the_greeting_and_quit_are_pinned_on_their_own_rules(tmp_path: Path) -> None:
    """In a STAT scenario, a QUIT that is never answered fails on the UPDATE
    rule, and a negative greeting on the greeting rule."""
    from engine_fakes import SCENARIO_HEADER, STALL  # requirements: [POP3-1939-STAT-01]

    assert "POP3-1939-STAT-01" in SCENARIO_HEADER
    quitting = steps(
        "open: a", "S: +OK", "login", "C: STAT", "S: +OK", "C: QUIT", "S: +OK", "  timeout: 0.3",
    )  # fmt: skip
    with scripted({"QUIT": STALL}) as server:
        result = run_text(tmp_path, server, quitting)
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].requirement == "POP3-1939-UPDATE-03", result.failures
    before_login = steps("open: a", "S: +OK", "C: QUIT", "S: +OK", "  timeout: 0.3")
    with scripted({"QUIT": STALL}) as server:
        result = run_text(tmp_path, server, before_login)
    assert result.failures[0].requirement == "POP3-1939-QUIT-01", result.failures
    with scripted(greeting=b"-ERR go away\r\n") as server:
        result = run_text(tmp_path, server, steps("open: a", "S: +OK"))
    assert result.failures[0].requirement == "POP3-1939-GREET-02"


def test_transcript_entries_name_the_step_that_caused_them(tmp_path: Path) -> None:
    body = STAT_OK.replace("{count}", "9") + "        level: SHOULD\n" + steps("C: NOOP", "S: +OK")
    with scripted() as server:
        result = run_text(tmp_path, server, body)
    assert result.verdict is Verdict.WARN and result.failures[0].step == 5
    wire = [(e.direction, e.data, e.step) for e in result.transcript if e.step is not None]
    by_step = {step: data for direction, data, step in wire if direction is Direction.CLIENT}
    assert by_step[4] == b"STAT\r\n" and by_step[6] == b"NOOP\r\n"
    assert [data[:3] for d, data, step in wire if step == 5] == [b"+OK"]  # the judged reply
    # set-up (verification before the scenario) belongs to no step
    assert any(e.step is None and e.session.startswith("verify") for e in result.transcript)
