"""INFO measurements against planted faults of the reference server, and
the promise that they are facts only: the same scenarios against the same
servers give the same verdicts with and without them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from faults import FAULTS
from harness import READ_TIMEOUT, run_against, select, start
from security_faults import CRASH_LINE_OCTETS

from conformance.core.config import RunConfig
from conformance.core.fixture import load_fixture
from conformance.core.results import MeasurementOutcome
from conformance.pop3.measurements import LINE_REFUSAL, LONGEST_LINE, measure
from reference_server.pop3.protocol import MAX_COMMAND_LINE_OCTETS

BY_NAME = {f.name: f for f in FAULTS}


def test_a_server_that_crashes_on_long_lines_is_measured_where_it_crashes() -> None:
    # SilentOnLongLine dies on a line of more than CRASH_LINE_OCTETS before its LF
    with tempfile.TemporaryDirectory(prefix="mailspec-measure-") as tmp:
        handle = start(BY_NAME["crash-on-long-line"], Path(tmp))
        try:
            config = RunConfig(host=handle.host, port=handle.port, read_timeout=READ_TIMEOUT)
            found = {
                m.id: m
                for m in measure(handle.host, handle.port, config, load_fixture().account("main"))
            }
        finally:
            handle.close()
    longest = found[LONGEST_LINE]
    assert longest.outcome is MeasurementOutcome.MEASURED
    assert longest.value == CRASH_LINE_OCTETS + 1  # CR and LF: the LF is not "before its LF"
    # and the length refusal of the reference code underneath still shows
    assert found[LINE_REFUSAL].value == MAX_COMMAND_LINE_OCTETS + 1


def verdicts(fault_name: str | None, *, measure: bool) -> dict[str, str]:
    fault = BY_NAME[fault_name] if fault_name else None
    scenarios = select(fault.select if fault else ["security.long-*", "stat.*", "auth.*"])
    results = run_against(fault, scenarios, measure=measure)
    return {
        sid: f"{r.verdict} " + " ".join(f"step {f.step} {f.requirement}" for f in r.failures)
        for sid, r in results.items()
    }


@pytest.mark.parametrize(
    "fault_name",
    [None, "crash-on-long-line", "refusal-names-the-cause", "garbage-crashes"],
)
def test_measurements_change_no_verdict(fault_name: str | None) -> None:
    with_them = verdicts(fault_name, measure=True)
    assert with_them == verdicts(fault_name, measure=False)
    assert with_them
    if fault_name is not None:  # the fault is caught either way: FAIL/WARN compared too
        assert any(not v.startswith("PASS") for v in with_them.values())
