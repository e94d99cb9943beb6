"""JUnit and JSON reports: verdict mapping, schema validity, no secrets."""

from __future__ import annotations

import base64
import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import xmlschema
from cli_testlib import REPO, SECRET, make_result, make_run

from conformance.core.results import Direction, TranscriptEntry, Verdict
from conformance.reports import (
    junit_xml_string,
    load_results,
    results_to_dict,
    write_json,
    write_junit,
)
from conformance.reports.redact import scrub_run

XSD = Path(__file__).with_name("junit.xsd")
SCHEMA = json.loads((REPO / "docs" / "results.schema.json").read_text("utf-8"))


def _cases(xml: str) -> dict[str, ET.Element]:
    root = ET.fromstring(xml.encode("utf-8"))
    return {tc.get("name"): tc for tc in root.iter("testcase")}


def test_junit_validates_against_the_jenkins_style_xsd(tmp_path: Path) -> None:
    path = tmp_path / "out" / "junit.xml"
    write_junit(make_run(), path)
    xmlschema.XMLSchema(str(XSD)).validate(str(path))


def test_xsd_rejects_a_malformed_report() -> None:
    bad = "<testsuites><testsuite><testcase name='x'/></testsuite></testsuites>"  # no name/tests
    assert not xmlschema.XMLSchema(str(XSD)).is_valid(bad)


def test_junit_verdict_mapping() -> None:
    cases = _cases(junit_xml_string(make_run()))
    assert cases["stat.fail"].find("failure") is not None
    assert cases["stat.fail"].find("error") is None
    assert cases["top.error"].find("error") is not None
    assert cases["top.skip"].find("skipped").get("message") == "target lacks TOP"
    assert cases["top.xfail"].find("skipped").get("message") == "xfail: bug 42"
    assert cases["top.xpass"].find("failure").get("message").startswith("xpass")
    warn = cases["stat.warn"]
    assert warn.find("failure") is None and warn.find("skipped") is None
    assert "WARN" in warn.find("system-err").text
    passed = cases["stat.pass"]
    assert [c.tag for c in passed] == ["system-out"]


def test_junit_one_suite_per_section_with_requirement_properties() -> None:
    root = ET.fromstring(junit_xml_string(make_run()).encode())
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"RFC 1939 §5 STAT", "RFC 1939 §7 TOP"}
    props = {p.get("name"): p.get("value") for p in suites["RFC 1939 §5 STAT"].iter("property")}
    assert props["stat.fail.requirements"] == "POP3-1939-STAT-01"
    assert props["stat.warn.level"] == "SHOULD"
    assert suites["RFC 1939 §5 STAT"].get("failures") == "1"


def test_junit_failure_text_explains_with_catalogue_and_escaped_transcript() -> None:
    fail = _cases(junit_xml_string(make_run()))["stat.fail"]
    text = fail.find("failure").text
    assert "POP3-1939-STAT-01 (MUST, RFC 1939 §5)" in text
    assert "step 4: S: +OK {count} {size:int}" in text
    assert "expected: +OK 2 320" in text
    out = fail.find("system-out").text
    assert "a S: +OK 2 320\\x00junk\\r\\n" in out  # NUL escaped, not raw
    assert "requirements: POP3-1939-STAT-01" in out


def test_json_report_validates_and_keeps_exact_bytes(tmp_path: Path) -> None:
    path = tmp_path / "r" / "results.json"
    write_json(make_run(), path)
    data = json.loads(path.read_text("utf-8"))
    jsonschema.validate(data, SCHEMA)
    entry = data["results"][1]["transcript"][3]
    assert base64.b64decode(entry["base64"]) == b"+OK 2 320\x00junk\r\n"
    assert entry["text"] == "+OK 2 320\\x00junk\\r\\n"
    # the sample run holds an ERROR: the suite could not judge everything
    assert data["counts"]["XPASS"] == 1 and data["exit_code"] == 3
    assert data["incomplete"] is None
    assert data["target"]["greeting"].startswith("+OK")


def test_json_schema_rejects_unknown_verdict() -> None:
    data = results_to_dict(make_run())
    data["results"][0]["verdict"] = "MAYBE"
    try:
        jsonschema.validate(data, SCHEMA)
    except jsonschema.ValidationError:
        return
    raise AssertionError("schema accepted verdict MAYBE")


def test_json_round_trip(tmp_path: Path) -> None:
    run = make_run()
    write_json(run, tmp_path / "x.json")
    back = load_results(tmp_path / "x.json")
    assert [r.verdict for r in back.results] == [r.verdict for r in run.results]
    assert back.results[1].failures == run.results[1].failures
    assert back.results[1].transcript == run.results[1].transcript


def test_event_notes_carry_their_text_alone_and_wire_entries_their_exact_bytes(
    tmp_path: Path,
) -> None:
    run = make_run()
    run.results[1].transcript.append(
        TranscriptEntry(0.04, "*", Direction.EVENT, "note: ünïcode kept".encode())
    )
    write_json(run, tmp_path / "x.json")
    data = json.loads((tmp_path / "x.json").read_text("utf-8"))
    jsonschema.validate(data, SCHEMA)
    entries = data["results"][1]["transcript"]
    assert entries[0] == {
        "at": 0.0,
        "session": "a",
        "direction": "*",
        "text": "connect 127.0.0.1:110",
    }
    assert entries[-1]["text"] == "note: ünïcode kept" and "base64" not in entries[-1]
    assert all("base64" in e for e in entries if e["direction"] != "*")
    assert load_results(tmp_path / "x.json").results[1].transcript == run.results[1].transcript
    # the schema holds both rules: a wire entry without its bytes, a note with base64
    wire = next(e for e in entries if e["direction"] == "S")
    del wire["base64"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)
    wire["base64"] = base64.b64encode(b"+OK\r\n").decode()
    entries[0]["base64"] = base64.b64encode(b"connect 127.0.0.1:110").decode()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def test_a_format_version_1_report_still_loads(tmp_path: Path) -> None:
    run = make_run()
    data = results_to_dict(run)
    data["format_version"] = 1  # version 1 gave event notes a base64 of their text too
    for r in data["results"]:
        for e in r["transcript"]:
            e.setdefault("base64", base64.b64encode(e["text"].encode()).decode())
    (tmp_path / "v1.json").write_text(json.dumps(data), "utf-8")
    back = load_results(tmp_path / "v1.json")
    assert [r.transcript for r in back.results] == [r.transcript for r in run.results]


def test_an_unknown_format_version_is_refused_by_name(tmp_path: Path) -> None:
    data = results_to_dict(make_run())
    data["format_version"] = 99
    (tmp_path / "v99.json").write_text(json.dumps(data), "utf-8")
    with pytest.raises(ValueError, match="format_version 99 is not one this mailspec reads"):
        load_results(tmp_path / "v99.json")


def test_json_keeps_the_step_of_each_entry_and_the_schema_accepts_it(tmp_path: Path) -> None:
    run = make_run()
    transcript = run.results[1].transcript
    transcript[:] = [dataclasses.replace(e, step=i + 1) for i, e in enumerate(transcript)]
    write_json(run, tmp_path / "x.json")
    data = json.loads((tmp_path / "x.json").read_text("utf-8"))
    jsonschema.validate(data, SCHEMA)
    assert [e["step"] for e in data["results"][1]["transcript"]] == list(
        range(1, len(transcript) + 1)
    )
    assert "step" not in data["results"][0]["transcript"][0]  # no step: no key
    assert load_results(tmp_path / "x.json").results[1].transcript == transcript
    data["results"][1]["transcript"][0]["step"] = 0  # steps count from 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def test_scrub_removes_echoed_password_everywhere(tmp_path: Path) -> None:
    leaky = make_result(
        "auth.echo",
        Verdict.FAIL,
        message=f"got -ERR bad password {SECRET}",
        transcript=[TranscriptEntry(0.0, "a", Direction.SERVER, f"-ERR {SECRET}\r\n".encode())],
    )
    run = make_run([leaky])
    scrub_run(run, [SECRET])
    write_json(run, tmp_path / "r.json")
    write_junit(run, tmp_path / "j.xml")
    for name in ("r.json", "j.xml"):
        text = (tmp_path / name).read_text("utf-8")
        assert SECRET not in text
        assert base64.b64encode(SECRET.encode()).decode() not in text
    assert "***" in run.results[0].message


def test_junit_names_the_requirement_a_failure_is_reported_against() -> None:
    run = make_run()
    run.results[1].failures[0] = dataclasses.replace(
        run.results[1].failures[0], requirement="POP3-1939-STAT-02"
    )
    root = ET.fromstring(junit_xml_string(run).encode())
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["stat.fail.requirement"] == "POP3-1939-STAT-02"  # the failure's own
    assert props["top.error.requirement"] == "POP3-1939-STAT-01"  # falls back to the first
    assert "stat.pass.requirement" not in props
    message = _cases(junit_xml_string(run))["stat.fail"].find("failure").get("message")
    assert message.startswith("[POP3-1939-STAT-02 MUST] step 4")
    assert (
        "requirement: POP3-1939-STAT-02 ("
        in _cases(junit_xml_string(run))["stat.fail"].find("failure").text
    )


def test_an_incomplete_run_is_marked_in_junit_and_json(tmp_path: Path) -> None:
    run = make_run()
    run.incomplete = "interrupted"
    write_junit(run, tmp_path / "junit.xml")
    xmlschema.XMLSchema(str(XSD)).validate(str(tmp_path / "junit.xml"))
    root = ET.fromstring(junit_xml_string(run).encode())
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["mailspec.incomplete"] == "interrupted"
    write_json(run, tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text("utf-8"))
    jsonschema.validate(data, SCHEMA)
    assert data["incomplete"] == "interrupted"
    assert load_results(tmp_path / "r.json").incomplete == "interrupted"
    assert results_to_dict(make_run())["incomplete"] is None


def test_json_names_the_requirement_each_non_pass_is_reported_against() -> None:
    run = make_run()
    run.results[1].failures[0] = dataclasses.replace(
        run.results[1].failures[0], requirement="POP3-1939-STAT-02"
    )
    by_id = {r["id"]: r for r in results_to_dict(run)["results"]}
    assert by_id["stat.fail"]["requirement"] == "POP3-1939-STAT-02"
    assert by_id["top.skip"]["requirement"] == "POP3-1939-STAT-01"  # the scenario's first
    assert by_id["stat.pass"]["requirement"] is None


def test_passing_testcases_carry_no_transcript() -> None:
    cases = _cases(junit_xml_string(make_run()))
    assert "transcript:\n" not in cases["stat.pass"].find("system-out").text
    assert "a S: +OK 2 320" in cases["stat.fail"].find("system-out").text


def test_json_report_carries_the_tls_fingerprint(tmp_path: Path) -> None:
    run = make_run()
    run.target.tls, run.target.tls_version, run.target.certificate_verified = (
        "implicit", "TLSv1.3", True,
    )  # fmt: skip
    path = tmp_path / "results.json"
    write_json(run, path)
    data = json.loads(path.read_text("utf-8"))
    jsonschema.validate(data, SCHEMA)
    assert data["target"]["tls_version"] == "TLSv1.3"
    assert data["target"]["certificate_verified"] is True
