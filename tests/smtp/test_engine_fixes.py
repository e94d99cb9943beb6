"""Engine behaviours the SMTP corpus needed, each pinned on a faulty or
conforming server (tests/smtp/smtp_faults.py)."""

from __future__ import annotations

import smtp_faults as faults
import smtp_harness as harness

from conformance.core.results import Verdict


def _one(fault, sid, *, tls="stls"):
    return harness.run_against(fault, harness.select([sid]), tls=tls)[sid]


def _fault(name):
    return next(f for f in [*faults.FAULTS, *faults.CONFORMING] if f.name == name)


def test_target_answering_ehlo_wrongly_is_judged_not_unreachable():
    # the seed's "220 to everything": the probe learns no extensions, and the
    # scenarios still run and fail at MAIL (not an ERROR of the whole run)
    result = _one(_fault("always-220"), "seed.smtp-session-as-written", tls="plain")
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].requirement == "SMTP-5321-MAIL-01"


def test_delivered_after_expect_close_is_checked():
    result = _one(_fault("quit-delivers-transaction"), "smtp.quit.aborts-transaction")
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].kind == "delivery"


def test_close_after_a_refusal_the_step_allows_is_the_allowed_branch():
    result = _one(_fault("bare-lf-refused-and-closed"), "smtp.security.smuggling-cr-dot-cr")
    assert result.verdict is Verdict.PASS, result.message
    assert any(b"closed as the refusal before" in e.data for e in result.transcript)


def test_a_close_without_a_refusal_before_still_fails():
    result = _one(_fault("unknown-command-closes"), "smtp.syntax.unknown-command-keeps-session")
    assert result.verdict is Verdict.FAIL


def test_extra_reply_is_pinned_on_the_step_requirement_at_the_scenario_level():
    result = _one(_fault("lf-dot-lf-ends-data"), "smtp.security.smuggling-crlf-dot-lf")
    assert result.verdict is Verdict.WARN  # a SHOULD scenario (smtpsmug #8)
    assert result.failures[0].requirement == "SMTP-5321-LINE-01"
    result = _one(_fault("lf-dot-lf-ends-data"), "smtp.security.smuggling-lf-dot-lf")
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].requirement == "SMTP-5321-DATA-04"


def test_needs_sees_the_plaintext_keywords_under_stls():
    # the probe reports the EHLO list inside TLS (no STARTTLS there), yet a
    # scenario that speaks STARTTLS itself runs
    result = _one(None, "smtp.starttls.session-reset")
    assert result.verdict is Verdict.PASS, result.message


def test_no_reply_is_owed_to_commands_pipelined_behind_starttls():
    result = _one(None, "smtp.security.starttls-injection-noop")
    assert result.verdict is Verdict.PASS, result.message
    result = _one(_fault("starttls-injection"), "smtp.security.starttls-injection-noop")
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].requirement == "SMTP-3207-TLS-12"


def test_starts_with_compares_the_first_stored_lines():
    assert _one(None, "smtp.data.first-line-dot-unstuffed").verdict is Verdict.PASS
    result = _one(_fault("first-line-not-unstuffed"), "smtp.data.first-line-dot-unstuffed")
    assert result.verdict is Verdict.FAIL
    assert "..X-Mailspec" in result.failures[0].actual


def test_missing_trace_fields_are_pinned_on_trace_01():
    # the seed's conformant session lists GREET-01 first and its delivery
    # check names DATA-03; a missing Received: is still a TRACE-01 finding
    result = _one(_fault("no-trace-fields"), "seed.smtp-session-conformant")
    assert result.verdict is Verdict.FAIL
    assert {f.requirement for f in result.failures} == {"SMTP-5321-TRACE-01"}
