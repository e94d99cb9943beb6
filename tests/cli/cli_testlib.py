"""Hand-built results (the engine's contract objects) and paths shared by
the tests in tests/cli (a uniquely named module: importlib import mode)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conformance.core.results import (
    Direction,
    Failure,
    RunResult,
    ScenarioResult,
    TargetFingerprint,
    TranscriptEntry,
    Verdict,
)

REPO = Path(__file__).resolve().parents[2]
SECRET = "hunter2-Very-Secret"


def make_result(
    sid: str, verdict: Verdict, section: str = "RFC 1939 §5 STAT", **kw: object
) -> ScenarioResult:
    defaults: dict[str, object] = {
        "title": f"title of {sid}",
        "requirements": ["POP3-1939-STAT-01"],
        "level": "MUST",
        "message": "",
        "duration": 0.25,
        "source": f"scenarios/pop3/{sid.split('.')[0]}.yaml:3",
        "transcript": [
            TranscriptEntry(0.0, "a", Direction.EVENT, b"connect 127.0.0.1:110"),
            TranscriptEntry(0.01, "a", Direction.SERVER, b"+OK ready\r\n"),
            TranscriptEntry(0.02, "a", Direction.CLIENT, b"PASS ***\r\n"),
            TranscriptEntry(0.03, "a", Direction.SERVER, b"+OK 2 320\x00junk\r\n"),
        ],
    }
    if verdict in (Verdict.FAIL, Verdict.WARN, Verdict.ERROR):
        defaults["message"] = (
            "step 4 (S: +OK {count} {size:int}): expected +OK 2 320; got '+OK 2 999'"
        )
        defaults["failures"] = [
            Failure(
                step=4,
                step_text="S: +OK {count} {size:int}",
                expected="+OK 2 320",
                actual="'+OK 2 999\\r\\n'",
                requirement="POP3-1939-STAT-01",
                level="MUST" if verdict is not Verdict.WARN else "SHOULD",
            )
        ]
    if verdict is Verdict.SKIP:
        defaults["message"] = "target lacks TOP"
    defaults.update(kw)
    return ScenarioResult(scenario_id=sid, section=section, verdict=verdict, **defaults)  # type: ignore[arg-type]


def make_run(results: list[ScenarioResult] | None = None) -> RunResult:
    if results is None:
        results = [
            make_result("stat.pass", Verdict.PASS),
            make_result("stat.fail", Verdict.FAIL),
            make_result("stat.warn", Verdict.WARN, level="SHOULD"),
            make_result("top.skip", Verdict.SKIP, section="RFC 1939 §7 TOP"),
            make_result("top.error", Verdict.ERROR, section="RFC 1939 §7 TOP"),
            make_result(
                "top.xfail", Verdict.XFAIL, section="RFC 1939 §7 TOP", expectation_reason="bug 42"
            ),
            make_result(
                "top.xpass", Verdict.XPASS, section="RFC 1939 §7 TOP", expectation_reason="bug 43"
            ),
        ]
    return RunResult(
        tool_version="0.1.0",
        started_at="2026-01-01T00:00:00Z",
        duration=3.5,
        target=TargetFingerprint(
            address="127.0.0.1:1110",
            tls="plain",
            greeting="+OK mailspec reference <1.2@x>",
            capabilities=["TOP", "UIDL", "USER"],
            capa_authorization=["TOP", "UIDL", "USER"],
            capa_transaction=None,
            embedded=True,
        ),
        config={"host": None, "port": 110, "accounts": {"main": {"user": "u", "password": "***"}}},
        results=results,
    )


PYTHON = sys.executable


def run_mailspec(
    cwd: Path, env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m conformance ARGS` in a child process."""
    return subprocess.run(
        [PYTHON, "-m", "conformance", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# Two tiny scenarios for end-to-end runs: one passes, one fails on purpose.
SELFTEST = """\
section: "mailspec self-test"
scenarios:
  - id: selftest.greets-and-quits
    title: the greeting is positive and QUIT closes
    requirements: [POP3-1939-GREET-01]
    level: MUST
    steps:
      - open: a
      - S: +OK
      - C: QUIT
      - S: +OK
      - expect_close
  - id: selftest.wrong-on-purpose
    title: deliberately expects -ERR to STAT after login
    requirements: [POP3-1939-STAT-01]
    level: MUST
    steps:
      - open: a
      - S: +OK
      - login
      - C: STAT
      - S: -ERR
"""
