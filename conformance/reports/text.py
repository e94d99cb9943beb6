"""Plain-text renderings shared by the console, JUnit, and the pytest plugin:
escaped bytes, transcripts, and failure explanations (requirement summary and
`RFC n §s` from the catalogue, never RFC sentences)."""

from __future__ import annotations

from collections.abc import Iterable

from conformance.reports.compact import restore_hint
from conformance.core.results import Direction, Failure, ScenarioResult, TranscriptEntry
from conformance.core.transcript import escape_bytes

__all__ = ["escape_bytes", "transcript_lines"]


def transcript_lines(entries: Iterable[TranscriptEntry]) -> list[str]:
    """One text line per wire line: `  0.012 a S: +OK ready\\r\\n`."""
    lines: list[str] = []
    for e in entries:
        prefix = f"{e.at:8.3f} {e.session} {e.direction.value}:"
        if e.direction is Direction.EVENT:
            lines.append(f"{prefix} {e.data.decode('utf-8', 'replace')}")
            continue
        if e.elided is None:
            parts = [e.data]
        else:
            parts = [e.data[: e.elided.head], None, e.data[e.elided.head :]]
        for part in parts:
            if part is None:
                lines.append(f"{prefix} {restore_hint(e)}")
                continue
            for chunk in part.splitlines(keepends=True) or ([b""] if e.elided is None else []):
                lines.append(f"{prefix} {escape_bytes(chunk)}")
    return lines


def transcript_text(entries: Iterable[TranscriptEntry]) -> str:
    return "\n".join(transcript_lines(entries))


def requirement_line(req_id: str) -> str:
    """`POP3-1939-STAT-01 (MUST, RFC 1939 §5): summary` from the catalogue."""
    from conformance.core.catalogue import load_catalogue

    req = load_catalogue().get(req_id)
    if req is None:
        return f"{req_id} (not in the catalogue)"
    return f"{req_id} ({req.level}, {req.reference}): {req.summary}"


def broken_requirement(result: ScenarioResult) -> str | None:
    """The requirement a non-pass is reported against: the first failure's
    own requirement, else the scenario's first one."""
    for failure in result.failures:
        if failure.requirement:
            return failure.requirement
    return result.requirements[0] if result.requirements else None


def broken_level(result: ScenarioResult) -> str:
    return result.failures[0].level if result.failures else result.level


def failure_lines(failure: Failure) -> list[str]:
    lines = []
    if failure.step is not None:
        lines.append(f"step {failure.step}: {failure.step_text}")
    elif failure.step_text:
        lines.append(failure.step_text)
    lines.append(f"expected: {failure.expected}")
    lines.append(f"  actual: {failure.actual}")
    extra = [failure.kind] if failure.kind != "mismatch" else []
    if failure.level != "MUST":
        extra.append(f"{failure.level}-level check")
    if extra:
        lines.append(f"    kind: {', '.join(extra)}")
    return lines


def explain(result: ScenarioResult) -> list[str]:
    """What the reader needs to understand a non-pass: the requirements with
    their catalogue summary and section, then each failure's step, expected
    and actual."""
    lines = [f"{result.scenario_id}: {result.title}"]
    broken = broken_requirement(result)
    if broken and result.verdict.value in ("FAIL", "WARN", "ERROR", "XFAIL", "XPASS"):
        lines.append(f"requirement: {requirement_line(broken)}")
    if result.message and not result.failures:
        lines.append(f"message: {result.message}")  # with failures, they say it in full
    if result.expectation_reason:
        lines.append(f"expected failure: {result.expectation_reason}")
    reqs = list(
        dict.fromkeys(
            [*result.requirements, *(f.requirement for f in result.failures if f.requirement)]
        )
    )
    if reqs and reqs != [broken]:
        lines.append("requirements:")
        lines.extend(f"  {requirement_line(r)}" for r in reqs)
    for failure in result.failures:
        lines.extend(failure_lines(failure))
    if result.source:
        lines.append(f"source: {result.source}")
    return lines
