"""The pytest plugin, driven through pytester in a child process: scenario
files are collected only where they should be, verdicts map to pytest
outcomes, and ordinary test runs collect nothing and start no server."""

from __future__ import annotations

import socket
from importlib.metadata import entry_points

import pytest
from cli_testlib import SELFTEST

WARN_SCENARIO = """\
section: "mailspec self-test"
scenarios:
  - id: selftest.should-level
    title: a SHOULD-level check that breaks
    requirements: [POP3-1939-STAT-03]
    level: SHOULD
    steps:
      - open: a
      - S: -ERR
"""


def _plugin_args() -> list[str]:
    installed = any(ep.name == "mailspec" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "conformance.pytest_plugin"]


@pytest.fixture
def env(
    pytester: pytest.Pytester, subprocess_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in subprocess_env.items():
        monkeypatch.setenv(key, value)


def test_scenarios_run_as_pytest_items(pytester: pytest.Pytester, env: None) -> None:
    (pytester.path / "scenarios").mkdir()
    (pytester.path / "scenarios" / "selftest.yaml").write_text(SELFTEST, encoding="utf-8")
    (pytester.path / "scenarios" / "warn.yaml").write_text(WARN_SCENARIO, encoding="utf-8")
    (pytester.path / "scenarios" / "fixture.yaml").write_text("accounts: {}\n", encoding="utf-8")
    result = pytester.runpytest_subprocess(
        *_plugin_args(), "scenarios", "-rA", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2, failed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*selftest.wrong-on-purpose*",
            "*POP3-1939-STAT-01 (MUST, RFC 1939 §5)*",
            "*step 5: S: -ERR*",
        ]
    )
    assert "MailspecWarning" in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_unreachable_target_is_an_error_not_a_failure(pytester: pytest.Pytester, env: None) -> None:
    (pytester.path / "scenarios").mkdir()
    (pytester.path / "scenarios" / "selftest.yaml").write_text(SELFTEST, encoding="utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = pytester.runpytest_subprocess(
        *_plugin_args(), "scenarios", f"--mailspec-target=127.0.0.1:{port}"
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([f"*127.0.0.1:{port}*"])


def test_ordinary_runs_collect_no_scenarios(pytester: pytest.Pytester, env: None) -> None:
    data = pytester.path / "tests" / "scenarios"
    data.mkdir(parents=True)
    (data / "selftest.yaml").write_text(SELFTEST, encoding="utf-8")
    (pytester.path / "tests" / "config.yaml").write_text("scenarios: 3\n", encoding="utf-8")
    (pytester.path / "tests" / "test_plain.py").write_text(
        "import sys\n\ndef test_no_server():\n"
        "    assert 'conformance.pop3.engine' not in sys.modules\n",
        encoding="utf-8",
    )
    result = pytester.runpytest_subprocess(*_plugin_args(), "tests", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "selftest" not in result.stdout.str()


def test_skip_maps_to_pytest_skip(pytester: pytest.Pytester, env: None) -> None:
    (pytester.path / "scenarios").mkdir()
    (pytester.path / "scenarios" / "s.yaml").write_text(
        SELFTEST.split("  - id: selftest.wrong")[0].replace(
            "    level: MUST\n", "    level: MUST\n    needs: [NO-SUCH-CAPABILITY]\n"
        ),
        encoding="utf-8",
    )
    result = pytester.runpytest_subprocess(*_plugin_args(), "scenarios", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*target lacks NO-SUCH-CAPABILITY*"])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_pytest_mailspec_runs_the_installed_corpus_from_any_directory(
    pytester: pytest.Pytester, env: None
) -> None:
    # an empty directory: no checkout, no scenario files, no conftest
    result = pytester.runpytest_subprocess(
        *_plugin_args(), "--mailspec", "-k", "stat.drop-listing or stat.empty-maildrop"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*pop3/stat.yaml*"])


def test_errors_print_the_mailspec_explanation_without_traceback(
    pytester: pytest.Pytester, env: None
) -> None:
    port = _closed_port()
    (pytester.path / "target.yaml").write_text(
        f"target: 127.0.0.1:{port}\nprovision: none\n", encoding="utf-8"
    )
    result = pytester.runpytest_subprocess(
        *_plugin_args(), "--mailspec", "--mailspec-config", "target.yaml", "-k", "stat."
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) >= 5 and not outcomes.get("passed")
    text = result.stdout.str()
    assert "Traceback" not in text and "_pytest" not in text and "raise " not in text
    assert text.count(f"cannot connect to 127.0.0.1:{port}") >= 5
    # one header line and one explanation line per error, plus the summary
    assert len(text.splitlines()) < 4 * outcomes["errors"] + 30


def test_a_failure_shows_its_transcript_only_under_verbose(
    pytester: pytest.Pytester, env: None
) -> None:
    (pytester.path / "selftest.yaml").write_text(SELFTEST, encoding="utf-8")
    quiet = pytester.runpytest_subprocess(*_plugin_args(), "--mailspec", "selftest.yaml")
    quiet.assert_outcomes(passed=1, failed=1)
    assert "transcript:" not in quiet.stdout.str()
    assert "Traceback" not in quiet.stdout.str()
    loud = pytester.runpytest_subprocess(*_plugin_args(), "--mailspec", "selftest.yaml", "-v")
    loud.assert_outcomes(passed=1, failed=1)
    loud.stdout.fnmatch_lines(["*requirement: POP3-1939-STAT-01*", "transcript:", "*a C: STAT*"])
