"""Expectations: XFAIL, XPASS fails the run, prefixes, stale ids, updates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cli_testlib import make_result, make_run

from conformance.core.errors import ConfigError
from conformance.core.expectations import (
    apply,
    check_known,
    load_expectations,
    updated,
    write_expectations,
)
from conformance.core.results import Verdict


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "expect.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_listed_failure_is_xfail_and_run_passes(tmp_path: Path) -> None:
    exps = load_expectations(_write(tmp_path, "- id: stat.fail\n  reason: bug 1\n"))
    run = make_run([make_result("stat.fail", Verdict.FAIL), make_result("stat.ok", Verdict.PASS)])
    assert run.exit_code == 1
    apply(run.results, exps)
    assert run.results[0].verdict is Verdict.XFAIL
    assert run.results[0].expectation_reason == "bug 1"
    assert run.exit_code == 0


def test_listed_pass_is_xpass_and_fails_the_run(tmp_path: Path) -> None:
    exps = load_expectations(_write(tmp_path, "- id: stat.ok\n  reason: fixed?\n"))
    run = make_run([make_result("stat.ok", Verdict.PASS)])
    apply(run.results, exps)
    assert run.results[0].verdict is Verdict.XPASS
    assert run.exit_code == 1


def test_warn_and_skip_are_left_alone_and_a_listed_error_is_xfail(tmp_path: Path) -> None:
    text = "".join(f"- id: {i}\n  reason: r\n" for i in ("a.warn", "a.skip", "a.err"))
    exps = load_expectations(_write(tmp_path, text))
    results = [
        make_result("a.warn", Verdict.WARN),
        make_result("a.skip", Verdict.SKIP),
        make_result("a.err", Verdict.ERROR),
        make_result("a.unlisted-err", Verdict.ERROR),
    ]
    apply(results, exps)
    assert [r.verdict for r in results] == [
        Verdict.WARN, Verdict.SKIP, Verdict.XFAIL, Verdict.ERROR,
    ]  # fmt: skip
    assert make_run(results).exit_code == 3  # the unlisted ERROR: could not judge
    assert make_run(results[:3]).exit_code == 0


def test_message_prefix_must_match(tmp_path: Path) -> None:
    text = (
        "- id: stat.fail\n  reason: r\n  message_prefix: 'step 9'\n"
        "- id: stat.fail2\n  reason: r\n  message_prefix: 'step 4'\n"
    )
    exps = load_expectations(_write(tmp_path, text))
    results = [make_result("stat.fail", Verdict.FAIL), make_result("stat.fail2", Verdict.FAIL)]
    apply(results, exps)
    assert results[0].verdict is Verdict.FAIL
    assert results[1].verdict is Verdict.XFAIL


def test_stale_entry_is_an_error_of_the_file_with_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "- id: stat.fail\n  reason: r\n- id: gone.away\n  reason: r\n")
    exps = load_expectations(path)
    with pytest.raises(ConfigError, match=r"expect\.yaml:3: id: no scenario 'gone.away'"):
        check_known(exps, {"stat.fail"}, path)
    check_known(exps, {"stat.fail", "gone.away"}, path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- id: x\n", r"expect\.yaml:1: entry 1: reason: required"),
        ("- id: x\n  reason: r\n  resaon: r\n", r"expect\.yaml:3: entry 1: resaon: unknown key"),
        ("id: x\n", r"expect\.yaml:1: expected a list"),
        (
            "- id: x\n  reason: r\n- id: x\n  reason: s\n",
            r"expect\.yaml:3: entry 2: id: 'x' listed twice",
        ),
        ("- [\n", r"expect\.yaml:\d+: not valid YAML"),
    ],
)
def test_bad_files_name_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_expectations(_write(tmp_path, text))


def test_update_keeps_reasons_drops_fixed_adds_new(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "- id: stat.fail\n  reason: kept reason\n"
        "- id: stat.fixed\n  reason: old\n"
        "- id: other.notrun\n  reason: not run this time\n",
    )
    previous = load_expectations(path)
    results = [
        make_result("stat.fail", Verdict.XFAIL),
        make_result("stat.fixed", Verdict.XPASS),
        make_result("stat.new", Verdict.FAIL),
    ]
    write_expectations(path, updated(results, previous))
    data = yaml.safe_load(path.read_text("utf-8"))
    by_id = {e["id"]: e for e in data}
    assert set(by_id) == {"stat.fail", "stat.new", "other.notrun"}
    assert by_id["stat.fail"]["reason"] == "kept reason"
    assert by_id["stat.new"]["reason"].startswith("TODO triage:")
    assert load_expectations(path)  # the rewritten file loads again
