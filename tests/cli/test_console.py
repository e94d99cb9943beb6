"""Console output: summary line, grouping, failure explanation, colour rules."""

from __future__ import annotations

import io

import pytest
from cli_testlib import make_result, make_run

from conformance.core.results import Verdict
from conformance.reports.console import Console, summary_line, use_color


def test_summary_line_exact_format() -> None:
    run = make_run(
        [
            make_result("a.p", Verdict.PASS),
            make_result("a.p2", Verdict.PASS),
            make_result("a.f", Verdict.FAIL),
            make_result("a.s", Verdict.SKIP),
        ]
    )
    assert summary_line(run) == "2 passed, 1 failed, 0 warned, 1 skipped in 3.50s"


def test_summary_line_adds_nonzero_errors_xfail_xpass() -> None:
    line = summary_line(make_run())
    assert line == (
        "1 passed, 1 failed, 1 warned, 1 skipped, 1 error, 1 xfailed, 1 xpassed in 3.50s"
    )


def _render(color: bool = False, quiet: bool = False) -> str:
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err, color=color, quiet=quiet)
    run = make_run()
    console.header("127.0.0.1:1110", len(run.results))
    for i, r in enumerate(run.results, 1):
        console.result(r, i, len(run.results))
    console.summary(run)
    return out.getvalue()


def test_grouped_by_section_one_line_per_scenario() -> None:
    text = _render()
    stat, top = text.index("RFC 1939 §5 STAT\n"), text.index("RFC 1939 §7 TOP\n")
    assert stat < text.index("  FAIL  stat.fail: title of stat.fail") < top
    assert top < text.index("  SKIP  top.skip: title of top.skip (target lacks TOP)")
    assert text.count("RFC 1939 §5 STAT\n") == 1


def test_failure_names_requirement_reference_step_expected_actual() -> None:
    text = _render()
    failures = text[text.index("Failures:") :]
    assert "POP3-1939-STAT-01 (MUST, RFC 1939 §5): " in failures
    assert "step 4: S: +OK {count} {size:int}" in failures
    assert "expected: +OK 2 320" in failures
    assert "actual: '+OK 2 999\\r\\n'" in failures
    assert "Warnings:" in text and "stat.warn" in text[text.index("Warnings:") :]


def test_no_escape_codes_without_colour_and_some_with() -> None:
    assert "\x1b[" not in _render(color=False)
    assert "\x1b[31;1mFAIL" in _render(color=True)


def test_no_color_env_and_non_tty_disable_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_color(Tty())
    assert not use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Tty())


def test_progress_only_on_long_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import conformance.reports.console as mod

    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err, color=False)
    console.progress(3, 10, "x")
    assert err.getvalue() == ""  # started just now
    monkeypatch.setattr(mod, "PROGRESS_AFTER", 0.0)
    console.progress(4, 10, "x")
    assert err.getvalue().startswith("[4/10]")


def test_verbose_shows_failure_transcripts_escaped() -> None:
    out = io.StringIO()
    console = Console(out, io.StringIO(), color=False, verbose=True)
    console.summary(make_run([make_result("stat.fail", Verdict.FAIL)]))
    text = out.getvalue()
    assert "transcript:" in text
    assert "a S: +OK 2 320\\x00junk\\r\\n" in text
    quiet = io.StringIO()
    Console(quiet, io.StringIO(), color=False).summary(make_run([make_result("x.f", Verdict.FAIL)]))
    assert "transcript:" not in quiet.getvalue()


def test_quiet_prints_a_line_only_for_what_needs_a_look_and_keeps_the_end() -> None:
    quiet, full = _render(quiet=True), _render()
    lines = [line for line in quiet.splitlines() if line.startswith("  ")]
    shown = {
        line.split()[1].rstrip(":") for line in lines if line.split()[0] in Verdict.__members__
    }
    assert shown == {"stat.fail", "stat.warn", "top.error", "top.xpass"}
    assert "  PASS  stat.pass" not in quiet and "  SKIP  top.skip" not in quiet
    assert "  XFAIL top.xfail" not in quiet
    # the section header only above a line that is printed; the end is the same
    assert quiet.count("RFC 1939 §5 STAT\n") == 1 and quiet.count("RFC 1939 §7 TOP\n") == 1
    assert quiet[quiet.index("Failures:") :] == full[full.index("Failures:") :]


def test_quiet_prints_no_section_whose_scenarios_all_passed() -> None:
    out = io.StringIO()
    console = Console(out, io.StringIO(), color=False, quiet=True)
    run = make_run([make_result("stat.pass", Verdict.PASS), make_result("a.s", Verdict.SKIP)])
    for i, r in enumerate(run.results, 1):
        console.result(r, i, len(run.results))
    console.summary(run)
    assert "STAT" not in out.getvalue() and "PASS" not in out.getvalue()
    assert out.getvalue().strip().endswith("1 passed, 0 failed, 0 warned, 1 skipped in 3.50s")
