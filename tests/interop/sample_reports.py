"""Synthetic run results for matrix tests (no server needed)."""

from __future__ import annotations

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
from conformance.reports.json_report import write_json

SCENARIOS = [
    ("greeting.ok", "RFC 1939 §4 Greeting", "The greeting is +OK", ["POP3-1939-GREET-01"], "MUST"),
    (
        "stat.drop-listing",
        "RFC 1939 §5 STAT",
        "STAT answers count and size",
        ["POP3-1939-STAT-01", "POP3-1939-STAT-04"],
        "MUST",
    ),
    (
        "stat.no-trailing",
        "RFC 1939 §5 STAT",
        "Nothing after the size",
        ["POP3-1939-STAT-03"],
        "SHOULD",
    ),
    (
        "retr.dot-stuffing",
        "RFC 1939 §7 RETR",
        "Dot lines are stuffed",
        ["POP3-1939-MULTI-02"],
        "MUST",
    ),
    ("capa.list", "RFC 2449 §5 CAPA", "CAPA lists capabilities", ["POP3-2449-CAPA-01"], "MUST"),
]

TRANSCRIPT = [
    TranscriptEntry(0.0, "a", Direction.EVENT, b"connect 127.0.0.1:110"),
    TranscriptEntry(0.001, "a", Direction.SERVER, b"+OK ready <1.2@x>\r\n"),
    TranscriptEntry(0.002, "a", Direction.CLIENT, b"RETR 2\r\n"),
    TranscriptEntry(
        0.003,
        "a",
        Direction.SERVER,
        b"+OK\r\nbare lf\nnul\x00here\r\n\xe2\x80\x94 dash\r\n\xff raw\r\n..\r\n.\r\n",
    ),
]


def make_run(
    address: str, greeting: str, verdicts: dict[str, Verdict], *, drop: str = ""
) -> RunResult:
    results = []
    for sid, section, title, reqs, level in SCENARIOS:
        if sid == drop:
            continue
        v = verdicts.get(sid, Verdict.PASS)
        failures = []
        message = ""
        if v in (Verdict.FAIL, Verdict.WARN):
            failures = [
                Failure(
                    3,
                    "S: +OK {count} {size:int}",
                    "+OK 7 1102627",
                    "+OK 7 1102627 extra\\r\\n",
                    reqs[0],
                    level,
                    "mismatch",
                )
            ]
            message = failures[0].one_line()
        elif v is Verdict.SKIP:
            message = "needs CAPA: the target answered -ERR"
        elif v is Verdict.ERROR:
            message = "verification: STAT count is 6, the fixture has 7 messages"
        results.append(
            ScenarioResult(
                sid,
                title,
                section,
                reqs,
                level,
                v,
                message,
                failures,
                list(TRANSCRIPT),
                0.25,
                f"scenarios/pop3/{sid.split('.')[0]}.yaml:3",
            )
        )
    return RunResult(
        tool_version="0.1.0",
        started_at="2026-11-28T00:00:00Z",
        duration=12.5,
        target=TargetFingerprint(address, "plain", greeting, ["TOP", "UIDL", "USER"]),
        config={"provision": "none"},
        results=results,
    )


def write_samples(directory: Path) -> list[Path]:
    runs = {
        "interop-dovecot.json": make_run(
            "127.0.0.1:1110",
            "+OK Dovecot (Debian) ready.",
            {"stat.no-trailing": Verdict.WARN},
        ),
        "interop-mailutils.json": make_run(
            "127.0.0.1:1111",
            "+OK POP3 Ready <1.2@vm>",
            {
                "retr.dot-stuffing": Verdict.FAIL,
                "capa.list": Verdict.SKIP,
                "greeting.ok": Verdict.ERROR,
            },
        ),
        "interop-reference.json": make_run(
            "127.0.0.1:1112", "+OK mailspec reference", {}, drop="capa.list"
        ),
    }
    paths = []
    for name, run in runs.items():
        path = directory / name
        write_json(run, path)
        paths.append(path)
    return paths
