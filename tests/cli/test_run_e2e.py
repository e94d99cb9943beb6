"""`mailspec run` for real: the engine against the embedded reference server
(exit 0 and 1), a closed port (exit 3), a broken scenario file (exit 2),
reports valid and free of passwords. Each run selects a few tiny scenarios."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import jsonschema
import pytest
import xmlschema
from cli_testlib import REPO, SELFTEST, run_mailspec

FIXTURE_PASSWORDS = ("main-Secret-1", "empty-Secret-2", "spare-Secret-3")


_mailspec = run_mailspec


@pytest.fixture
def selftest_dir(tmp_path: Path) -> Path:
    d = tmp_path / "mine"
    d.mkdir()
    (d / "selftest.yaml").write_text(SELFTEST, encoding="utf-8")
    return d


def test_exit_0_then_1_against_embedded_server(
    tmp_path: Path, selftest_dir: Path, subprocess_env: dict[str, str]
) -> None:
    ok = _mailspec(
        tmp_path, subprocess_env, "run", "--scenarios", str(selftest_dir), "--select", "*greets*"
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 passed, 0 failed, 0 warned, 0 skipped in" in ok.stdout

    bad = _mailspec(
        tmp_path, subprocess_env, "run", "--scenarios", str(selftest_dir), "--select", "selftest.*"
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "1 passed, 1 failed, 0 warned, 0 skipped in" in bad.stdout
    assert "step 5: S: -ERR" in bad.stdout
    assert "POP3-1939-STAT-01 (MUST, RFC 1939 §5)" in bad.stdout

    report = json.loads((tmp_path / "reports" / "results.json").read_text("utf-8"))
    schema = json.loads((REPO / "docs" / "results.schema.json").read_text("utf-8"))
    jsonschema.validate(report, schema)
    assert report["target"]["embedded"] is True
    assert report["target"]["greeting"].startswith("+OK")
    junit = tmp_path / "reports" / "junit.xml"
    xmlschema.XMLSchema(str(Path(__file__).with_name("junit.xsd"))).validate(str(junit))
    for blob in (bad.stdout, bad.stderr, junit.read_text("utf-8"), json.dumps(report)):
        for secret in FIXTURE_PASSWORDS:
            assert secret not in blob
    sent = [e for r in report["results"] for e in r["transcript"] if e["direction"] == "C"]
    assert any(e["text"].startswith("PASS ") for e in sent)  # the login is there, redacted

    page = (tmp_path / "reports" / "report.html").read_text("utf-8")
    assert "<!DOCTYPE html>" in page and "mailspec report: reference" in page
    for result in report["results"]:
        assert result["id"] in page
    assert "FAIL" in page and "STAT" in page  # the failing verdict and its transcript
    for secret in FIXTURE_PASSWORDS:
        assert secret not in page


def test_exit_3_when_target_port_is_closed(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _mailspec(
        tmp_path, subprocess_env, "run", "--target", f"127.0.0.1:{port}", "--select", "stat.*"
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_exit_2_for_a_broken_scenario_file(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "broken.yaml").write_text(SELFTEST.replace("title:", "tilte:", 1), encoding="utf-8")
    result = _mailspec(tmp_path, subprocess_env, "run", "--scenarios", str(mine))
    assert result.returncode == 2
    assert "broken.yaml:" in result.stderr
    assert "Traceback" not in result.stderr
