"""`mailspec matrix RESULTS.json... [--markdown PATH] [--html PATH]`:
scenarios x targets.

Reads JSON reports written by `mailspec run --json` (docs/results.schema.json;
a JSON shaped like `dataclasses.asdict(RunResult)` is read too) and renders

* Markdown (stdout when no --markdown/--html is given): one table per
  section, a summary of counts per target; and
* a self-contained HTML page (inline CSS and JS, nothing fetched; Jinja2
  templates, see conformance/reports/html.py): the failures first, then
  sections with their counts, requirement summaries with their RFC
  section, and each cell linking to that target's transcript of that
  scenario (the failing exchange highlighted, verification collapsed).

A column is named explicitly with `LABEL=PATH`, else after the target the
report describes: `reference` for the embedded server, the host in the
greeting's APOP timestamp, or the target address (the file name only when
the report names no target).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.core.errors import ConfigError
from conformance.core.results import Elision

VERDICTS = ("PASS", "FAIL", "WARN", "SKIP", "ERROR", "XFAIL", "XPASS")
NOT_RUN = "—"
DEFAULT_TRANSCRIPT_LIMIT = 4096  # octets shown per transcript entry


# --------------------------------------------------------------------------
# Model


@dataclass
class Entry:
    at: float
    session: str
    direction: str  # C | S | *
    data: bytes
    elided: Elision | None = None  # the report kept only part of the bytes
    step: int | None = None  # the scenario step that caused it (None: set-up)


@dataclass
class Cell:
    verdict: str
    message: str = ""
    failures: list[dict[str, Any]] = field(default_factory=list)
    transcript: list[Entry] = field(default_factory=list)
    duration: float = 0.0
    expectation_reason: str | None = None


@dataclass
class Row:
    id: str
    title: str
    section: str
    requirements: list[str]
    level: str
    source: str = ""


@dataclass
class Target:
    label: str
    path: str
    address: str
    greeting: str
    capabilities: list[str]
    started_at: str
    duration: float
    tool_version: str
    embedded: bool
    cells: dict[str, Cell]
    incomplete: str | None = None  # why the run stopped early
    #: INFO results as the JSON report has them (id, summary, method, ...)
    measurements: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(VERDICTS, 0)
        for c in self.cells.values():
            out[c.verdict] = out.get(c.verdict, 0) + 1
        return out


@dataclass
class Matrix:
    targets: list[Target]
    rows: list[Row]  # in section order

    def sections(self) -> list[tuple[str, list[Row]]]:
        out: dict[str, list[Row]] = {}
        for r in self.rows:
            out.setdefault(r.section, []).append(r)
        return list(out.items())

    def cell(self, target: Target, row: Row) -> Cell | None:
        return target.cells.get(row.id)

    def all_pass(self, row: Row) -> bool:
        return all(
            (c := t.cells.get(row.id)) is not None and c.verdict == "PASS" for t in self.targets
        )


# --------------------------------------------------------------------------
# Loading

_UNESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|r|n|t|\\)")


def _unescape(text: str) -> bytes:
    """Escaped transcript text (`\\r\\n`, `\\x00`) back to bytes."""
    raw = text.encode("utf-8", "surrogateescape")

    def sub(m: re.Match[bytes]) -> bytes:
        tok = m.group(1)
        if tok.startswith(b"x"):
            return bytes([int(tok[1:], 16)])
        return {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"\\": b"\\"}[tok]

    return _UNESCAPE.sub(sub, raw)


def _entry(e: dict[str, Any]) -> Entry:
    direction = str(e.get("direction", "*"))
    if "base64" in e:
        data = base64.b64decode(e["base64"])
    else:
        raw = e.get("text", e.get("data", ""))
        if isinstance(raw, list):  # asdict of bytes via a custom encoder
            data = bytes(raw)
        elif direction == "*":
            data = str(raw).encode("utf-8")
        else:
            data = _unescape(str(raw))
    elided = e.get("elided")
    return Entry(
        float(e.get("at", 0.0)),
        str(e.get("session", "a")),
        direction,
        data,
        Elision(int(elided["length"]), str(elided["sha256"]), int(elided["head"]))
        if isinstance(elided, dict)
        else None,
        int(e["step"]) if isinstance(e.get("step"), int) else None,
    )


_GREETING_HOST = re.compile(r"<[^<>@\s]*@([^<>\s]+)>")


def target_label(target: dict[str, Any], path: Path) -> str:
    """A column name from what the report says about the target: the
    reference server, the host in the greeting's timestamp, the address;
    the file name only when the report names nothing."""
    if target.get("embedded"):
        return "reference"
    found = _GREETING_HOST.search(str(target.get("greeting") or ""))
    if found:
        return found.group(1)
    return str(target.get("address") or "") or default_label(path)


def default_label(path: Path) -> str:
    stem = path.name
    for suffix in (".json",):
        stem = stem.removesuffix(suffix)
    for prefix in ("interop-", "results-", "mailspec-"):
        stem = stem.removeprefix(prefix)
    return stem or path.name


def load_target(spec: str) -> tuple[Target, list[Row]]:
    label, eq, path_text = spec.partition("=")
    if not eq or not label or "/" in label:
        label, path_text = "", spec
    path = Path(path_text)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"matrix: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"matrix: {path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ConfigError(f"matrix: {path}: not a mailspec results file (no 'results' list)")
    fmt = data.get("format")
    if fmt is not None and fmt != "mailspec-results":
        raise ConfigError(f"matrix: {path}: format {fmt!r} is not mailspec-results")
    target = data.get("target") or {}
    tool = data.get("tool") or {}
    rows: list[Row] = []
    cells: dict[str, Cell] = {}
    for i, r in enumerate(data["results"], start=1):
        try:
            rid = r.get("id") or r["scenario_id"]
            verdict = str(r["verdict"]).upper()
        except (KeyError, AttributeError, TypeError):
            raise ConfigError(f"matrix: {path}: results[{i}] has no id/verdict") from None
        rows.append(
            Row(
                id=rid,
                title=r.get("title", ""),
                section=r.get("section", "") or "(no section)",
                requirements=list(r.get("requirements") or []),
                level=r.get("level", ""),
                source=r.get("source", ""),
            )
        )
        cells[rid] = Cell(
            verdict=verdict,
            message=r.get("message", "") or "",
            failures=list(r.get("failures") or []),
            transcript=[_entry(e) for e in r.get("transcript") or []],
            duration=float(r.get("duration") or 0.0),
            expectation_reason=r.get("expectation_reason"),
        )
    return (
        Target(
            label=label or target_label(target, path),
            path=str(path),
            address=target.get("address", ""),
            greeting=target.get("greeting", ""),
            capabilities=list(target.get("capabilities") or []),
            started_at=data.get("started_at", ""),
            duration=float(data.get("duration") or 0.0),
            tool_version=str(tool.get("version") or data.get("tool_version") or ""),
            embedded=bool(target.get("embedded", False)),
            cells=cells,
            incomplete=data.get("incomplete"),
            measurements=[m for m in data.get("measurements") or [] if isinstance(m, dict)],
        ),
        rows,
    )


def from_run(run: Any, label: str) -> Matrix:
    """A one-target matrix straight from a RunResult (the `run --html`
    report), without a JSON round trip."""
    from conformance.reports.json_report import failure_dict, measurement_dict

    rows: list[Row] = []
    cells: dict[str, Cell] = {}
    for r in run.results:
        rows.append(Row(r.scenario_id, r.title, r.section, list(r.requirements), r.level, r.source))
        cells[r.scenario_id] = Cell(
            verdict=r.verdict.value,
            message=r.message,
            failures=[failure_dict(f) for f in r.failures],
            transcript=[
                Entry(e.at, e.session, e.direction.value, e.data, e.elided, e.step)
                for e in r.transcript
            ],
            duration=r.duration,
            expectation_reason=r.expectation_reason,
        )
    t = run.target
    target = Target(
        label=label,
        path="",
        address=t.address,
        greeting=t.greeting,
        capabilities=list(t.capabilities),
        started_at=run.started_at,
        duration=run.duration,
        tool_version=run.tool_version,
        embedded=t.embedded,
        cells=cells,
        incomplete=run.incomplete,
        measurements=[measurement_dict(m) for m in run.measurements],
    )
    sections = list(dict.fromkeys(r.section for r in rows))
    return Matrix([target], sorted(rows, key=lambda r: sections.index(r.section)))


def load_matrix(specs: list[str]) -> Matrix:
    if not specs:
        raise ConfigError("matrix: give at least one results JSON file")
    targets: list[Target] = []
    rows: dict[str, Row] = {}
    sections: list[str] = []
    for spec in specs:
        target, target_rows = load_target(spec)
        base, n = target.label, 2
        while any(t.label == target.label for t in targets):
            target.label = f"{base}-{n}"
            n += 1
        targets.append(target)
        for row in target_rows:
            if row.id not in rows:
                rows[row.id] = row
                if row.section not in sections:
                    sections.append(row.section)
    ordered = sorted(rows.values(), key=lambda r: sections.index(r.section))
    return Matrix(targets, ordered)


# --------------------------------------------------------------------------
# Markdown


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_cell(cell: Cell | None) -> str:
    if cell is None:
        return NOT_RUN
    return cell.verdict if cell.verdict == "PASS" else f"**{cell.verdict}**"


def render_markdown(matrix: Matrix, *, only_non_pass: bool = False) -> str:
    labels = [t.label for t in matrix.targets]
    out = ["# mailspec vendor matrix", ""]
    out.append("| target | server | " + " | ".join(VERDICTS) + " | wall time |")
    out.append("|---|---|" + "---:|" * len(VERDICTS) + "---:|")
    for t in matrix.targets:
        counts = t.counts()
        server = "reference (embedded)" if t.embedded else _md(t.greeting.strip()[:60])
        out.append(
            f"| {t.label} | {server} | "
            + " | ".join(str(counts.get(v, 0)) for v in VERDICTS)
            + f" | {t.duration:.1f} s |"
        )
    out.append("")
    for section, rows in matrix.sections():
        shown = [r for r in rows if not (only_non_pass and matrix.all_pass(r))]
        if not shown:
            continue
        out.append(f"## {_md(section)}")
        out.append("")
        out.append("| scenario | level | " + " | ".join(_md(x) for x in labels) + " |")
        out.append("|---|---|" + "---|" * len(labels))
        for r in shown:
            cells = [_md_cell(matrix.cell(t, r)) for t in matrix.targets]
            out.append(f"| `{r.id}` | {r.level} | " + " | ".join(cells) + " |")
        out.append("")
    notes = []
    for t in matrix.targets:
        for r in matrix.rows:
            c = matrix.cell(t, r)
            if c is not None and c.verdict not in ("PASS",) and c.message:
                notes.append(f"- **{_md(t.label)}** `{r.id}` {c.verdict}: {_md(c.message)}")
    if notes:
        out.append("## Not PASS: why")
        out.append("")
        out.extend(notes)
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------
# HTML (Jinja2 templates: conformance/reports/html.py)


def anchor(target: str, scenario: str) -> str:
    """The id of a transcript in the HTML page: `t-dovecot--stat.drop-listing`."""
    from conformance.reports.html import anchor as html_anchor

    return html_anchor(target, scenario)


def render_html(
    matrix: Matrix, *, title: str = "mailspec vendor matrix", limit: int = DEFAULT_TRANSCRIPT_LIMIT
) -> str:
    from conformance.reports.html import render_page

    return render_page(matrix, title=title, limit=limit)


# --------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS.json",
        help="reports from `mailspec run --json` (LABEL=PATH names the column)",
    )
    parser.add_argument("--markdown", metavar="PATH", help="write the Markdown table here")
    parser.add_argument("--html", metavar="PATH", help="write the HTML page here")
    parser.add_argument(
        "--non-pass", action="store_true", help="Markdown: only rows not PASS on every target"
    )
    parser.add_argument("--title", default="mailspec vendor matrix", help="HTML page title")
    parser.add_argument(
        "--transcript-limit",
        type=int,
        default=DEFAULT_TRANSCRIPT_LIMIT,
        metavar="OCTETS",
        help=f"octets shown per transcript entry in HTML (default {DEFAULT_TRANSCRIPT_LIMIT})",
    )


def run(args: argparse.Namespace) -> int:
    matrix = load_matrix(list(args.results))
    markdown = render_markdown(matrix, only_non_pass=args.non_pass)
    wrote = False
    if args.markdown:
        _write(args.markdown, markdown)
        wrote = True
    if args.html:
        _write(args.html, render_html(matrix, title=args.title, limit=args.transcript_limit))
        wrote = True
    if not wrote or args.markdown == "-":
        sys.stdout.write(markdown + "\n")
    return 0


def _write(path: str, text: str) -> None:
    if path == "-":
        return
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"matrix: cannot write {p}: {exc.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailspec matrix", description=__doc__.split("\n")[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except ConfigError as exc:
        print(f"mailspec matrix: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
