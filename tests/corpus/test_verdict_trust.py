"""A gate you can trust (issue 8): against each misbehaviour the old verdict
model misjudged, the verdict lands on the scenario at fault and on the
requirement it breaks, with the verdict and the exit code a CI gate needs.

The faulty servers are in verdict_faults.py. Runs go through
`conformance.pop3.engine.run_suite` (or the `mailspec` CLI as a child process,
for the killed target and `mailspec provision`/`verify`), so the exit code
asserted is the one a CI job would see. Whole-corpus runs are cached for
the session (functools.cache), as harness.py does.

Several checks pin the requirement a step names (`requirement:`, the
per-step audit of scenarios/pop3), not only the scenario. Three engine
defects found while writing them are fixed (the probe taking silence for a
refusal, unstable unique-ids blamed on every scenario, a SKIP re-judged by
the maildrop re-check); their tests pin the fixes.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import harness
from test_corpus import REFERENCE_DEVIATIONS
from verdict_faults import (
    APOP_DIGEST_WRONG,
    AUTH_CODE_MISSING,
    CAPA_SILENT,
    CLOSES_AFTER_REFUSED_LOGIN,
    CLOSES_INSTEAD_OF_REFUSING,
    DELE_AT_ONCE,
    EMPTY_LIST_UNTERMINATED,
    LAST_IGNORES_RETR,
    LAST_SILENT,
    LF_OCTETS,
    NOOP_SILENT,
    STATUS_HEADER_AT_UPDATE,
    TOP_EXTRA_BLANK_LINE,
    UIDL_WITHOUT_NUMBERS,
    UIDS_CHANGE_EVERY_SESSION,
    VERDICT_FAULTS,
    WHOLE_LONG_LINES,
)

from conformance.core.config import RunConfig
from conformance.core.fixture import load_fixture
from conformance.core.results import Direction, RunResult, ScenarioResult, Verdict
from conformance.core.scenario import CommandStep, PipelineStep, Scenario, SendStep, load_scenarios
from conformance.core.schedule import OUTAGE_NOTE
from conformance.pop3.engine import run_suite
from conformance.pop3.mailboxes import NEEDS_PROVISIONER
from conformance.provision import MaildirProvisioner

REPO = Path(__file__).resolve().parents[2]
#: At most this many ERRORs where a server misreports sizes (issue 8, "Done when").
LF_OCTETS_MAX_ERRORS = 5
#: The killed target: exit 3 this soon after the kill (issue 8, "Done when").
KILLED_TARGET_EXIT_SECONDS = 30.0
#: Scenarios judged before the target is killed.
KILL_AFTER_SCENARIOS = 20
#: What the size rules are: RFC 1939 §5 STAT/LIST, §11 octet counts.
SIZE_REQUIREMENTS = frozenset(
    {
        "POP3-1939-SIZE-01",  # counted in CRLF form
        "POP3-1939-STAT-01",
        "POP3-1939-STAT-04",
        "POP3-1939-LIST-01",
        "POP3-1939-LIST-03",
    }
)
#: The TOP shape rules (RFC 1939 §7 TOP): header, blank line, n lines.
TOP_SHAPE_REQUIREMENTS = frozenset({"POP3-1939-TOP-02", "POP3-1939-TOP-03", "POP3-1939-TOP-04"})


# --- running ---------------------------------------------------------------------------


def suite_against(fault_name: str | None, scenarios: Iterable[Scenario]) -> RunResult:
    """One `run_suite` against the in-process reference server with the
    named fault (None: the correct reference), the fixture written by the
    Maildir provisioner into the store the server reads."""
    fault = VERDICT_FAULTS[fault_name] if fault_name else None
    with tempfile.TemporaryDirectory(prefix="mailspec-verdict-") as tmp:
        handle = harness.start(fault, Path(tmp))
        try:
            return run_suite(list(scenarios), _config(handle, f"maildir,exact=yes:{tmp}/{{user}}"))
        finally:
            handle.close()


def _config(handle: Any, provision: str) -> RunConfig:
    return RunConfig(
        host=handle.host,
        port=handle.port,
        provision=provision,
        tls_ca=harness.certificates()[1],  # the stls.* scenarios verify the server
        read_timeout=harness.READ_TIMEOUT,
        auth_timeout=harness.READ_TIMEOUT,
        autologout=600,
    )


def fast_corpus() -> list[Scenario]:
    return [s for s in harness.corpus() if not s.slow]


@cache
def corpus_run(fault_name: str) -> RunResult:
    return suite_against(fault_name, fast_corpus())


@cache
def selected_run(fault_name: str, patterns: tuple[str, ...]) -> RunResult:
    return suite_against(fault_name, harness.select(list(patterns)))


def by_id(run: RunResult) -> dict[str, ScenarioResult]:
    return {r.scenario_id: r for r in run.results}


def requirements_of(result: ScenarioResult) -> list[str | None]:
    return [f.requirement for f in result.failures]


def shown(results: Iterable[ScenarioResult]) -> dict[str, str]:
    return {
        r.scenario_id: f"{r.verdict} {requirements_of(r)} {r.message[:160]}"
        for r in results
        if r.verdict is not Verdict.PASS
    }


def verdicts(run: RunResult) -> Counter[Verdict]:
    return Counter(r.verdict for r in run.results)


# --- sizes counted with LF line ends (RFC 1939 §11) ------------------------------------


def test_lf_octets_fail_the_size_scenarios_not_error_the_corpus():
    run = corpus_run(LF_OCTETS.name)
    results = by_id(run)
    counts = verdicts(run)
    assert counts[Verdict.ERROR] <= LF_OCTETS_MAX_ERRORS, shown(run.results)
    # the scenarios that check the size rules FAIL on them, at MUST
    for sid in ("sizes.list-matches-retr", "sizes.bare-lf-counted-as-crlf"):
        result = results[sid]
        assert result.verdict is Verdict.FAIL, shown([result])
        assert set(requirements_of(result)) & SIZE_REQUIREMENTS, shown([result])
        assert all(f.level == "MUST" for f in result.failures)
    failed = [r for r in run.results if r.verdict is Verdict.FAIL]
    assert len(failed) >= 5, shown(run.results)
    # everything that does not look at sizes still runs and passes
    assert counts[Verdict.PASS] >= len(run.results) - len(failed) - 10, shown(run.results)
    assert run.exit_code == (3 if counts[Verdict.ERROR] else 1)
    assert run.exit_code != 0


def test_lf_octets_failures_name_a_size_requirement():
    """Not the stuffing rule (SIZE-02), not the greeting or NOOP a seed
    session happens to list first."""
    run = corpus_run(LF_OCTETS.name)
    wrong = {
        r.scenario_id: requirements_of(r)
        for r in run.results
        if r.verdict is Verdict.FAIL and not set(requirements_of(r)) <= SIZE_REQUIREMENTS
    }
    assert wrong == {}


# --- DELE effective at once (not at UPDATE) ----------------------------------------------


def test_dele_at_once_fails_the_scenario_that_deleted_not_the_next():
    run = corpus_run(DELE_AT_ONCE.name)
    results = by_id(run)
    marks = results["dele.marks-message"]
    assert marks.verdict is Verdict.FAIL, shown([marks])
    maildrop = [f for f in marks.failures if f.kind == "maildrop"]
    assert maildrop, shown([marks])
    assert maildrop[0].requirement == "POP3-1939-DELE-05"
    assert maildrop[0].level == "MUST"
    # the scenario after it in the run starts from a re-provisioned account
    order = [r.scenario_id for r in run.results]
    following = run.results[order.index("dele.marks-message") + 1]
    assert following.verdict is not Verdict.ERROR, shown([following])
    # nothing in the run is collateral: no ERROR, and every FAIL is a
    # scenario that sent DELE itself
    assert verdicts(run)[Verdict.ERROR] == 0, shown(run.results)
    scenarios = {s.id: s for s in harness.corpus()}
    for result in run.results:
        if result.verdict is Verdict.FAIL:
            assert _sends_dele(scenarios[result.scenario_id]), shown([result])
    assert run.exit_code == 1


def test_dele_at_once_blames_every_non_committing_deleter_on_dele_05():
    run = corpus_run(DELE_AT_ONCE.name)
    scenarios = {s.id: s for s in harness.corpus()}
    blamed = {
        r.scenario_id
        for r in run.results
        if any(f.kind == "maildrop" and f.requirement == "POP3-1939-DELE-05" for f in r.failures)
    }
    assert len(blamed) >= 10, shown(run.results)
    assert all(not scenarios[sid].commits for sid in blamed)


def _sends_dele(scenario: Scenario) -> bool:
    for step in scenario.steps:
        if isinstance(step, CommandStep | SendStep):
            templates = [step.template]
        elif isinstance(step, PipelineStep):
            templates = list(step.templates)
        else:
            continue
        for template in templates:
            literal = "".join(part for part in template if isinstance(part, str))
            if "DELE" in literal.upper():
                return True
    return False


# --- the maildrop re-check after a scenario blames one defect once ------------------------

UIDS_PATTERNS = ("uidl.*", "stat.*", "noop.*", "apop.not-offered-refused")


def test_unstable_uids_fail_the_uidl_scenario_not_every_scenario():
    run = selected_run(UIDS_CHANGE_EVERY_SESSION.name, UIDS_PATTERNS)
    stable = by_id(run)["uidl.stable-across-sessions"]
    assert stable.verdict is Verdict.FAIL
    assert "POP3-1939-UIDL-08" in requirements_of(stable)
    blamed = [r.scenario_id for r in run.results if any(f.kind == "maildrop" for f in r.failures)]
    assert len(blamed) <= 1, blamed


def test_a_skipped_scenario_stays_skipped_whatever_the_maildrop_check_finds():
    run = selected_run(UIDS_CHANGE_EVERY_SESSION.name, UIDS_PATTERNS)
    skipped = by_id(run)["apop.not-offered-refused"]  # skip_if: the greeting has a timestamp
    assert skipped.verdict is Verdict.SKIP, shown([skipped])


def test_messages_grown_at_update_are_not_a_maildrop_change():
    """The re-check judges which messages there are (count, unique-ids),
    not octet totals: bookkeeping headers written at UPDATE (Mailutils'
    Status:, verdict-principles 12) blame no scenario for a changed maildrop."""
    run = selected_run(STATUS_HEADER_AT_UPDATE.name, ("retr.*", "top.*", "uidl.*"))
    blamed = {
        r.scenario_id: [f.actual[:80] for f in r.failures if f.kind == "maildrop"]
        for r in run.results
        if any(f.kind == "maildrop" for f in r.failures)
    }
    assert blamed == {}
    assert by_id(run)["uidl.stable-across-sessions"].verdict is Verdict.PASS
    assert verdicts(run)[Verdict.ERROR] == 0, shown(run.results)


# --- APOP broken (digest checked wrongly) ------------------------------------------------

APOP_LOGIN_STEP_SCENARIOS = """\
section: "RFC 1939 §7 APOP"
scenarios:
  - id: proof.apop-login-step
    title: The login step as the APOP account logs in with APOP
    requirements: [POP3-1939-AUTH-APOP-04]
    level: MUST
    needs: [APOP]
    account: apop
    steps:
      - open: a
      - S: +OK
      - login
      - C: STAT
      - S: "+OK {count} {size:int}"
      - C: QUIT
      - S: +OK
  - id: proof.apop-login-step-again
    title: A later scenario that needs the same APOP login
    requirements: [POP3-1939-AUTH-APOP-04]
    level: MUST
    needs: [APOP]
    account: apop
    steps:
      - open: a
      - S: +OK
      - login
      - C: NOOP
      - S: +OK
      - C: QUIT
      - S: +OK
"""


def test_apop_broken_is_a_fail_of_the_apop_scenarios_not_an_error():
    run = selected_run(APOP_DIGEST_WRONG.name, ("apop.*", "seed.*apop*", "state.apop-*"))
    results = by_id(run)
    assert results["apop.login"].verdict is Verdict.FAIL, shown(run.results)
    assert verdicts(run)[Verdict.ERROR] == 0, shown(run.results)
    assert all("cannot log in" not in r.message for r in run.results), shown(run.results)
    assert run.exit_code == 1


def test_apop_broken_is_pinned_on_the_digest_rule():
    run = selected_run(APOP_DIGEST_WRONG.name, ("apop.*", "seed.*apop*", "state.apop-*"))
    for sid in ("apop.login", "seed.rfc1939-example-session-apop"):
        result = by_id(run)[sid]
        assert result.verdict is Verdict.FAIL
        assert requirements_of(result)[0] == "POP3-1939-AUTH-APOP-04", shown([result])


def test_apop_broken_fails_the_login_step_once_then_skips_dependents(tmp_path):
    """Set-up's own APOP login is refused too; that is not an ERROR of
    set-up: the first scenario whose `login` step fails is the FAIL of the
    digest rule, the next one that needs the login SKIPs."""
    (tmp_path / "apop-login.yaml").write_text(APOP_LOGIN_STEP_SCENARIOS, encoding="utf-8")
    scenarios = load_scenarios([tmp_path])
    run = suite_against(APOP_DIGEST_WRONG.name, scenarios)
    first, second = run.results
    assert first.verdict is Verdict.FAIL, shown(run.results)
    assert [(f.kind, f.requirement) for f in first.failures] == [
        ("login", "POP3-1939-AUTH-APOP-04")
    ]
    assert second.verdict is Verdict.SKIP, shown(run.results)
    assert "proof.apop-login-step" in second.message
    assert run.exit_code == 1
    # and on the correct reference the same scenarios pass
    good = suite_against(None, scenarios)
    assert [r.verdict for r in good.results] == [Verdict.PASS, Verdict.PASS], shown(good.results)


# --- LIST on an empty maildrop without the terminator -------------------------------------


def test_unterminated_empty_list_fails_its_scenario_on_multi_01_without_hanging():
    started = time.monotonic()
    run = selected_run(EMPTY_LIST_UNTERMINATED.name, ("list.*",))
    elapsed = time.monotonic() - started
    result = by_id(run)["list.empty-maildrop"]
    assert result.verdict is Verdict.FAIL, shown(run.results)
    assert requirements_of(result) == ["POP3-1939-MULTI-01"]
    assert result.failures[0].kind == "framing"
    # one read deadline for the scenario that catches it, none for set-up
    assert elapsed < 8 * harness.READ_TIMEOUT
    assert verdicts(run)[Verdict.ERROR] == 0, shown(run.results)
    others = [r for r in run.results if r.scenario_id != "list.empty-maildrop"]
    assert all(r.verdict is Verdict.PASS for r in others), shown(others)
    assert run.exit_code == 1


# --- findings pinned on the requirement that broke -------------------------------------------


def test_uidl_without_numbers_fails_the_uidl_scenarios_on_uidl_rules():
    run = selected_run(UIDL_WITHOUT_NUMBERS.name, ("uidl.*", "capa.uidl-works"))
    results = by_id(run)
    listing = results["uidl.listing-format"]
    assert listing.verdict is Verdict.FAIL, shown(run.results)
    assert all(r and r.startswith("POP3-1939-UIDL-") for r in requirements_of(listing))
    assert results["capa.uidl-works"].verdict is Verdict.FAIL
    assert verdicts(run)[Verdict.ERROR] == 0, shown(run.results)
    assert run.exit_code == 1


def test_uidl_without_numbers_inside_a_capa_scenario_is_a_uidl_finding():
    result = by_id(selected_run(UIDL_WITHOUT_NUMBERS.name, ("uidl.*", "capa.uidl-works")))[
        "capa.uidl-works"
    ]
    assert result.verdict is Verdict.FAIL
    assert requirements_of(result)[0].startswith("POP3-1939-UIDL-"), shown([result])


def test_last_not_raised_by_retr_fails_the_retr_rule():
    run = selected_run(LAST_IGNORES_RETR.name, ("last.*", "rset.*"))
    result = by_id(run)["last.retr-raises"]
    assert result.verdict is Verdict.FAIL, shown(run.results)
    assert requirements_of(result) == ["POP3-1225-LAST-04"]
    assert all(r.scenario_id.startswith("last.") for r in run.results if r.verdict is Verdict.FAIL)
    assert verdicts(run)[Verdict.ERROR] == 0, shown(run.results)
    assert run.exit_code == 1


def test_last_not_raised_by_retr_is_never_an_rset_finding():
    run = selected_run(LAST_IGNORES_RETR.name, ("last.*", "rset.*"))
    wrong = {
        r.scenario_id: requirements_of(r)
        for r in run.results
        if r.verdict is Verdict.FAIL and set(requirements_of(r)) != {"POP3-1225-LAST-04"}
    }
    assert wrong == {}


def test_top_extra_blank_line_fails_top_scenarios_on_top_requirements():
    run = selected_run(TOP_EXTRA_BLANK_LINE.name, ("top.*",))
    failed = [r for r in run.results if r.verdict is Verdict.FAIL]
    assert {r.scenario_id for r in failed} >= {"top.zero-lines", "top.beyond-body"}, shown(failed)
    for result in failed:
        assert all(r and r.startswith("POP3-1939-TOP-") for r in requirements_of(result))
    assert by_id(run)["top.zero-lines"].failures[0].requirement == "POP3-1939-TOP-03"
    assert verdicts(run)[Verdict.ERROR] == 0, shown(run.results)
    assert run.exit_code == 1


def test_top_extra_blank_line_is_a_shape_finding_not_stuffing():
    """TOP-01 says TOP is optional and TOP-05 is byte-stuffing: neither is
    what an extra blank line breaks."""
    run = selected_run(TOP_EXTRA_BLANK_LINE.name, ("top.*",))
    wrong = {
        r.scenario_id: requirements_of(r)
        for r in run.results
        if r.verdict is Verdict.FAIL and not set(requirements_of(r)) <= TOP_SHAPE_REQUIREMENTS
    }
    assert wrong == {}


# --- silence ---------------------------------------------------------------------------------


def test_no_reply_to_noop_fails_even_a_should_scenario():
    run = selected_run(NOOP_SILENT.name, ("args.noop-extra-argument", "noop.transaction"))
    results = by_id(run)
    should = results["args.noop-extra-argument"]
    assert should.level == "SHOULD"
    assert should.verdict is Verdict.FAIL, shown(run.results)  # not WARN
    assert [(f.kind, f.level) for f in should.failures] == [("timeout", "MUST")]
    assert should.failures[0].requirement == "POP3-1939-ERR-05"
    must = results["noop.transaction"]
    assert must.verdict is Verdict.FAIL
    assert must.failures[0].requirement == "POP3-1939-NOOP-01"
    assert run.exit_code == 1


def test_no_reply_to_last_is_a_finding_not_a_refused_last():
    """verdict-principles 5 lets LAST be refused ('-ERR': SKIP); a LAST
    that gets no reply is silence, a FAIL, not 'LAST was refused'."""
    run = selected_run(LAST_SILENT.name, ("last.initial-zero",))
    (result,) = run.results
    assert result.verdict is Verdict.FAIL, shown(run.results)
    assert [f.kind for f in result.failures] == ["timeout"]
    assert run.exit_code == 1


def test_no_reply_to_capa_is_a_finding_not_a_server_without_capa():
    run = selected_run(CAPA_SILENT.name, ("capa.authorization-listing",))
    (result,) = run.results
    assert result.verdict is Verdict.FAIL, shown(run.results)
    assert [f.kind for f in result.failures] == ["timeout"]
    assert run.exit_code == 1


def test_close_instead_of_err_is_not_an_allowed_or_close():
    run = selected_run(CLOSES_INSTEAD_OF_REFUSING.name, ("state.*-in-transaction",))
    results = by_id(run)
    for sid, requirement in (
        ("state.pass-in-transaction", "POP3-1939-AUTH-PASS-06"),  # `or_close: true` there
        ("state.apop-in-transaction", "POP3-1939-AUTH-APOP-09"),
        ("state.user-in-transaction", "POP3-1939-AUTH-USER-05"),
    ):
        result = results[sid]
        assert result.verdict is Verdict.FAIL, shown(run.results)
        assert [(f.kind, f.requirement) for f in result.failures] == [("closed", requirement)]
    assert run.exit_code == 1


def test_close_after_a_refused_login_is_the_allowed_branch():
    run = selected_run(
        CLOSES_AFTER_REFUSED_LOGIN.name, ("auth.*", "state.*", "lock.*", "apop.*", "respcodes.*")
    )
    closed_after = [
        r.scenario_id
        for r in run.results
        if any(b"(an allowed abuse limit)" in e.data for e in r.transcript)
    ]
    for sid in ("auth.wrong-password", "apop.wrong-digest", "state.pass-after-failed-pass"):
        assert sid in closed_after
        assert by_id(run)[sid].verdict is Verdict.PASS, shown(run.results)
    assert len(closed_after) >= 8
    assert not [r for r in run.results if r.verdict in (Verdict.FAIL, Verdict.ERROR)], shown(
        run.results
    )
    assert run.exit_code == 0


LOGIN_AFTER_OWN_USER = """\
section: "RFC 1939 §7 USER/PASS"
scenarios:
  - id: proof.login-after-own-user
    title: The login step after the scenario's own USER sends only PASS
    requirements: [POP3-1939-AUTH-PASS-02]
    level: MUST
    steps:
      - open: a
      - S: +OK
      - C: "USER {user}"
      - S: +OK
      - login
      - C: STAT
      - S: "+OK {count} {size:int}"
      - C: QUIT
      - S: +OK
"""


def test_login_after_the_scenarios_own_user_sends_only_pass(tmp_path):
    """The reference refuses a second USER, as a conforming server does
    (RFC 1939 §7: PASS only right after USER): a `login` that re-sent USER
    would fail there and blame the server."""
    (tmp_path / "login.yaml").write_text(LOGIN_AFTER_OWN_USER, encoding="utf-8")
    run = suite_against(None, load_scenarios([tmp_path]))
    (result,) = run.results
    assert result.verdict is Verdict.PASS, shown(run.results)
    sent = [
        e.data for e in result.transcript if e.session == "a" and e.direction is Direction.CLIENT
    ]
    assert sum(1 for line in sent if line.startswith(b"USER ")) == 1, sent
    assert sum(1 for line in sent if line.startswith(b"PASS ")) == 1, sent
    assert run.exit_code == 0


# --- longer than the minimum, RFC 3206 [AUTH] (issue 8 item 6) ------------------------------


def test_long_line_executed_whole_conforms():
    """verdict-principles 16: 'NOOP <4000 octets>' -> '+OK' conforms;
    only a refusal below the minimum or a fragment run as a command is one."""
    run = selected_run(WHOLE_LONG_LINES.name, ("capa.*line*",))
    assert all(r.verdict is Verdict.PASS for r in run.results), shown(run.results)


def test_failed_login_without_auth_code_fails_when_auth_resp_code_is_advertised():
    """RFC 3206 §4 (POP3-3206-CAPA-02): with AUTH-RESP-CODE advertised, a
    credential failure carries [AUTH]."""
    run = selected_run(AUTH_CODE_MISSING.name, ("auth.*", "authcode.*", "respcodes.*"))
    caught = [r for r in run.results if "POP3-3206-CAPA-02" in requirements_of(r)]
    assert caught and all(r.verdict is Verdict.FAIL for r in caught), shown(run.results)


# --- provision: none is repeatable -------------------------------------------------------------


@cache
def black_box_runs() -> tuple[RunResult, ...]:
    """Three runs against a target provisioned once, by us, beforehand."""
    with tempfile.TemporaryDirectory(prefix="mailspec-blackbox-") as tmp:
        root = Path(tmp)
        provisioner = MaildirProvisioner(f"{root}/{{user}}")
        for account in load_fixture().accounts.values():
            provisioner.reset(account)
        handle = harness.start(None, root)
        try:
            config = _config(handle, "none")
            return tuple(run_suite(fast_corpus(), config) for _ in range(3))
        finally:
            handle.close()


def test_provision_none_gives_the_same_verdicts_every_run():
    runs = black_box_runs()
    first = {r.scenario_id: r.verdict for r in runs[0].results}
    for later in runs[1:]:
        assert {r.scenario_id: r.verdict for r in later.results} == first
    expected = 1 if any(v is Verdict.FAIL for v in REFERENCE_DEVIATIONS.values()) else 0
    assert [run.exit_code for run in runs] == [expected] * 3, shown(runs[-1].results)


def test_provision_none_skips_committing_scenarios_and_errors_nothing():
    scenarios = {s.id: s for s in fast_corpus()}
    for run in black_box_runs():
        assert verdicts(run)[Verdict.ERROR] == 0, shown(run.results)
        for result in run.results:
            if scenarios[result.scenario_id].commits:
                assert result.verdict is Verdict.SKIP, shown([result])
                assert result.message == NEEDS_PROVISIONER
                assert "needs a provisioner" in result.message
            elif result.scenario_id in REFERENCE_DEVIATIONS:  # known, e.g. SASLprep
                assert result.verdict is REFERENCE_DEVIATIONS[result.scenario_id]
            else:
                assert result.verdict in (Verdict.PASS, Verdict.SKIP), shown([result])
    committing = [sid for sid, s in scenarios.items() if s.commits]
    assert len(committing) >= 10


# --- the killed target ------------------------------------------------------------------------

HEADER_LINE = re.compile(r"^mailspec: (\d+) scenarios? against ")
VERDICT_LINE = re.compile(r"^\s+(PASS|FAIL|WARN|SKIP|ERROR|XFAIL|XPASS)\s+(\S+):")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["NO_COLOR"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _users_file(path: Path) -> Path:
    lines = [
        ("apop " if a.login == "apop" else "") + f"{a.user}:{a.password}"
        for a in load_fixture().accounts.values()
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _lines(stream) -> queue.Queue[str | None]:  # type: ignore[no-untyped-def]
    """Lines of a child's stdout, read on a thread (every wait is bounded)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _start_reference_server(root: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "reference_server", "--listen", "127.0.0.1:0", "--apop"),
            *("--store", f"maildir:{root}/{{user}}"),
            *("--users", str(_users_file(tmp_path / "users")), "--log-level", "WARNING"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    assert server.stdout is not None
    ready = _lines(server.stdout).get(timeout=30)
    assert ready and ready.startswith("mailspec-reference-server listening on"), ready
    return server, int(ready.rsplit(":", 1)[1])


def _start_run(root: Path, port: int, reports: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "conformance", "run", "--target", f"127.0.0.1:{port}"),
            *("--provision", f"maildir:{root}/{{user}}", "--timeout", "3"),
            *("--junit", str(reports / "junit.xml"), "--json", str(reports / "results.json")),
            *("--html", str(reports / "report.html")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=_env(),
    )


def _wait_for_verdicts(run: subprocess.Popen[str], count: int) -> tuple[int, list[str]]:
    """How many scenarios the run selected (its header line), and the ids
    of the first `count` it printed a verdict for."""
    assert run.stdout is not None
    lines = _lines(run.stdout)
    selected = 0
    judged: list[str] = []
    while len(judged) < count:
        line = lines.get(timeout=60)
        assert line is not None, "the run ended early"
        header = HEADER_LINE.match(line)
        if header:
            selected = int(header.group(1))
        match = VERDICT_LINE.match(line)
        if match:
            judged.append(match.group(2))
    assert selected > len(judged)
    return selected, judged


def _stop(*children: subprocess.Popen[str] | None) -> None:
    for child in children:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait(timeout=10)


def _check_reports(
    reports: Path, selected: int, judged: list[str], incomplete: str
) -> dict[str, Any]:
    """Every report written, with a row for every selected scenario: those
    judged before the stop as they were, the rest ERROR 'not run (...)'."""
    report = json.loads((reports / "results.json").read_text("utf-8"))
    assert report["exit_code"] == 3
    assert report["incomplete"] and report["incomplete"].startswith(incomplete)
    results = report["results"]
    assert len(results) == selected  # every selected scenario has a row
    ran = [r for r in results if not r["message"].startswith("not run (")]
    assert [r["id"] for r in ran[: len(judged)]] == judged
    assert all(r["verdict"] in ("PASS", "SKIP") for r in ran[: len(judged)])
    not_run = [r for r in results if r["message"].startswith("not run (")]
    assert len(not_run) >= len(results) - len(judged) - 10
    assert all(r["verdict"] == "ERROR" for r in not_run)
    assert all(r["message"] == f"not run ({report['incomplete']})" for r in not_run)
    junit = (reports / "junit.xml").read_text("utf-8")
    page = (reports / "report.html").read_text("utf-8")
    for blob in (junit, page):
        assert judged[0] in blob and not_run[-1]["id"] in blob
    assert junit.count("<error") >= len(not_run)
    assert f"not run ({report['incomplete']})" in junit
    return report


def test_killed_target_exits_3_fast_with_every_report_written(tmp_path):
    root = tmp_path / "mail"
    root.mkdir()
    server, port = _start_reference_server(root, tmp_path)
    reports = tmp_path / "reports"
    run: subprocess.Popen[str] | None = None
    try:
        run = _start_run(root, port, reports, tmp_path)
        selected, judged = _wait_for_verdicts(run, KILL_AFTER_SCENARIOS)
        os.kill(server.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        server.wait(timeout=10)
        code = run.wait(timeout=KILLED_TARGET_EXIT_SECONDS + 30)
        elapsed = time.monotonic() - killed_at
        stderr = run.stderr.read() if run.stderr else ""
    finally:
        _stop(server, run)
    assert code == 3, stderr
    assert elapsed < KILLED_TARGET_EXIT_SECONDS
    assert "Traceback" not in stderr
    report = _check_reports(reports, selected, judged, "target unreachable since ")
    counts = Counter(r["verdict"] for r in report["results"])
    print(f"killed target: exit {code} {elapsed:.2f} s after the kill, {dict(counts)}")  # -s
    since = report["incomplete"].removeprefix("target unreachable since ")
    assert since in [r["id"] for r in report["results"] if not r["message"].startswith("not run")]
    # a scenario whose connection the kill cut keeps its FAIL (a server that
    # dies on a scenario's input looks the same) and says what followed
    for failed in (r for r in report["results"] if r["verdict"] == "FAIL"):
        assert failed["message"].endswith(OUTAGE_NOTE), failed


def test_interrupted_run_exits_3_with_every_report_written(tmp_path, sigint_reaches_children):
    """Ctrl-C (SIGINT) mid-run: an aborted run could not judge the rest."""
    root = tmp_path / "mail"
    root.mkdir()
    server, port = _start_reference_server(root, tmp_path)
    reports = tmp_path / "reports"
    run: subprocess.Popen[str] | None = None
    try:
        run = _start_run(root, port, reports, tmp_path)
        selected, judged = _wait_for_verdicts(run, KILL_AFTER_SCENARIOS)
        run.send_signal(signal.SIGINT)
        code = run.wait(timeout=60)
        stderr = run.stderr.read() if run.stderr else ""
    finally:
        _stop(server, run)
    assert code == 3, stderr
    assert "Traceback" not in stderr
    _check_reports(reports, selected, judged, "interrupted")


# --- mailspec provision / mailspec verify ---------------------------------------------------


def _mailspec(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conformance", *args],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_provision_and_verify_exit_0_on_a_good_store_and_3_on_a_missing_message(tmp_path):
    root = tmp_path / "mail"
    root.mkdir()
    handle = harness.start(None, root)
    try:
        config = tmp_path / "target.yaml"
        config.write_text(
            f"target: {handle.host}:{handle.port}\nprovision: maildir:{root}/{{user}}\n",
            encoding="utf-8",
        )
        provisioned = _mailspec(tmp_path, "provision", "--config", str(config))
        assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
        fixture = load_fixture()
        for role, account in fixture.accounts.items():
            assert f"{role} ({account.user}): provisioned and verified" in provisioned.stdout

        verified = _mailspec(tmp_path, "verify", "--config", str(config))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        main = fixture.accounts["main"]
        assert f"main (msmain): holds the fixture ({main.count} messages)" in verified.stdout
        apop = fixture.accounts["apop"]
        assert apop.count == 1  # the singular is spelt so
        assert f"apop ({apop.user}): holds the fixture (1 message)\n" in verified.stdout

        # a store missing a message: the third of main's is gone
        third = sorted((root / "msmain" / "new").iterdir())[2]
        third.unlink()
        broken = _mailspec(tmp_path, "verify", "--config", str(config))
        assert broken.returncode == 3, broken.stdout + broken.stderr
        problem = [line for line in broken.stderr.splitlines() if line.startswith("main (msmain)")]
        assert len(problem) == 1, broken.stderr
        assert f"message 3 should be {main.messages[2].name}" in problem[0]
        assert "Traceback" not in broken.stderr
        assert "spare1 (msspare1): holds the fixture" in broken.stdout  # the rest still checked

        # `provision` writes it back
        again = _mailspec(tmp_path, "provision", "--config", str(config))
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        handle.close()


def test_provision_without_a_writer_is_a_usage_error(tmp_path):
    root = tmp_path / "mail"
    root.mkdir()
    handle = harness.start(None, root)
    try:
        config = tmp_path / "target.yaml"
        config.write_text(f"target: {handle.host}:{handle.port}\nprovision: none\n", "utf-8")
        result = _mailspec(tmp_path, "provision", "--config", str(config))
    finally:
        handle.close()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "provision: none cannot write mailboxes" in result.stderr
    assert "Traceback" not in result.stderr
