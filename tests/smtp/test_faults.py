"""The SMTP corpus proves itself: against the reference SMTP server every
scenario passes (SKIPs only for capabilities a run lacks), and each
deliberately faulty server is caught by the scenarios that name it, with
the verdict and on the requirement they name; every SMTP scenario is seen
failing against at least one faulty server."""

from __future__ import annotations

import pytest
import smtp_harness as harness
from smtp_faults import CONFORMING, FAULTS

from conformance.core.results import Verdict

CASES = [(fault, sid) for fault in FAULTS for sid in fault.catches]
FAULTS_BY_NAME = {fault.name: fault for fault in FAULTS}


@pytest.fixture(scope="module")
def reference_results():
    return harness.run_against(None, harness.quick_corpus())


def test_the_corpus_has_sixty_scenarios_or_more():
    assert len(harness.corpus()) >= 60


def test_at_least_thirty_faults_with_unique_names():
    names = [f.name for f in FAULTS]
    assert len(names) >= 30
    assert len(set(names)) == len(names), "two faults share a name"


#: Scenarios whose subject the reference does not have: they SKIP, saying so.
NOT_APPLICABLE_TO_REFERENCE = {
    "smtp.greeting.refused-session": "greeted 220",  # no 554 unless --refuse-sessions
    "smtp.size.limit-advertised": "SIZE is offered",  # for servers without SIZE
    "smtp.policy.required-tls-or-auth-530": "demands neither TLS nor AUTH",
}


def test_reference_passes_everything(reference_results):
    bad = {
        sid: f"{r.verdict}: {r.message}"
        for sid, r in reference_results.items()
        if r.verdict is not Verdict.PASS
        and not (
            r.verdict is Verdict.SKIP and NOT_APPLICABLE_TO_REFERENCE.get(sid, "\0") in r.message
        )
    }
    assert bad == {}


def test_reference_without_tls_skips_only_for_capabilities():
    results = harness.run_against(None, harness.quick_corpus(), tls="plain")
    bad = {
        sid: f"{r.verdict}: {r.message}"
        for sid, r in results.items()
        if r.verdict is not Verdict.PASS
        and not (r.verdict is Verdict.SKIP and "not advertised by EHLO" in r.message)
        and not (
            r.verdict is Verdict.SKIP and NOT_APPLICABLE_TO_REFERENCE.get(sid, "\0") in r.message
        )
    }
    assert bad == {}
    # only the scenarios that need STARTTLS (and AUTH, offered inside TLS only)
    skipped = {
        sid
        for sid, r in results.items()
        if r.verdict is Verdict.SKIP and sid not in NOT_APPLICABLE_TO_REFERENCE
    }
    tls_only = {s.id for s in harness.corpus() if {"STARTTLS", "AUTH"} & set(s.needs)}
    assert skipped <= tls_only


@pytest.mark.parametrize(("fault", "sid"), CASES, ids=[f"{f.name}-{s}" for f, s in CASES])
def test_fault_is_caught_for_its_reason(fault, sid):
    results = harness.fault_results()[fault.name]
    assert "__error__" not in results, results.get("__error__")
    result = results[sid]
    requirement, verdict = fault.catches[sid]
    assert result.verdict is Verdict(verdict), f"{result.verdict}: {result.message}"
    if requirement is not None:
        decisive = [f for f in result.failures if f.level == "MUST"] or result.failures
        assert decisive[0].requirement == requirement, decisive[0].one_line()


def test_every_smtp_scenario_seen_failing():
    seen = {
        sid
        for results in harness.fault_results().values()
        for sid, result in results.items()
        if sid != "__error__" and harness.caught(result)
    }
    never = sorted({s.id for s in harness.corpus()} - seen)
    # what the faults meant to catch them got instead (verdict, message, or the run's error)
    got = {
        sid: [
            f"{name}: "
            + (f"{r[sid].verdict} {r[sid].message}" if sid in r else repr(r.get("__error__")))
            for name, r in harness.fault_results().items()
            if sid in r or ("__error__" in r and sid in FAULTS_BY_NAME[name].catches)
        ]
        for sid in never
    }
    assert never == [], got


@pytest.mark.parametrize("variant", CONFORMING, ids=lambda f: f.name)
def test_allowed_behaviour_never_fails(variant):
    results = harness.run_against(variant, harness.select(variant.select))
    assert results
    bad = {
        sid: f"{r.verdict}: {r.message}"
        for sid, r in results.items()
        if r.verdict in (Verdict.FAIL, Verdict.ERROR)
    }
    assert bad == {}
    for sid, (_, verdict) in variant.catches.items():
        assert results[sid].verdict is Verdict(verdict), f"{sid}: {results[sid].message}"
