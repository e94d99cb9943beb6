"""The JSON report: everything a run produced, for machines (the matrix,
dashboards). Schema: docs/results.schema.json (`FORMAT`, version 2).

Wire entries (C, S) carry the exact bytes as base64 and an escaped,
printable `text`; event notes (`*`) are the suite's own UTF-8 text and
carry `text` only (version 1 gave them a redundant base64 too, 6% of a
passing run's file; both versions are read). Passwords were already replaced in the transcript by the
engine (unless `--no-redact`) and the config is `RunConfig.redacted()`."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from conformance.reports.text import broken_requirement, escape_bytes
from conformance.core.results import (
    Direction,
    Elision,
    Failure,
    Measurement,
    MeasurementOutcome,
    RunResult,
    ScenarioResult,
    TargetFingerprint,
    TranscriptEntry,
    Verdict,
)

FORMAT = "mailspec-results"
FORMAT_VERSION = 2
#: Versions `results_from_dict` reads (1: event notes also had base64).
READABLE_VERSIONS = (1, 2)


#: What the probe's TLS handshake showed (None under plain TLS mode).
TLS_FINGERPRINT_FIELDS = (
    "tls_version",
    "tls_cipher",
    "certificate_subject",
    "certificate_issuer",
    "certificate_not_after",
    "certificate_verified",
    "capa_plaintext",
    "plaintext_login_offered",
)


def results_to_dict(run: RunResult) -> dict[str, Any]:
    counts = run.counts()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tool": {"name": "mailspec", "version": run.tool_version},
        "started_at": run.started_at,
        "duration": round(run.duration, 6),
        "strict": run.strict,
        "exit_code": run.exit_code,
        "incomplete": run.incomplete,
        "target": {
            "address": run.target.address,
            "tls": run.target.tls,
            "greeting": run.target.greeting,
            "capabilities": list(run.target.capabilities),
            "capa_authorization": run.target.capa_authorization,
            "capa_transaction": run.target.capa_transaction,
            "embedded": run.target.embedded,
            **{name: getattr(run.target, name) for name in TLS_FINGERPRINT_FIELDS},
        },
        "config": _jsonable(run.config),
        "counts": {v.value: counts[v] for v in Verdict},
        "measurements": [measurement_dict(m) for m in run.measurements],
        "results": [_result(r) for r in run.results],
    }


def measurement_dict(m: Measurement) -> dict[str, Any]:
    """An INFO result: the fact, its unit, how and within which bounds."""
    return {
        "id": m.id,
        "title": m.title,
        "outcome": m.outcome.value,
        "value": m.value,
        "unit": m.unit,
        "summary": m.summary(),
        "method": m.method,
        "bounds": dict(m.bounds),
        "note": m.note,
        "samples": list(m.samples),
    }


def measurement_from_dict(data: dict[str, Any]) -> Measurement:
    return Measurement(
        id=data["id"],
        title=data["title"],
        unit=data["unit"],
        method=data["method"],
        bounds=dict(data["bounds"]),
        outcome=MeasurementOutcome(data["outcome"]),
        value=data["value"],
        note=data.get("note", ""),
        samples=list(data.get("samples") or []),
    )


def _result(r: ScenarioResult) -> dict[str, Any]:
    return {
        "id": r.scenario_id,
        "title": r.title,
        "section": r.section,
        "requirements": list(r.requirements),
        "level": r.level,
        "verdict": r.verdict.value,
        "requirement": broken_requirement(r) if r.verdict is not Verdict.PASS else None,
        "message": r.message,
        "expectation_reason": r.expectation_reason,
        "source": r.source,
        "duration": round(r.duration, 6),
        "failures": [failure_dict(f) for f in r.failures],
        "transcript": [_entry(e) for e in r.transcript],
    }


def failure_dict(f: Failure) -> dict[str, Any]:
    return {
        "step": f.step,
        "step_text": f.step_text,
        "expected": f.expected,
        "actual": f.actual,
        "requirement": f.requirement,
        "level": f.level,
        "kind": f.kind,
    }


def _entry(e: TranscriptEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "at": round(e.at, 6),
        "session": e.session,
        "direction": e.direction.value,
    }
    if e.direction is Direction.EVENT:
        # the suite's own note, UTF-8 text: the text is the bytes
        out["text"] = e.data.decode("utf-8", "replace")
    else:
        out["text"] = escape_bytes(e.data)
        out["base64"] = base64.b64encode(e.data).decode("ascii")
    if e.elided is not None:
        out["elided"] = {
            "length": e.elided.length,
            "sha256": e.elided.sha256,
            "head": e.elided.head,
        }
    if e.step is not None:
        out["step"] = e.step
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def write_json(run: RunResult, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(results_json(run), encoding="utf-8")


def results_json(run: RunResult) -> str:
    """The report as text: compact (no indentation; whole-corpus reports are
    kept by CI) but one scenario a line, so it still greps and diffs."""
    data = results_to_dict(run)
    results = data.pop("results")
    head = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in results]
    body = ",\n".join(lines)
    return f'{head[:-1]},"results":[\n{body}\n]}}\n'


def _entry_bytes(e: dict[str, Any]) -> bytes:
    if "base64" in e:
        return base64.b64decode(e["base64"])
    return str(e["text"]).encode("utf-8")  # an event note (format_version 2)


def results_from_dict(data: dict[str, Any]) -> RunResult:
    """Rebuild a RunResult from a report (for `mailspec matrix` and tools)."""
    if data.get("format") != FORMAT:
        raise ValueError(f"not a mailspec results file (format={data.get('format')!r})")
    if data.get("format_version") not in READABLE_VERSIONS:
        raise ValueError(
            f"results format_version {data.get('format_version')!r} is not one this mailspec "
            f"reads ({', '.join(map(str, READABLE_VERSIONS))}): use the mailspec that wrote it"
        )
    t = data["target"]
    return RunResult(
        tool_version=data["tool"]["version"],
        started_at=data["started_at"],
        duration=data["duration"],
        target=TargetFingerprint(
            address=t["address"],
            tls=t["tls"],
            greeting=t["greeting"],
            capabilities=list(t["capabilities"]),
            capa_authorization=t.get("capa_authorization"),
            capa_transaction=t.get("capa_transaction"),
            embedded=t.get("embedded", False),
            **{name: t.get(name) for name in TLS_FINGERPRINT_FIELDS},
        ),
        config=data["config"],
        strict=data.get("strict", False),
        incomplete=data.get("incomplete"),
        measurements=[measurement_from_dict(m) for m in data.get("measurements") or []],
        results=[
            ScenarioResult(
                scenario_id=r["id"],
                title=r["title"],
                section=r["section"],
                requirements=list(r["requirements"]),
                level=r["level"],
                verdict=Verdict(r["verdict"]),
                message=r["message"],
                failures=[Failure(**f) for f in r["failures"]],
                transcript=[
                    TranscriptEntry(
                        e["at"],
                        e["session"],
                        Direction(e["direction"]),
                        _entry_bytes(e),
                        Elision(**e["elided"]) if e.get("elided") else None,
                        e.get("step"),
                    )
                    for e in r["transcript"]
                ],
                duration=r["duration"],
                source=r["source"],
                expectation_reason=r.get("expectation_reason"),
            )
            for r in data["results"]
        ],
    )


def load_results(path: str | Path) -> RunResult:
    with open(path, encoding="utf-8") as fh:
        return results_from_dict(json.load(fh))
