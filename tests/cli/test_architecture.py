"""The import arrows the layout promises (docs/architecture.md): the suite
and our servers never import each other; the suite's core imports no
protocol package; no protocol package imports another. Read from the
source with `ast`, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROTOCOLS = ("pop3", "smtp")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules_under(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package.replace(".", "/")).rglob("*.py"))


def offenders(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad: dict[str, list[str]] = {}
    for path in modules_under(package):
        hits = sorted(
            name
            for name in imports_of(path)
            if any(name == f or name.startswith(f + ".") for f in forbidden)
        )
        if hits:
            bad[str(path.relative_to(REPO))] = hits
    return bad


def test_the_suite_never_imports_the_reference_server() -> None:
    assert offenders("conformance", ("reference_server",)) == {}


def test_the_reference_server_never_imports_the_suite() -> None:
    assert offenders("reference_server", ("conformance",)) == {}


def test_the_core_imports_no_protocol_package() -> None:
    forbidden = tuple(f"conformance.{p}" for p in PROTOCOLS)
    assert offenders("conformance.core", forbidden) == {}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_protocol_package_imports_no_other(protocol: str) -> None:
    others = tuple(f"{side}.{p}" for p in PROTOCOLS if p != protocol for side in ("conformance",))
    assert offenders(f"conformance.{protocol}", others) == {}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_reference_server_protocol_imports_no_other(protocol: str) -> None:
    others = tuple(f"reference_server.{p}" for p in PROTOCOLS if p != protocol)
    assert offenders(f"reference_server.{protocol}", others) == {}


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from conformance.pop3 import reader\n", "utf-8")
    assert "conformance.pop3.reader" in imports_of(sample)
