"""The loader rejects malformed files with file, line and field, before
anything runs; valid files give a typed model."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.core.errors import ScenarioError
from conformance.core.scenario import (
    CommandStep,
    LoginStep,
    OpenStep,
    ReplyStep,
    bundled_scenario_dir,
    lint_scenarios,
    load_scenario_file,
    load_scenarios,
)

VALID = """\
section: "RFC 1939 §5 STAT"
scenarios:
  - id: stat.drop-listing
    title: STAT answers
    requirements: [POP3-1939-STAT-01]
    level: MUST
    steps:
      - open: a
      - S: +OK
      - login
      - C: STAT
      - S: "+OK {count} {size:int}"
      - assert: size > 0
"""


def write(tmp_path: Path, text: str, name: str = "case.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_file_gives_typed_steps_and_source_line(tmp_path: Path) -> None:
    (scenario,) = load_scenario_file(write(tmp_path, VALID))
    assert scenario.id == "stat.drop-listing"
    assert scenario.source == f"{tmp_path / 'case.yaml'}:3"
    assert [type(s) for s in scenario.steps[:4]] == [OpenStep, ReplyStep, LoginStep, CommandStep]
    assert [s.line for s in scenario.steps] == [8, 9, 10, 11, 12, 13]
    assert scenario.steps[3].text == "C: STAT"
    assert scenario.account == "main" and scenario.commits is False


def steps_file(steps: str, scenario_extra: str = "") -> str:
    return (
        'section: "s"\nscenarios:\n  - id: area.name\n    title: t\n'
        "    requirements: [POP3-1939-STAT-01]\n    level: MUST\n"
        + scenario_extra
        + "    steps:\n      - open: a\n      - S: +OK\n"
        + steps
    )


# (file text, line, message fragment)
MALFORMED = {
    "unknown step key": (
        steps_file("      - C: DELE 1\n        expct: +OK\n"),
        11,
        "scenario 'area.name': step 3: unknown key 'expct'",
    ),
    "modifier on the wrong action": (
        steps_file("      - C: RETR 1\n        body: any\n"),
        11,
        "step 3: 'body' is not allowed on 'C'",
    ),
    "two actions": (steps_file("      - C: NOOP\n        S: +OK\n"), 10, "exactly one action"),
    "unknown scenario key": (steps_file("", "    needz: [TOP]\n"), 7, "unknown key 'needz'"),
    "unknown file key": ('section: "s"\nsectoin: x\nscenarios: []\n', 2, "unknown key 'sectoin'"),
    "missing title": (
        'section: "s"\nscenarios:\n  - id: a.b\n    requirements: [POP3-1939-STAT-01]\n'
        "    level: MUST\n    steps: [login]\n",
        3,
        "missing required field 'title'",
    ),
    "wrong type": (
        steps_file("", "    commits: yes please\n"),
        7,
        "field 'commits': must be true or false",
    ),
    "unknown requirement": (
        steps_file("").replace("POP3-1939-STAT-01", "POP3-1939-STAT-99"),
        5,
        "unknown requirement 'POP3-1939-STAT-99'",
    ),
    "invalid level": (
        steps_file("").replace("level: MUST", "level: MUSt"),
        6,
        "field 'level': must be MUST, SHOULD or MAY, not 'MUSt'",
    ),
    "bad id": (steps_file("").replace("area.name", "Area_Name"), 3, "field 'id'"),
    "duplicate id in a file": (
        steps_file("") + steps_file("").split("scenarios:\n")[1],
        10,
        "duplicate scenario id 'area.name'",
    ),
    "pattern capture type": (
        steps_file('      - C: STAT\n      - S: "+OK {n:integer}"\n'),
        11,
        "step 4: unknown capture type 'integer'",
    ),
    "pattern without status": (
        steps_file("      - C: STAT\n      - S: OK fine\n"),
        11,
        "starts with +OK or -ERR",
    ),
    "regex syntax": (
        steps_file("      - C: STAT\n      - S: {re: '^\\+OK ('}\n"),
        11,
        "bad regular expression",
    ),
    "expression syntax": (steps_file("      - assert: len(x\n"), 10, "invalid expression"),
    "function not allowed": (
        steps_file("      - assert: open('x')\n"),
        10,
        "only these functions exist",
    ),
    "dunder attribute": (
        steps_file("      - assert: user.__class__\n"),
        10,
        "attribute '__class__' is not allowed",
    ),
    "unknown name": (
        steps_file(
            '      - C: STAT\n      - S: "+OK {n:int} {size:int}"\n      - assert: sise > 0\n'
        ),
        12,
        "name 'sise' is not defined here (captured so far: n, size)",
    ),
    "session before open": (
        steps_file("      - C: NOOP\n        session: b\n"),
        10,
        "session 'b' is used before 'open: b'",
    ),
    "skip_if without reason": (steps_file("      - skip_if: count == 0\n"), 10, "needs 'reason"),
    "else_skip on a negative pattern": (
        steps_file("      - C: LAST\n      - S: -ERR\n        else_skip: nope\n"),
        11,
        "'else_skip' only makes sense",
    ),
    "send beyond octets": (steps_file('      - send: "\\u20ac"\n'), 10, "is not one"),
    "capture hides a fact": (
        steps_file('      - C: STAT\n      - S: "+OK {count:int} {s:int}"\n'),
        11,
        "capture name 'count' would hide",
    ),
    "unknown account role": (steps_file("", "    account: spare9\n"), 7, "unknown account role"),
    "unknown bare step": (steps_file("      - logn\n"), 10, "unknown step 'logn'"),
    "login with a value": (steps_file("      - login: now\n"), 10, "'login' takes no value"),
    "body each unknown key": (
        steps_file("      - C: LIST\n      - S: +OK\n        body: {each: x, cnt: 2}\n"),
        12,
        "body: unknown key 'cnt'",
    ),
    "not YAML": ('section: "s"\nscenarios: [\n  - id: x\n', 3, "not valid YAML"),
    "duplicate key": ('section: "s"\nsection: "t"\nscenarios: []\n', 2, "duplicate key 'section'"),
    "reopen without drop": (steps_file("      - open: a\n"), 10, "already open"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_files_name_file_line_and_field(tmp_path: Path, case: str) -> None:
    text, line, fragment = MALFORMED[case]
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario_file(path)
    assert caught.value.path == str(path)
    assert caught.value.line == line, str(caught.value)
    assert fragment in caught.value.detail
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_error_renders_like_the_documented_example() -> None:
    error = ScenarioError("scenarios/pop3/dele.yaml", 14, "step 3: unknown key 'expct'")
    assert str(error) == "scenarios/pop3/dele.yaml:14: step 3: unknown key 'expct'"


def test_ids_unique_across_files_and_directories_recursive_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    write(tmp_path / "b", VALID.replace("stat.drop-listing", "b.one"), "z.yaml")
    write(tmp_path, VALID.replace("stat.drop-listing", "a.one"), "a.yaml")
    write(tmp_path, "not: scanned\n", "notes.txt")
    loaded = load_scenarios([tmp_path])
    assert [s.id for s in loaded] == ["a.one", "b.one"]
    write(tmp_path, VALID.replace("stat.drop-listing", "a.one"), "c.yaml")
    with pytest.raises(
        ScenarioError, match=r"c\.yaml:3: duplicate scenario id 'a\.one' \(first in"
    ):
        load_scenarios([tmp_path])


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenarios([tmp_path / "absent"])


def test_lint_reports_a_level_that_matches_no_requirement(tmp_path: Path) -> None:
    scenarios = load_scenario_file(write(tmp_path, VALID.replace("level: MUST", "level: MAY")))
    (note,) = lint_scenarios(scenarios)
    assert "level MAY matches none of its requirements (MUST)" in note
    assert lint_scenarios(load_scenario_file(write(tmp_path, VALID))) == []


def test_bundled_corpus_loads() -> None:
    directory = bundled_scenario_dir()
    assert directory.is_dir()
    scenarios = load_scenarios([directory])
    assert len({s.id for s in scenarios}) == len(scenarios)
