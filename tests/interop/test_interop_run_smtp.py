"""`python -m interop.run --protocol smtp`: a real SMTP server started by the
harness, the SMTP corpus run against it with delivery inspection, and the
matrix written. aiosmtpd is the quickest of the four (about 30 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.interop


@pytest.mark.timeout(240)
def test_the_smtp_corpus_runs_against_a_started_server_and_the_matrix_is_written(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "interop.run",
            "--protocol",
            "smtp",
            "aiosmtpd",
            "--reports",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=220,
        cwd=REPO,
    )
    if "interop: aiosmtpd:" in done.stderr:  # the server could not run here: say why
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "interop-aiosmtpd.json").read_text("utf-8"))
    assert report["config"]["protocol"] == "smtp"
    counts = report["counts"]
    assert counts["ERROR"] == 0, counts
    assert counts["PASS"] > 60, counts
    delivered = [r for r in report["results"] if r["id"] == "smtp.transaction.full"]
    assert delivered and delivered[0]["verdict"] == "PASS", delivered
    matrix = (tmp_path / "interop-matrix.md").read_text("utf-8")
    assert "| aiosmtpd |" in matrix


@pytest.mark.timeout(240)
def test_an_mta_run_verifies_starttls_against_its_own_ca_and_authenticates(
    tmp_path: Path,
) -> None:
    """Exim offers STARTTLS with the harness's trustme certificate and AUTH
    inside TLS: the run's config trusts exactly that CA (a handshake that
    did not verify would FAIL these) and carries the AUTH password."""
    selected = ["smtp.starttls.*", "smtp.auth.plain-with-challenge", "smtp.auth.bad-credentials"]
    done = subprocess.run(
        [sys.executable, "-m", "interop.run", "exim", "--reports", str(tmp_path), "--no-matrix"]
        + [a for s in selected for a in ("--select", s)],
        capture_output=True,
        text=True,
        timeout=220,
        cwd=REPO,
    )
    if "interop: exim:" in done.stderr:
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    config = (tmp_path / "interop-exim.yaml").read_text("utf-8")
    assert "tls: {mode: plain, ca: " in config and "server_name: mx.example.test" in config
    report = json.loads((tmp_path / "interop-exim.json").read_text("utf-8"))
    verdicts = {r["id"]: r["verdict"] for r in report["results"]}
    assert verdicts["smtp.starttls.session-reset"] == "PASS", verdicts
    assert verdicts["smtp.starttls.not-twice"] == "PASS", verdicts
    assert verdicts["smtp.auth.plain-with-challenge"] == "PASS", verdicts
    assert verdicts["smtp.auth.bad-credentials"] == "PASS", verdicts
