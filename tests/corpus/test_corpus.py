"""The suite proves itself: the corpus passes on the reference server and
every scenario fails against at least one deliberately faulty server."""

from __future__ import annotations

import fnmatch

import harness
import pytest
from faults import FAULTS

from conformance.core.catalogue import load_catalogue
from conformance.core.results import Verdict

# Scenarios the reference server does not pass, on purpose or as known
# deviations reported to its owner (docs/corpus.md). Exact: a fix must
# remove the entry.
REFERENCE_DEVIATIONS: dict[str, Verdict] = {}
# SKIPs on the reference: capabilities it deliberately lacks, slow tier.
REFERENCE_SKIP_OK = [
    "autologout.*",  # slow tier
    "apop.not-offered-refused",  # the reference offers APOP (greeting timestamp)
    # issue 10: need a configuration of their own, run by test_tls_modes.py
    "logindelay.enforced",  # the harness server has no login delay
    "pop3s.*",  # plaintext run; implicit TLS is run there
    "cleartext.*",  # the harness server allows cleartext login
]


@pytest.fixture(scope="session")
def reference_results():
    fast = harness.run_against(None, list(harness.corpus()))
    return fast


@pytest.fixture(scope="session")
def fault_results():
    return harness.fault_results()


def test_lint_ids_unique_and_requirements_known():
    scenarios = harness.corpus()
    ids = [s.id for s in scenarios]
    assert len(ids) == len(set(ids))
    catalogue = load_catalogue()
    for s in scenarios:
        assert s.id == s.id.lower() and "." in s.id, s.id
        for r in s.requirements:
            assert r in catalogue, f"{s.id}: unknown requirement {r}"


def test_rfc1939_fully_covered():
    tagged = {r for s in harness.corpus() for r in s.requirements}
    missing = [
        r.id
        for r in load_catalogue().values()
        if r.rfc in (1939, 1225) and r.testable and r.protocol == "pop3" and r.id not in tagged
    ]
    assert missing == []


def test_reference_passes_everything(reference_results):
    bad = {}
    for sid, result in reference_results.items():
        if result.verdict == Verdict.PASS:
            continue
        if result.verdict == Verdict.SKIP and any(
            fnmatch.fnmatch(sid, p) for p in REFERENCE_SKIP_OK
        ):
            continue
        if REFERENCE_DEVIATIONS.get(sid) == result.verdict:
            continue
        bad[sid] = f"{result.verdict}: {result.message}"
    assert bad == {}
    stale = [sid for sid in REFERENCE_DEVIATIONS if reference_results[sid].verdict == Verdict.PASS]
    assert stale == [], "reference fixed: remove from REFERENCE_DEVIATIONS"


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_is_caught_for_the_intended_reason(fault, fault_results):
    results = fault_results[fault.name]
    assert "__error__" not in results, results.get("__error__")
    hits = [sid for sid in fault.catches if sid in results and harness.caught(results[sid])]
    shown = {sid: f"{r.verdict} {r.message[:160]}" for sid, r in results.items()}
    assert hits, f"{fault.name} ({fault.description}) not caught: {shown}"


def test_every_scenario_seen_failing(fault_results, reference_results):
    seen = {
        sid
        for results in fault_results.values()
        if "__error__" not in results
        for sid, r in results.items()
        if harness.caught(r)
    }
    seen |= {sid for sid in REFERENCE_DEVIATIONS if harness.caught(reference_results[sid])}
    never = sorted({s.id for s in harness.corpus()} - seen)
    assert never == []
