"""Issue 8's corpus faults land where they should: on the intended
requirement, with the intended verdict; and the allowed behaviours of
deployed servers (a close or a farewell after a failed login, long lines
executed whole) pass."""

from __future__ import annotations

import harness
import pytest
from corpus_faults import CONFORMING_VARIANTS, CORPUS_FAULTS
from faults import FAULTS

from conformance.core.results import Verdict

PINNED = [
    (fault, sid, requirement)
    for fault in CORPUS_FAULTS
    for sid, requirement in fault.extra.get("pinned", {}).items()  # type: ignore[union-attr]
]


def test_corpus_faults_are_in_the_fault_list():
    names = {f.name for f in FAULTS}
    assert {f.name for f in CORPUS_FAULTS} <= names
    assert len(names) == len(FAULTS), "two faults share a name"


@pytest.mark.parametrize(
    ("fault", "sid", "requirement"), PINNED, ids=[f"{f.name}-{s}" for f, s, _ in PINNED]
)
def test_failure_is_pinned_on_the_requirement_that_broke(fault, sid, requirement):
    result = harness.fault_results()[fault.name][sid]
    assert harness.caught(result), f"{result.verdict}: {result.message}"
    decisive = [f for f in result.failures if f.level == "MUST"] or result.failures
    assert decisive[0].requirement == requirement, decisive[0].one_line()


@pytest.mark.parametrize(
    "fault", [f for f in CORPUS_FAULTS if "verdict" in f.extra], ids=lambda f: f.name
)
def test_silence_is_a_failure_at_any_level(fault):
    for sid in fault.catches:
        result = harness.fault_results()[fault.name][sid]
        assert result.verdict == Verdict(fault.extra["verdict"]), result.message


@pytest.mark.parametrize("variant", CONFORMING_VARIANTS, ids=lambda f: f.name)
def test_allowed_behaviour_passes(variant):
    results = harness.run_against(variant, harness.select(variant.select))
    assert results
    bad = {
        sid: f"{r.verdict}: {r.message}"
        for sid, r in results.items()
        if r.verdict not in (Verdict.PASS, Verdict.SKIP)
    }
    assert bad == {}
    skipped = [sid for sid, r in results.items() if r.verdict is Verdict.SKIP]
    assert len(skipped) <= 2, skipped  # apop.not-offered-refused, authcode.unknown-user at most
