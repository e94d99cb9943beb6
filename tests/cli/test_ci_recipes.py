"""docs/ci.md: its YAML files parse, its target config and expectations
file load, and every `mailspec` command in its workflows exists in the CLI
with those flags (parsed by the real argument parser)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_testlib import REPO

from conformance.cli import build_parser, load_corpus

DOC = REPO / "docs" / "ci.md"
BLOCK = re.compile(r"<!-- file: (?P<name>\S+) -->\n```yaml\n(?P<body>.*?)\n```", re.S)


def _files() -> dict[str, str]:
    return {m["name"]: m["body"] for m in BLOCK.finditer(DOC.read_text("utf-8"))}


def _expand(command: str, variables: dict[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return str(variables[name])  # an unknown variable is a KeyError: a broken recipe

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, command)


def _mailspec_commands(lines: list[str], variables: dict[str, Any]) -> list[list[str]]:
    found = []
    for line in lines:
        words = shlex.split(_expand(line, variables))
        if words and words[0] == "mailspec":
            found.append(words[1:])
    return found


def _check(argv: list[str]) -> Any:
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"docs/ci.md: `mailspec {' '.join(argv)}` is not a valid command")


def _assert_gate_command(args: Any, files: dict[str, str]) -> None:
    assert args.command == "run"
    assert str(args.config) in files, "the config file the job uses is on the page"
    assert str(args.expectations) in files, "so is the expectations file"
    assert str(args.junit) == "reports/junit.xml" and str(args.html) == "reports/report.html"


def test_the_page_holds_both_recipes_and_their_files() -> None:
    assert set(_files()) == {
        "ci/mailspec-target.yaml",
        "ci/mailspec-known-failures.yaml",
        ".github/workflows/mailspec.yml",
        ".gitlab-ci.yml",
    }


def test_github_workflow(tmp_path: Path) -> None:
    files = _files()
    flow = yaml.safe_load(files[".github/workflows/mailspec.yml"])
    job = flow["jobs"]["mailspec"]
    assert job["services"]["pop3"]["image"]
    steps = job["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    assert any("pip install" in r for r in runs)
    commands = _mailspec_commands(runs, job["env"])
    assert len(commands) == 1
    args = _check(commands[0])
    _assert_gate_command(args, files)
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["if"] == "always()"
    assert uploads[0]["with"]["path"] == f"{args.junit.parent}/"
    junit = [s for s in steps if "junit" in str(s.get("uses", ""))]
    assert junit and junit[0]["with"]["report_paths"] == str(args.junit)


def test_gitlab_job() -> None:
    files = _files()
    job = yaml.safe_load(files[".gitlab-ci.yml"])["mailspec"]
    assert job["services"][0]["alias"] == "pop3"
    commands = _mailspec_commands(job["script"], job["variables"])
    assert len(commands) == 1
    args = _check(commands[0])
    _assert_gate_command(args, files)
    assert args.target[:2] == ("pop3", 110)  # (host, port, TLS mode the URL implies)
    artifacts = job["artifacts"]
    assert artifacts["when"] == "always"
    assert artifacts["reports"]["junit"] == str(args.junit)
    assert f"{args.html.parent}/" in artifacts["paths"]


def test_the_config_and_expectations_files_load(tmp_path: Path) -> None:
    from conformance.core.config import load_config
    from conformance.core.expectations import check_known, load_expectations

    files = _files()
    target = tmp_path / "mailspec-target.yaml"
    target.write_text(files["ci/mailspec-target.yaml"] + "\n", "utf-8")
    cfg = load_config(target)
    assert (cfg.host, cfg.port) == ("127.0.0.1", 1110)
    known = tmp_path / "known.yaml"
    known.write_text(files["ci/mailspec-known-failures.yaml"] + "\n", "utf-8")
    exps = load_expectations(known)
    check_known(exps, {s.id for s in load_corpus([])}, known)  # the ids exist
    assert exps


def test_a_broken_recipe_would_be_caught() -> None:
    with pytest.raises(pytest.fail.Exception):
        _check(["run", "--junit-xml", "reports/junit.xml"])
    with pytest.raises(KeyError):
        _mailspec_commands(["mailspec run --target $NOWHERE"], {})
