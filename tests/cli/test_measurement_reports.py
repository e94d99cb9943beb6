"""INFO measurements in every report: the JSON report (and its schema), the
JUnit report (a testsuite without testcases), the console summary and the
HTML target card; never in the exit code; `--no-measure` turns them off."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import xmlschema
from cli_testlib import REPO, make_result, make_run

from conformance.cli import build_config, build_parser, write_html_report
from conformance.core.results import Measurement, MeasurementOutcome, RunResult, Verdict
from conformance.reports import junit_xml_string, load_results, results_to_dict, write_json
from conformance.reports.console import Console
from conformance.reports.junit import MEASUREMENTS_SUITE

SCHEMA = json.loads((REPO / "docs" / "results.schema.json").read_text("utf-8"))
XSD = Path(__file__).with_name("junit.xsd")


def sample_measurements() -> list[Measurement]:
    def one(mid: str, unit: str, outcome: MeasurementOutcome, value: float | None, note: str = ""):
        return Measurement(
            id=mid,
            title=f"title of {mid}",
            unit=unit,
            method=f"how {mid} was measured",
            bounds={"min": 1, "max": 50},
            outcome=outcome,
            value=value,
            note=note,
        )

    return [
        one("info.longest-command-line", "octets", MeasurementOutcome.MEASURED, 1001),
        one("info.line-length-refusal", "octets", MeasurementOutcome.BELOW, 64, "closed"),
        one("info.bad-command-limit", "commands", MeasurementOutcome.AT_LEAST, 50),
        dataclasses.replace(
            one("info.failed-login-delay", "seconds", MeasurementOutcome.MEASURED, 2.004),
            samples=[2.004, 2.001, 2.01],
        ),
    ]


def measured_run(results: list | None = None) -> RunResult:
    run = make_run(results)
    run.measurements = sample_measurements()
    return run


def test_summaries_say_the_value_the_unit_and_the_bound() -> None:
    summaries = [m.summary() for m in sample_measurements()]
    assert summaries == [
        "1001 octets",
        "less than 64 octets (the lower bound); closed",
        "50 commands or more (the upper bound)",
        "2.004 seconds",
    ]
    nothing = dataclasses.replace(
        sample_measurements()[0],
        outcome=MeasurementOutcome.NOT_MEASURED,
        value=None,
        note="--no-measure",
    )
    assert nothing.summary() == "not measured: --no-measure"


def test_json_report_carries_measurements_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_json(measured_run(), path)
    data = json.loads(path.read_text("utf-8"))
    jsonschema.validate(data, SCHEMA)
    first = data["measurements"][0]
    assert first == {
        "id": "info.longest-command-line",
        "title": "title of info.longest-command-line",
        "outcome": "measured",
        "value": 1001,
        "unit": "octets",
        "summary": "1001 octets",
        "method": "how info.longest-command-line was measured",
        "bounds": {"min": 1, "max": 50},
        "note": "",
        "samples": [],
    }
    assert load_results(path).measurements == measured_run().measurements  # round trip


@pytest.mark.parametrize(
    "change",
    [
        {"outcome": "not-measured"},  # a number although not measured
        {"value": None},  # measured, but no number
        {"outcome": "not-measured", "value": None, "note": ""},  # not measured, no reason
        {"id": "longest-command-line"},  # ids are info.*
        {"unit": "furlongs"},
        {"outcome": "guessed"},
    ],
)
def test_the_schema_rejects_a_measurement_that_is_not_a_fact(change: dict) -> None:
    data = results_to_dict(measured_run())
    data["measurements"][0].update(change)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def test_the_schema_requires_the_measurements_list() -> None:
    data = results_to_dict(make_run())
    jsonschema.validate(copy.deepcopy(data), SCHEMA)
    del data["measurements"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def test_junit_has_a_measurement_suite_without_testcases(tmp_path: Path) -> None:
    xml = junit_xml_string(measured_run())
    path = tmp_path / "junit.xml"
    path.write_text(xml, "utf-8")
    xmlschema.XMLSchema(str(XSD)).validate(str(path))
    suites = {s.get("name"): s for s in ET.fromstring(xml.encode()).iter("testsuite")}
    info = suites[MEASUREMENTS_SUITE]
    assert info.find("testcase") is None
    assert (info.get("tests"), info.get("failures"), info.get("errors")) == ("0", "0", "0")
    props = {p.get("name"): p.get("value") for p in info.iter("property")}
    assert props["info.bad-command-limit"] == "50 commands or more (the upper bound)"
    assert props["info.bad-command-limit.value"] == "50"
    assert props["info.bad-command-limit.outcome"] == "at-least"
    assert props["info.failed-login-delay.unit"] == "seconds"
    # without measurements (an interrupted run) there is no such suite
    assert MEASUREMENTS_SUITE not in junit_xml_string(make_run())


def test_console_summary_lists_each_measurement() -> None:
    out = io.StringIO()
    Console(out, io.StringIO(), color=False).summary(measured_run())
    text = out.getvalue()
    assert "INFO info.longest-command-line: 1001 octets" in text
    assert "INFO info.failed-login-delay: 2.004 seconds" in text
    # before the verdict counts, after the target's facts
    assert text.index("capabilities:") < text.index("INFO info.") < text.index(" passed, ")


def test_html_target_card_shows_the_measurements(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    write_html_report(measured_run(), path)
    page = path.read_text("utf-8")
    card = page[page.index('<div class="cards">') : page.index('<div class="controls">')]
    assert "info.bad-command-limit" in card
    assert "50 commands or more (the upper bound)" in card
    assert "how info.failed-login-delay was measured" in card  # the method, as a tooltip


def test_matrix_from_json_files_shows_each_targets_measurements(tmp_path: Path) -> None:
    from conformance.reports import matrix

    path = tmp_path / "results-x.json"
    write_json(measured_run(), path)
    target, _rows = matrix.load_target(str(path))
    assert [m["id"] for m in target.measurements][:1] == ["info.longest-command-line"]


@pytest.mark.parametrize(
    "verdicts", [[Verdict.PASS], [Verdict.PASS, Verdict.FAIL], [Verdict.ERROR], [Verdict.WARN]]
)
def test_measurements_never_change_the_exit_code(verdicts: list[Verdict]) -> None:
    results = [make_result(f"stat.r{i}", v) for i, v in enumerate(verdicts)]
    plain = make_run(results)
    facts = measured_run(results)
    facts.measurements += [
        dataclasses.replace(
            facts.measurements[0], outcome=MeasurementOutcome.NOT_MEASURED, value=None, note="x"
        )
    ]
    assert facts.exit_code == plain.exit_code
    assert results_to_dict(facts)["exit_code"] == plain.exit_code
    assert results_to_dict(facts)["counts"] == results_to_dict(plain)["counts"]


def test_no_measure_flag_turns_measuring_off() -> None:
    parser = build_parser()
    assert build_config(parser.parse_args(["run"])).measure is True
    assert build_config(parser.parse_args(["run", "--no-measure"])).measure is False


def test_embedded_run_reports_measured_values_and_no_measure_reports_why(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    def run(*extra: str) -> dict:
        out = tmp_path / f"r{len(extra)}.json"
        done = subprocess.run(
            [sys.executable, "-m", "conformance", "run", "--select", "stat.excludes-deleted",
             "--json", str(out), "--junit", str(tmp_path / "j.xml"),
             "--html", str(tmp_path / "r.html"), *extra],
            cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "INFO info.bad-command-limit:" in done.stdout
        data = json.loads(out.read_text("utf-8"))
        jsonschema.validate(data, SCHEMA)
        return {m["id"]: m for m in data["measurements"]}

    facts = run()
    # the embedded reference server's defaults (reference_server/pop3/protocol.py)
    assert facts["info.bad-command-limit"]["value"] == 20
    assert facts["info.line-length-refusal"]["value"] == 256
    assert facts["info.longest-command-line"]["outcome"] == "at-least"
    assert facts["info.failed-login-delay"]["outcome"] == "measured"
    assert facts["info.failed-login-delay"]["value"] < 0.5
    skipped = run("--no-measure")
    assert {m["outcome"] for m in skipped.values()} == {"not-measured"}
    assert {m["note"] for m in skipped.values()} == {"--no-measure"}
