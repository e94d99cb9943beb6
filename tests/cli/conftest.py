"""Fixtures for the CLI/report tests: an in-process `mailspec`, a child
process environment, and pytester."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # cli_testlib (importlib import mode)

from cli_testlib import REPO


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `mailspec ARGS` in-process; returns exit code, stdout, stderr."""
    from conformance.cli import main

    def run(*args: str) -> CliResult:
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for child processes: the repository importable, no colour."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["NO_COLOR"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    return env
