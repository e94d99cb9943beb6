"""The command works as installed: every conformance subpackage is shipped,
`python -m conformance` is the CLI, and `serve` hands over to the server."""

from __future__ import annotations

import subprocess
import tomllib

from cli_testlib import PYTHON, REPO


def test_every_conformance_subpackage_is_listed_in_pyproject() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    subpackages = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "conformance").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    missing = sorted(subpackages - listed)
    assert not missing, (
        f"pyproject [tool.setuptools] packages lacks {missing}: a non-editable install breaks"
    )


def test_templates_ship_as_package_data() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    data = config["tool"]["setuptools"]["package-data"]["conformance.reports"]
    assert "templates/*" in data
    shipped = {p.name for p in (REPO / "conformance" / "reports" / "templates").iterdir()}
    assert {"report.html.j2", "report.css", "report.js"} <= shipped
    assert any(d.startswith("Jinja2") for d in config["project"]["dependencies"])


def test_python_dash_m_conformance_and_serve(subprocess_env: dict[str, str]) -> None:
    version = subprocess.run(
        [PYTHON, "-m", "conformance", "--version"],
        capture_output=True,
        text=True,
        env=subprocess_env,
        timeout=60,
        check=False,
    )
    assert version.returncode == 0 and version.stdout.startswith("mailspec ")
    serve = subprocess.run(
        [PYTHON, "-m", "conformance", "serve", "--help"],
        capture_output=True,
        text=True,
        env=subprocess_env,
        timeout=60,
        check=False,
    )
    assert serve.returncode == 0
    assert "--listen" in serve.stdout and "reference_server" in serve.stdout
