"""README's Quick start holds exactly two commands, both go through a
virtual environment made from /usr/bin/python3 (a stock Debian 12 refuses
pip outside one, PEP 668), CI runs the second verbatim and then proves both
in a clean environment from a fresh clone (scripts/prove-quickstart.sh)."""

from __future__ import annotations

import re
import subprocess

from cli_testlib import REPO


def _quick_start() -> str:
    text = (REPO / "README.md").read_text("utf-8")
    return text.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def _commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", _quick_start(), re.S)
    assert block, "the Quick start has a sh code block"
    return [
        line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")
    ]


def test_quick_start_has_one_run_command_and_one_test_command() -> None:
    first, second = _commands()
    assert first == "bash scripts/install.sh && .venv/bin/mailspec run"
    assert second == "bash scripts/install-test-deps.sh && .venv/bin/python -m pytest"


def test_no_pip_outside_a_virtual_environment() -> None:
    section = _quick_start()
    assert "venv" in section  # what the before-stop check and a Debian user need
    for script in ("install.sh", "install-test-deps.sh"):
        text = (REPO / "scripts" / script).read_text("utf-8")
        assert ". scripts/_common.sh" in text and "make_venv" in text
        assert "pip install" not in text.replace("pip_install", "")
    common = (REPO / "scripts" / "_common.sh").read_text("utf-8")
    assert "SYSTEM_PYTHON=${MAILSPEC_PYTHON:-/usr/bin/python3}" in common
    assert "apt_install python3-venv" in common
    assert '"$VENV/bin/python" -m pip install' in common


def test_ci_runs_the_second_command_verbatim_then_the_clean_proof() -> None:
    ci = (REPO / ".ci" / "run").read_text("utf-8")
    second = _commands()[1]
    lines = [line.strip() for line in ci.splitlines()]
    # verbatim, under a clean environment like the proof's (env -i, empty HOME)
    run_second = f"bash -c '{second}'"
    assert run_second in lines
    clean_env = lines[lines.index(run_second) - 1]
    assert clean_env.startswith('env -i PATH=/usr/bin:/bin HOME="$home"'), clean_env
    # then the first command from a fresh clone under env -i (the second ran above)
    assert lines.index(run_second) < lines.index("bash scripts/prove-quickstart.sh --first-only")
    assert '"$rc" -eq 5' in ci  # pytest collecting nothing fails CI


def test_the_proof_finds_the_same_two_commands(tmp_path) -> None:
    """prove-quickstart.sh reads the commands from README itself; check its
    extraction against the one above (bash only, nothing installed)."""
    script = (REPO / "scripts" / "prove-quickstart.sh").read_text("utf-8")
    awk = re.search(r"mapfile -t commands < <\(awk '(.*?)' \"\$repo/README.md\"\)", script, re.S)
    assert awk
    done = subprocess.run(
        ["awk", awk.group(1), str(REPO / "README.md")],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert done.stdout.splitlines() == _commands()
    assert "env -i PATH=/usr/bin:/bin HOME=" in script
    assert "git clone" in script
