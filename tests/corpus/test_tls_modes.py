"""The whole corpus runs unchanged over TLS (issue 10): against the reference
server, `--tls stls` and `--tls implicit` give every scenario the verdict it
gets in plaintext. Under implicit TLS the scenarios that need a plaintext
session (STLS's own) SKIP, naming why."""

from __future__ import annotations

from functools import cache

import harness
import pytest
import test_corpus
from faults import Fault

from conformance.core.results import ScenarioResult, Verdict
from conformance.core.scenario import OpenStep


@cache
def run(tls: str) -> dict[str, ScenarioResult]:
    return harness.run_against(None, list(harness.corpus()), tls=tls)


def needs_plaintext(scenario_id: str) -> bool:
    scenario = next(s for s in harness.corpus() if s.id == scenario_id)
    return any(isinstance(step, OpenStep) and step.plaintext for step in scenario.steps)


@pytest.mark.parametrize("tls", ["stls", "implicit"])
def test_corpus_verdicts_over_tls_match_plaintext(tls: str) -> None:
    plain, secured = run("plain"), run(tls)
    assert set(plain) == set(secured)
    differences = {}
    for sid, result in secured.items():
        expected = plain[sid].verdict
        if tls == "implicit" and needs_plaintext(sid):
            expected = Verdict.SKIP
        if plain[sid].verdict is Verdict.WARN and sid in test_corpus.REFERENCE_DEVIATIONS:
            expected = Verdict.WARN
        if tls == "implicit" and sid.startswith("pop3s."):
            expected = Verdict.PASS  # skipped in plaintext: needs IMPLICIT-TLS
        if result.verdict is not expected:
            differences[sid] = (
                f"{plain[sid].verdict} in plaintext, {result.verdict}: {result.message}"
            )
    assert differences == {}


def test_stls_scenarios_run_under_plain_and_stls_and_skip_under_implicit() -> None:
    stls_ids = [s.id for s in harness.corpus() if s.id.startswith("stls.")]
    assert stls_ids
    for tls in ("plain", "stls"):
        assert {run(tls)[sid].verdict for sid in stls_ids} == {Verdict.PASS}, tls
    implicit = run("implicit")
    for sid in stls_ids:
        assert implicit[sid].verdict is Verdict.SKIP
        assert "implicit TLS" in implicit[sid].message


def test_configurations_of_their_own_pass_on_the_reference() -> None:
    """The scenarios the plaintext reference run SKIPs pass where the
    reference server is configured for them."""
    cases = [
        (Fault("login-delay", "", ["logindelay.enforced"], [], extra={"login_delay": 2}), "plain"),
        (Fault("require-tls", "", ["cleartext.*"], [], extra={"require_tls": True}), "stls"),
    ]
    for fault, tls in cases:
        results = harness.run_against(fault, harness.select(fault.select), tls=tls)
        verdicts = {sid: (r.verdict, r.message) for sid, r in results.items()}
        assert {v for v, _ in verdicts.values()} == {Verdict.PASS}, verdicts
    assert run("implicit")["pop3s.authorization-after-handshake"].verdict is Verdict.PASS


def test_sessions_are_tls_protected_before_any_login() -> None:
    """Under stls every scenario session's first client line is STLS (or the
    scenario speaks STLS itself); no PASS ever goes out before TLS."""
    for sid, result in run("stls").items():
        if needs_plaintext(sid):
            continue
        tls_on: dict[str, bool] = {}
        for entry in result.transcript:
            text = entry.data.decode("latin-1")
            if entry.direction.value == "*" and text.startswith("TLS established"):
                tls_on[entry.session] = True
            if entry.direction.value == "C" and text.upper().startswith(("PASS", "APOP")):
                assert tls_on.get(entry.session), f"{sid}: {text.strip()} before TLS"
