"""`mailspec run` wiring with a stand-in engine (deterministic verdicts):
exit codes, default report paths, selection, expectations, redaction."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_testlib import REPO, make_result, make_run

from conformance.core.errors import TargetUnreachable
from conformance.core.results import Direction, TranscriptEntry, Verdict

FIXTURE_PASSWORD = "main-Secret-1"  # conformance/data/fixtures/default/fixture.yaml


class FakeEngine:
    def __init__(self) -> None:
        self.verdicts: dict[str, Verdict] = {}
        self.config: Any = None
        self.ran: list[str] = []
        self.raise_exc: Exception | None = None

    def run_suite(
        self,
        scenarios: list[Any],
        config: Any,
        *,
        progress: Callable[..., None] | None = None,
        fixture: Any = None,
        jobs: int | None = 1,
    ) -> Any:
        self.jobs = jobs
        if self.raise_exc:
            raise self.raise_exc
        self.config = config
        results = []
        for i, s in enumerate(scenarios, 1):
            self.ran.append(s.id)
            r = make_result(
                s.id,
                self.verdicts.get(s.id, Verdict.PASS),
                section=s.section,
                requirements=list(s.requirements),
                transcript=[
                    TranscriptEntry(0.0, "a", Direction.CLIENT, b"USER msmain\r\n"),
                    TranscriptEntry(
                        0.1, "a", Direction.SERVER, f"-ERR no {FIXTURE_PASSWORD}\r\n".encode()
                    ),
                ],
            )
            if r.verdict is Verdict.FAIL:
                r.message = f"step 4: got '-ERR no {FIXTURE_PASSWORD}'"
            results.append(r)
            if progress:
                progress(r, i, len(scenarios))
        return make_run(results)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeEngine:
    fake = FakeEngine()
    import conformance.protocols

    monkeypatch.setattr(conformance.protocols, "run_suite", fake.run_suite)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    return fake


def test_all_pass_exit_0_and_default_reports(cli, engine: FakeEngine, tmp_path: Path) -> None:
    result = cli("run", "--select", "stat.*")
    assert result.code == 0, result.err
    assert engine.ran and all(i.startswith("stat.") for i in engine.ran)
    assert (tmp_path / "reports" / "junit.xml").is_file()
    data = json.loads((tmp_path / "reports" / "results.json").read_text("utf-8"))
    assert {r["id"] for r in data["results"]} == set(engine.ran)
    assert f"{len(engine.ran)} passed, 0 failed, 0 warned, 0 skipped in" in result.out


def test_fail_exit_1(cli, engine: FakeEngine) -> None:
    engine.verdicts["stat.drop-listing"] = Verdict.FAIL
    result = cli("run", "--select", "stat.*")
    assert result.code == 1
    assert "1 failed" in result.out
    assert "POP3-1939-STAT-01 (MUST, RFC 1939 §5)" in result.out


def test_select_by_requirement_glob_or_id(cli, engine: FakeEngine) -> None:
    assert cli("run", "--select", "POP3-1939-STAT-0[13]", "--select", "noop.*").code == 0
    assert "stat.drop-listing" in engine.ran and "stat.nothing-after-size" in engine.ran
    assert any(i.startswith("noop.") for i in engine.ran)
    assert not any(i.startswith("dele.") for i in engine.ran)


def test_select_matching_nothing_is_usage_error(cli, engine: FakeEngine) -> None:
    result = cli("run", "--select", "no-such-*")
    assert result.code == 2
    assert "--select: no scenario or requirement matches 'no-such-*'" in result.err
    assert engine.ran == []


def test_flags_reach_the_config(cli, engine: FakeEngine, tmp_path: Path) -> None:
    conf = tmp_path / "t.yaml"
    conf.write_text(
        "target: 192.0.2.1:1110\ntimeouts: {read: 3}\n"
        "accounts:\n  main: {user: alice, password: file-Secret-9}\n",
        encoding="utf-8",
    )
    cli(
        "run", "--config", str(conf), "--target", "127.0.0.1:2110", "--strict", "--select", "stat.*"
    )
    cfg = engine.config
    assert (cfg.host, cfg.port, cfg.read_timeout, cfg.strict) == ("127.0.0.1", 2110, 3.0, True)
    assert cfg.provision == "none"
    assert cfg.accounts["main"]["user"] == "alice"
    cli("run", "--config", str(conf), "--timeout", "7.5", "--select", "stat.*")
    assert (engine.config.host, engine.config.read_timeout) == ("192.0.2.1", 7.5)


def test_unreachable_exit_3(cli, engine: FakeEngine) -> None:
    engine.raise_exc = TargetUnreachable("no POP3 server answered at 127.0.0.1:9")
    result = cli("run", "--target", "127.0.0.1:9", "--select", "stat.*")
    assert result.code == 3
    assert "no POP3 server answered" in result.err and "Traceback" not in result.err


def test_scenario_file_error_exit_2(cli, engine: FakeEngine, tmp_path: Path) -> None:
    bad = tmp_path / "mine"
    bad.mkdir()
    (bad / "x.yaml").write_text("section: s\nscenarios:\n  - id: x.y\n    tilte: t\n", "utf-8")
    result = cli("run", "--scenarios", str(bad))
    assert result.code == 2
    assert "x.yaml" in result.err and "Traceback" not in result.err
    assert engine.ran == []


def test_no_password_in_json_junit_console(cli, engine: FakeEngine, tmp_path: Path) -> None:
    engine.verdicts["stat.drop-listing"] = Verdict.FAIL
    conf = tmp_path / "t.yaml"
    conf.write_text("accounts:\n  main: {user: alice, password: file-Secret-9}\n", "utf-8")
    result = cli("run", "--config", str(conf), "--select", "stat.*", "-v")
    assert result.code == 1
    blobs = [
        result.out,
        result.err,
        (tmp_path / "reports" / "results.json").read_text("utf-8"),
        (tmp_path / "reports" / "junit.xml").read_text("utf-8"),
    ]
    for blob in blobs:
        assert FIXTURE_PASSWORD not in blob
        assert "file-Secret-9" not in blob
    config = json.loads(blobs[2])["config"]
    assert all(a["password"] == "***" for a in config["accounts"].values())


def test_expectations_xfail_passes_run(cli, engine: FakeEngine, tmp_path: Path) -> None:
    engine.verdicts["stat.drop-listing"] = Verdict.FAIL
    exp = tmp_path / "exp.yaml"
    exp.write_text("- id: stat.drop-listing\n  reason: vendor bug 7\n", "utf-8")
    result = cli("run", "--select", "stat.*", "--expectations", str(exp))
    assert result.code == 0, result.out
    assert "1 xfailed" in result.out
    assert "XFAIL stat.drop-listing" in result.out
    root = ET.parse(tmp_path / "reports" / "junit.xml").getroot()
    case = next(c for c in root.iter("testcase") if c.get("name") == "stat.drop-listing")
    assert case.find("skipped").get("message") == "xfail: vendor bug 7"


def test_expectations_xpass_fails_run(cli, engine: FakeEngine, tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("- id: stat.drop-listing\n  reason: was broken\n", "utf-8")
    result = cli("run", "--select", "stat.*", "--expectations", str(exp))
    assert result.code == 1
    assert "1 xpassed" in result.out


def test_expectations_stale_entry_exit_2(cli, engine: FakeEngine, tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("- id: stat.drop-listing\n  reason: r\n- id: gone.away\n  reason: r\n", "utf-8")
    result = cli("run", "--select", "stat.*", "--expectations", str(exp))
    assert result.code == 2
    assert f"{exp}:3: id: no scenario 'gone.away'" in result.err
    assert engine.ran == []


def test_update_expectations(cli, engine: FakeEngine, tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("- id: stat.nothing-after-size\n  reason: kept\n", "utf-8")
    engine.verdicts["stat.drop-listing"] = Verdict.FAIL
    engine.verdicts["stat.nothing-after-size"] = Verdict.FAIL
    result = cli("run", "--select", "stat.*", "--update-expectations", str(exp))
    assert result.code == 1  # without --expectations the failures still count
    entries = {e["id"]: e for e in yaml.safe_load(exp.read_text("utf-8"))}
    assert set(entries) == {"stat.drop-listing", "stat.nothing-after-size"}
    assert entries["stat.nothing-after-size"]["reason"] == "kept"
    again = cli("run", "--select", "stat.*", "--expectations", str(exp))
    assert again.code == 0
    assert "2 xfailed" in again.out


def test_list_groups_by_section(cli) -> None:
    result = cli("list", "--select", "stat.*")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == "RFC 1939 §5 STAT"
    assert any(
        "stat.drop-listing" in ln and "MUST" in ln and "POP3-1939-STAT-01" in ln for ln in lines
    )
    verbose = cli("list", "-v", "--select", "stat.drop-listing").out
    assert "POP3-1939-STAT-01 (MUST, RFC 1939 §5):" in verbose
    assert "source:" in verbose


def test_repo_has_the_bundled_corpus() -> None:
    assert (REPO / "scenarios" / "pop3" / "stat.yaml").is_file()
