"""The probe and the verification are not judges: a server that breaks
the protocol gets FAILs from the scenarios, not a run that refuses to start
or a wall of ERRORs."""

from __future__ import annotations

from pathlib import Path

from engine_fakes import config_for, run_text, scripted, small_fixture, steps

from conformance.core.results import Verdict
from conformance.core.scenario import load_scenario_file
from conformance.pop3.capabilities import greeting_timestamp
from conformance.pop3.engine import Runner

GREETING_ONLY = steps("open: a", "S: +OK")
LOGIN = steps("open: a", "S: +OK", "login", "C: NOOP", "S: +OK")


def test_negative_greeting_is_judged_by_scenarios(tmp_path: Path) -> None:
    with scripted(greeting=b"-ERR not ready\r\n") as server:
        greeting = run_text(tmp_path, server, GREETING_ONLY, capabilities="auto")
        login = run_text(tmp_path, server, LOGIN, capabilities="auto")
    assert greeting.verdict is Verdict.FAIL
    assert "status '-ERR' in '-ERR not ready'" in greeting.message
    assert login.verdict is Verdict.ERROR  # its maildrop cannot be verified
    assert "did not greet with +OK" in login.message


def test_lower_case_status_everywhere_is_a_framing_fail_not_an_error(tmp_path: Path) -> None:
    with scripted() as server:
        for command, reply in list(server.replies.items()):
            if isinstance(reply, bytes) and reply.startswith(b"+OK"):
                server.replies[command] = b"+ok" + reply[3:]
        result = run_text(tmp_path, server, LOGIN)
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].kind == "framing"
    assert result.failures[0].requirement == "POP3-1939-RESP-03"


def test_unterminated_capa_still_offers_capa(tmp_path: Path) -> None:
    capa = steps("open: a", "S: +OK", "C: CAPA", "S: +OK")
    with scripted({"CAPA": b"+OK\r\nUSER\r\n"}) as server:
        result = run_text(
            tmp_path, server, capa, extra="    needs: [CAPA]\n", capabilities="auto",
            read_timeout=0.4,
        )  # fmt: skip
    assert result.verdict is Verdict.FAIL
    assert "the body did not end" in result.message


def test_any_angle_token_offers_apop_and_a_msg_id_is_preferred() -> None:
    assert greeting_timestamp(b"+OK <abc> ready") == "<abc>"
    assert greeting_timestamp(b"+OK <hello> ready <1.2@host>") == "<1.2@host>"
    assert greeting_timestamp(b"+OK ready") is None


def test_a_login_refused_after_an_earlier_success_is_judged_by_the_scenario(
    tmp_path: Path,
) -> None:
    path = tmp_path / "case.yaml"
    path.write_text(
        'section: "s"\nscenarios:\n  - id: a.b\n    title: t\n'
        "    requirements: [POP3-1939-STAT-01]\n    level: MUST\n    steps:\n" + LOGIN,
        encoding="utf-8",
    )
    (scenario,) = load_scenario_file(path)
    ok, refused = b"+OK logged in\r\n", b"-ERR authentication failed\r\n"
    # probe: ok; 1st scenario: verify ok, login ok; then every login refused
    with scripted({"PASS alice-secret": [ok, ok, ok, refused]}) as server:
        with Runner(config_for(server, capabilities="auto"), fixture=small_fixture()) as runner:
            first, second = runner.run(scenario), runner.run(scenario)
    assert first.verdict is Verdict.PASS, first.message
    assert second.verdict is Verdict.FAIL
    assert "-ERR authentication failed" in second.message
    assert second.failures[0].requirement == "POP3-1939-AUTH-PASS-02"
    assert second.failures[0].kind == "login"


def test_a_temporary_login_refusal_is_error_not_fail(tmp_path: Path) -> None:
    ok, refused = b"+OK logged in\r\n", b"-ERR [LOGIN-DELAY] too soon\r\n"
    # the probe logs in; the scenario's login meets the server's login delay
    with scripted({"PASS alice-secret": [ok, refused]}) as server:
        result = run_text(tmp_path, server, LOGIN, capabilities="auto")
    assert result.verdict is Verdict.ERROR
    assert "refused the login temporarily" in result.message
    assert "[LOGIN-DELAY]" in result.message
