"""The Python examples in the docs that are whole modules (they import what
they use) name nothing they did not define or import."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from cli_testlib import PYTHON, REPO

PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _modules() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, block in enumerate(PYTHON_BLOCK.findall(doc.read_text("utf-8")), 1):
            if re.search(r"^(import|from) \w", block, re.M):
                found.append((f"{doc.relative_to(REPO)}#{i}", block))
    return found


@pytest.mark.parametrize(("where", "code"), _modules(), ids=[w for w, _ in _modules()])
def test_example_names_only_what_it_defines(where: str, code: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            PYTHON,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--select",
            "F821",
            "--stdin-filename",
            "example.py",
            "-",
        ],
        input=code,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{where}: {done.stdout}"


def test_the_subclass_example_is_checked() -> None:
    assert any(w.startswith("docs/reference-server.md") and "os.unlink" in c for w, c in _modules())
