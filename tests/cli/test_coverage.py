"""Coverage: per-requirement scenarios, totals by RFC and level, uncovered
and not-testable lists, text and --json output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from conformance.core.catalogue import load_catalogue
from conformance.reports.coverage import compute_coverage, render_text


@dataclass
class FakeScenario:
    id: str
    requirements: list[str]


def test_compute_counts_and_lists() -> None:
    cat = load_catalogue()
    scenarios = [
        FakeScenario("a.one", ["POP3-1939-STAT-01", "POP3-1939-STAT-04"]),
        FakeScenario("a.two", ["POP3-1939-STAT-01", "NOPE-1"]),
    ]
    cov = compute_coverage(cat, scenarios)
    assert cov.scenarios_for["POP3-1939-STAT-01"] == ["a.one", "a.two"]
    assert cov.unknown == {"NOPE-1": ["a.two"]}
    rfc1939 = cov.by_rfc["1939"]
    assert rfc1939.covered == 2
    testable = [r for r in cat.values() if r.protocol == "pop3" and r.rfc == 1939 and r.testable]
    assert rfc1939.testable == len(testable)
    assert len(rfc1939.uncovered) == rfc1939.testable - 2
    not_testable = [r.id for r in cat.values() if r.protocol == "pop3" and not r.testable]
    assert sorted(cov.total.not_testable) == sorted(not_testable)
    text = render_text(cov)
    assert "POP3-1939-STAT-01" in text and "a.one, a.two" in text
    assert "Not testable over the wire" in text
    first_nt = cat[not_testable[0]]
    assert f"{first_nt.id} ({first_nt.level}, {first_nt.reference}): {first_nt.how}" in text


def test_cli_coverage_json_fields(cli) -> None:
    result = cli("coverage", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["protocol"] == "pop3"
    for rfc, entry in data["by_rfc"].items():
        assert {"testable", "covered", "uncovered"} <= set(entry), rfc
        assert entry["covered"] + len(entry["uncovered"]) == entry["testable"]
    assert data["covered"] == sum(e["covered"] for e in data["by_rfc"].values())
    assert data["by_rfc"]["1939"]["covered"] > 0
    some = next(rid for rid, r in data["requirements"].items() if r["scenarios"])
    assert some not in data["uncovered"]
    assert set(data["not_testable_reasons"]) == set(data["not_testable"])


def test_cli_coverage_counts_user_scenarios(cli, tmp_path: Path) -> None:
    # POP3 (issue 10) and SMTP (issue 12) are fully covered: a user scenario
    # joins the scenarios of the requirement it cites
    protocol = "smtp"
    before = json.loads(cli("coverage", "--json", "--protocol", protocol).out)
    assert before["uncovered"] == []
    target = next(rid for rid, r in before["requirements"].items() if r["testable"])
    greeting = "+OK" if protocol == "pop3" else "220"
    (tmp_path / "extra.yaml").write_text(
        f"protocol: {protocol}\n"
        "section: extra\n"
        "scenarios:\n"
        "  - id: extra.covers-one\n"
        "    title: covers an uncovered requirement\n"
        f"    requirements: [{target}]\n"
        "    level: MUST\n"
        "    steps:\n"
        "      - open: a\n"
        f"      - S: {greeting!r}\n",
        encoding="utf-8",
    )
    after = json.loads(
        cli("coverage", "--json", "--protocol", protocol, "--scenarios", str(tmp_path)).out
    )
    assert after["covered"] == before["covered"]
    assert "extra.covers-one" in after["requirements"][target]["scenarios"]
    text = cli("coverage", "--protocol", protocol, "--scenarios", str(tmp_path)).out
    assert "By RFC:" in text and "By level:" in text
    assert f"{after['covered']}/{after['testable']} testable" in text
