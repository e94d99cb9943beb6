"""JUnit XML, written with the `junit-xml` package (docs/cli.md, "JUnit").

* one <testsuite> per scenario section (e.g. "RFC 1939 §5 STAT");
* <testcase name=SCENARIO-ID classname=SECTION>;
* FAIL -> <failure>, XPASS -> <failure> ("xpass: …"), ERROR -> <error>,
  SKIP -> <skipped>, XFAIL -> <skipped message="xfail: REASON">,
  WARN -> a passing testcase whose <system-err> says "WARN: …" (a SHOULD/MAY
  deviation must not fail a CI job unless --strict, which makes it a FAIL);
* the transcript, printable and escaped, in the <system-out> of every
  testcase that did not pass or skip (passing ones name the scenario only:
  their transcript is in the JSON and HTML reports);
* junit-xml 1.9 has no per-testcase properties (and the Jenkins schema
  allows none), so requirement IDs and level are testsuite properties named
  `SCENARIO-ID.requirements` / `SCENARIO-ID.level`, and are repeated in the
  first lines of <system-out>; a testcase that did not pass adds
  `SCENARIO-ID.requirement`, the requirement it is reported against (the
  failure's own, else the scenario's first), which also opens the
  <failure>/<error> message as `[ID LEVEL]`;
* an interrupted run adds the property `mailspec.incomplete` (why);
* the INFO measurements are a testsuite of their own, `mailspec INFO
  measurements`, with no testcases (so nothing to fail or count): one
  property per measurement, `info.…` = its one-line summary, and
  `info.….value` / `info.….unit` / `info.….outcome`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from junit_xml import TestCase, TestSuite, to_xml_report_string

from conformance.reports.text import (
    broken_level,
    broken_requirement,
    explain,
    transcript_text,
)
from conformance.core.results import RunResult, ScenarioResult, Verdict


# Passing and skipped testcases carry no transcript: JUnit viewers load every
# <system-out> of a report, and the JSON and HTML reports keep it anyway.
QUIET_VERDICTS = frozenset({Verdict.PASS, Verdict.SKIP})
QUIET_NOTE = "(transcript: see the JSON or HTML report)"


def _testcase(r: ScenarioResult) -> TestCase:
    header = [
        f"{r.scenario_id}: {r.title}",
        f"level: {r.level}",
        f"requirements: {' '.join(r.requirements)}",
        f"verdict: {r.verdict.value}",
    ]
    if r.source:
        header.append(f"source: {r.source}")
    if r.verdict in QUIET_VERDICTS:
        stdout = "\n".join(header) + "\n" + QUIET_NOTE
    else:
        stdout = "\n".join(header) + "\n\ntranscript:\n" + transcript_text(r.transcript)
    details = "\n".join(explain(r))
    tc = TestCase(
        name=r.scenario_id,
        classname=r.section,
        elapsed_sec=r.duration,
        stdout=stdout,
        file=r.source.rsplit(":", 1)[0] if r.source else None,
    )
    v = r.verdict
    broken = broken_requirement(r)
    tag = f"[{broken} {broken_level(r)}] " if broken else ""
    if v is Verdict.FAIL:
        tc.add_failure_info(
            message=f"{tag}{r.message or 'FAIL'}", output=details, failure_type="FAIL"
        )
    elif v is Verdict.XPASS:
        tc.add_failure_info(
            message=f"xpass: {r.expectation_reason or ''}".strip(),
            output=details,
            failure_type="XPASS",
        )
    elif v is Verdict.ERROR:
        tc.add_error_info(
            message=f"{tag}{r.message or 'ERROR'}", output=details, error_type="ERROR"
        )
    elif v is Verdict.SKIP:
        tc.add_skipped_info(message=r.message or "skipped")
    elif v is Verdict.XFAIL:
        tc.add_skipped_info(message=f"xfail: {r.expectation_reason or ''}", output=details)
    elif v is Verdict.WARN:
        tc.stderr = "WARN: SHOULD/MAY-level deviation (passes unless --strict)\n" + details
    return tc


def junit_suites(run: RunResult) -> list[TestSuite]:
    sections: dict[str, list[ScenarioResult]] = {}
    for r in run.results:
        sections.setdefault(r.section, []).append(r)
    suites = []
    for index, (section, results) in enumerate(sections.items()):
        props: dict[str, str] = {
            "mailspec.version": run.tool_version,
            "target": run.target.address,
            "strict": str(run.strict).lower(),
        }
        if run.incomplete:
            props["mailspec.incomplete"] = run.incomplete
        for r in results:
            props[f"{r.scenario_id}.requirements"] = " ".join(r.requirements)
            props[f"{r.scenario_id}.level"] = r.level
            broken = broken_requirement(r)
            if broken and r.verdict not in QUIET_VERDICTS:
                props[f"{r.scenario_id}.requirement"] = broken
        suites.append(
            TestSuite(
                name=section,
                test_cases=[_testcase(r) for r in results],
                id=index,
                package="mailspec",
                timestamp=run.started_at,
                hostname=run.target.address,
                properties=props,
            )
        )
    return suites


MEASUREMENTS_SUITE = "mailspec INFO measurements"


def measurements_suite(run: RunResult, index: int) -> TestSuite:
    """The INFO results as properties of a testsuite without testcases."""
    props: dict[str, str] = {"mailspec.version": run.tool_version, "target": run.target.address}
    for m in run.measurements:
        props[m.id] = m.summary()
        props[f"{m.id}.value"] = "" if m.value is None else f"{m.value:g}"
        props[f"{m.id}.unit"] = m.unit
        props[f"{m.id}.outcome"] = m.outcome.value
    return TestSuite(
        name=MEASUREMENTS_SUITE,
        test_cases=[],
        id=index,
        package="mailspec",
        timestamp=run.started_at,
        hostname=run.target.address,
        properties=props,
    )


def junit_xml_string(run: RunResult) -> str:
    """The report as text. junit-xml writes `type="skipped"` on <skipped>,
    which the Jenkins schema does not allow; that attribute is dropped."""
    suites = junit_suites(run)
    if run.measurements:
        suites.append(measurements_suite(run, len(suites)))
    text = to_xml_report_string(suites, prettyprint=False, encoding="utf-8")
    root = ET.fromstring(text.encode("utf-8"))
    for skipped in root.iter("skipped"):
        skipped.attrib.pop("type", None)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=False) + "\n"


def write_junit(run: RunResult, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n' + junit_xml_string(run), "utf-8")
