"""The SMTP half of the requirements catalogue: every entry is well formed
(fields, stable PROTO-RFC-AREA-NN ID, level, a section the RFC really has),
the extensions sit after RFC 1870 grouped by RFC, and coverage reports each
RFC. The checker is shown failing on broken entries so it can fail."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import pytest
import yaml

from conformance.core.catalogue import load_catalogue
from conformance.reports.coverage import compute_coverage

FIELDS = ("id", "rfc", "section", "level", "actor", "summary", "testable", "how")
SMTP_ID = re.compile(r"^SMTP-(?P<rfc>\d{4})-(?P<area>[A-Z0-9]+)-(?P<nn>\d{2})$")
SECTION = re.compile(r"^\d+(\.\d+)*$")


def _numbered(*parts: str) -> frozenset[str]:
    return frozenset(s for part in parts for s in part.split())


# Section numbers as each RFC numbers them (tables of contents, plus the
# deeper RFC 5321 headings the TOC leaves out).
RFC_SECTIONS: dict[int, frozenset[str]] = {
    5321: _numbered(
        "1 1.1 1.2 1.3 2 2.1 2.2 2.2.1 2.2.2 2.2.3 2.3 2.3.1 2.3.2 2.3.3 2.3.4 2.3.5",
        "2.3.6 2.3.7 2.3.8 2.3.9 2.3.10 2.3.11 2.4 3 3.1 3.2 3.3 3.4 3.5 3.5.1 3.5.2",
        "3.5.3 3.5.4 3.6 3.6.1 3.6.2 3.6.3 3.7 3.7.1 3.7.2 3.7.3 3.7.4 3.7.5 3.8 3.9",
        "3.9.1 3.9.2 4 4.1 4.1.1 4.1.1.1 4.1.1.2 4.1.1.3 4.1.1.4 4.1.1.5 4.1.1.6",
        "4.1.1.7 4.1.1.8 4.1.1.9 4.1.1.10 4.1.1.11 4.1.2 4.1.3 4.1.4 4.1.5 4.2 4.2.1",
        "4.2.2 4.2.3 4.2.4 4.2.5 4.3 4.3.1 4.3.2 4.4 4.5 4.5.1 4.5.2 4.5.3 4.5.3.1",
        "4.5.3.1.1 4.5.3.1.2 4.5.3.1.3 4.5.3.1.4 4.5.3.1.5 4.5.3.1.6 4.5.3.1.7",
        "4.5.3.1.8 4.5.3.1.9 4.5.3.1.10 4.5.3.2 4.5.3.2.1 4.5.3.2.2 4.5.3.2.3",
        "4.5.3.2.4 4.5.3.2.5 4.5.3.2.6 4.5.3.2.7 4.5.4 4.5.4.1 4.5.4.2 4.5.5 5 5.1",
        "5.2 6 6.1 6.2 6.3 6.4 7 7.1 7.2 7.3 7.4 7.5 7.6 7.7 7.8 7.9 8 9 10 10.1 10.2",
    ),
    1870: _numbered("1 2 3 4 5 6 6.1 6.2 6.3 6.4 7 8 9 10 11 12"),
    2920: _numbered("1 1.1 2 3 3.1 3.2 4 5"),
    3207: _numbered("1 1.1 2 3 4 4.1 4.2 4.3 5 6"),
    4954: _numbered("1 2 3 4 4.1 5 5.1 6 7 8 9 10 11 12 13 14 15"),
    6531: _numbered(
        "1 1.1 1.2 2 3 3.1 3.2 3.3 3.4 3.5 3.6 3.7 3.7.1 3.7.2 3.7.3 3.7.4",
        "3.7.4.1 3.7.4.2 4 4.1 4.2 4.3 5 6 7 7.1 7.2",
    ),
    6152: _numbered("1 2 3 4 5 6 6.1 7 8"),
    2034: _numbered("1 2 3 4 5 6"),
    3463: _numbered("1 2 3 3.1 3.2 3.3 3.4 3.5 3.6 3.7 3.8 4 5"),
    3030: _numbered("1 2 3 4 4.1 4.2 5 6 7 8 9"),
}
EXTENSIONS = (2920, 3207, 4954, 6531, 6152, 2034, 3463, 3030)


def _raw() -> dict[str, Any]:
    text = (resources.files("conformance") / "data" / "requirements.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def entry_problems(entry: dict[str, Any], levels: set[str], actors: set[str]) -> list[str]:
    """Everything wrong with one SMTP catalogue entry (empty when it is fine)."""
    problems: list[str] = []
    missing = [f for f in FIELDS if f not in entry]
    if missing:
        return [f"missing field(s) {', '.join(missing)}"]
    if tuple(entry) != FIELDS:
        problems.append(f"fields out of order: {', '.join(entry)}")
    rfc = entry["rfc"]
    match = SMTP_ID.match(str(entry["id"]))
    if match is None:
        problems.append(f"id {entry['id']!r} does not match SMTP-RFC-AREA-NN")
    elif int(match["rfc"]) != rfc:
        problems.append(f"id {entry['id']!r} names RFC {match['rfc']}, entry says {rfc}")
    if entry["level"] not in levels:
        problems.append(f"level {entry['level']!r} not in {sorted(levels)}")
    if entry["actor"] not in actors:
        problems.append(f"actor {entry['actor']!r} not in {sorted(actors)}")
    section = entry["section"]
    if not isinstance(section, str) or not SECTION.match(section):
        problems.append(f"section {section!r} is not digits and dots")
    elif rfc not in RFC_SECTIONS:
        problems.append(f"RFC {rfc} has no known section list")
    elif section not in RFC_SECTIONS[rfc]:
        problems.append(f"RFC {rfc} has no section {section}")
    if not isinstance(entry["testable"], bool):
        problems.append("testable is not true/false")
    for field in ("summary", "how"):
        value = entry[field]
        if not isinstance(value, str) or not value.strip().endswith("."):
            problems.append(f"{field} is not a sentence")
    return problems


def test_every_smtp_entry_is_well_formed() -> None:
    data = _raw()
    levels, actors = set(data["meta"]["levels"]), set(data["meta"]["actors"])
    problems = {
        e.get("id", f"#{i}"): p
        for i, e in enumerate(data["smtp"])
        if (p := entry_problems(e, levels, actors))
    }
    assert problems == {}


def test_ids_are_unique_across_the_catalogue() -> None:
    data = _raw()
    ids = [e["id"] for proto in ("pop3", "smtp") for e in data[proto]]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert dupes == []
    assert len(load_catalogue()) == len(ids)


GOOD = {
    "id": "SMTP-3030-BDAT-99",
    "rfc": 3030,
    "section": "2",
    "level": "MUST",
    "actor": "server",
    "summary": "A paraphrase.",
    "testable": True,
    "how": "A probe.",
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"id": "SMTP-3030-bdat-1"}, "does not match"),
        ({"id": "SMTP-2920-BDAT-99"}, "names RFC 2920"),
        ({"level": "REQUIRED"}, "level"),
        ({"actor": "relay"}, "actor"),
        ({"section": "2."}, "digits and dots"),
        ({"section": 2}, "digits and dots"),
        ({"section": "3.2"}, "has no section 3.2"),
        ({"rfc": 9999, "id": "SMTP-9999-BDAT-99"}, "no known section list"),
        ({"testable": "no"}, "testable"),
        ({"how": ""}, "how is not a sentence"),
    ],
)
def test_checker_flags_a_broken_entry(change: dict[str, Any], expected: str) -> None:
    levels = {"MUST", "SHOULD", "MAY", "MUST-NOT", "SHOULD-NOT", "IMPLIED"}
    assert entry_problems(GOOD, levels, {"server", "client"}) == []
    problems = entry_problems({**GOOD, **change}, levels, {"server", "client"})
    assert any(expected in p for p in problems), problems


def test_checker_flags_missing_and_reordered_fields() -> None:
    levels = {"MUST"}
    no_how = {k: v for k, v in GOOD.items() if k != "how"}
    assert entry_problems(no_how, levels, {"server"}) == ["missing field(s) how"]
    reordered = {"rfc": 3030, **{k: v for k, v in GOOD.items() if k != "rfc"}}
    assert any("out of order" in p for p in entry_problems(reordered, levels, {"server"}))


def test_extensions_follow_rfc1870_grouped_by_rfc() -> None:
    order: list[int] = []
    for e in _raw()["smtp"]:
        if not order or order[-1] != e["rfc"]:
            order.append(e["rfc"])
    assert order == [5321, 1870, *EXTENSIONS]


def test_not_testable_entries_give_their_reason() -> None:
    silent = [e["id"] for e in _raw()["smtp"] if not e["testable"] and len(e["how"].split()) < 6]
    assert silent == []


def test_coverage_reports_every_smtp_rfc() -> None:
    cat = load_catalogue()
    cov = compute_coverage(cat, [], "smtp")
    assert list(cov.by_rfc) == [str(r) for r in sorted([5321, 1870, *EXTENSIONS])]
    for rfc in EXTENSIONS:
        entries = [r for r in cat.values() if r.protocol == "smtp" and r.rfc == rfc]
        totals = cov.by_rfc[str(rfc)]
        assert totals.testable + len(totals.not_testable) == len(entries) > 0
        assert sorted(totals.uncovered) == sorted(r.id for r in entries if r.testable)
