"""The HTML report (`mailspec run --html`) and the vendor matrix
(`mailspec matrix --html`), rendered from Jinja2 templates shipped in
`conformance/templates/` with autoescaping on.

What the page is for: leading a reader to the failure. It opens on the
failures (requirement, level, one line expected/actual, a link to the
failing exchange), then the verdict table with per-section counts and the
failure message in the row, then the transcripts: verification and probe
sessions collapsed, the failing exchange highlighted, invisible bytes shown.

Only wire bytes are turned into markup here (`render_bytes`, which escapes
every octet it emits); the page structure lives in the templates.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple

from markupsafe import Markup

from conformance.reports.compact import is_verification_session

if TYPE_CHECKING:
    from conformance.reports.matrix import Cell, Entry, Matrix, Row, Target

PROBLEM_VERDICTS = ("FAIL", "XPASS", "ERROR")  # listed first in the summary
SUMMARY_VERDICTS = (*PROBLEM_VERDICTS, "WARN")
CLIENT_CLOSED = "closed by the client"
RFC_URL = "https://www.rfc-editor.org/rfc/rfc{rfc}"
_SECTION_NUMBER = re.compile(r"^\d+(\.\d+)*$")
_CONTROL_NAMES = {0x00: "NUL", 0x09: "TAB", 0x1B: "ESC", 0x7F: "DEL"}


# --------------------------------------------------------------------------
# Requirements: summary, level, RFC section and its link


@dataclass(frozen=True)
class RequirementView:
    id: str
    level: str = ""
    reference: str = ""
    summary: str = ""
    url: str = ""


def rfc_url(rfc: int, section: str) -> str:
    """The RFC text on rfc-editor.org, at the section when it is numbered."""
    base = RFC_URL.format(rfc=rfc)
    return f"{base}#section-{section}" if _SECTION_NUMBER.match(section) else base


@cache
def requirement(req_id: str) -> RequirementView:
    try:
        from conformance.core.catalogue import load_catalogue

        req = load_catalogue().get(req_id)
    except Exception:  # catalogue unavailable: the ID alone still helps
        req = None
    if req is None:
        return RequirementView(req_id)
    return RequirementView(
        req.id, req.level, req.reference, req.summary, rfc_url(req.rfc, req.section)
    )


# --------------------------------------------------------------------------
# Wire bytes as HTML


def render_bytes(data: bytes) -> str:
    """Printable ASCII as text, CRLF as a faint `\\r\\n`, bare CR/LF and
    other controls in red boxes, UTF-8 characters shown with their octets
    in the tooltip, other octets as `\\xNN`. Every octet is escaped."""
    parts: list[str] = []
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x0D and i + 1 < n and data[i + 1] == 0x0A:
            parts.append("<u>\\r\\n</u>")
            i += 2
            continue
        if 0x20 <= b < 0x7F:
            j = i
            while j < n and 0x20 <= data[j] < 0x7F:
                j += 1
            parts.append(html.escape(data[i:j].decode("ascii"), quote=False))
            i = j
            continue
        if b == 0x0A:
            parts.append('<b title="bare LF (0x0a)">\\n</b>')
        elif b == 0x0D:
            parts.append('<b title="bare CR (0x0d)">\\r</b>')
        elif b >= 0x80:
            for width in (2, 3, 4):
                try:
                    ch = data[i : i + width].decode("utf-8")
                except UnicodeDecodeError:
                    continue
                hexes = " ".join(f"{x:02x}" for x in data[i : i + width])
                parts.append(f'<s title="UTF-8 {hexes}">{html.escape(ch)}</s>')
                i += width
                break
            else:
                parts.append(f'<b title="octet 0x{b:02x}">\\x{b:02x}</b>')
                i += 1
            continue
        else:
            name = _CONTROL_NAMES.get(b, f"\\x{b:02x}")
            parts.append(f'<b title="control octet 0x{b:02x}">{name}</b>')
        i += 1
    return "".join(parts)


# --------------------------------------------------------------------------
# The view: plain objects the templates walk


class Line(NamedTuple):
    """One table row of a transcript (a tuple: the template unpacks it, which
    keeps rendering thousands of rows cheap)."""

    css: str  # c | s | ev | el (elision note), plus " fail" in the failing exchange
    who: str  # "  0.012 a S:" on an entry's first line, "" after
    data: Markup
    anchor: str  # set on the first line of the failing exchange


@dataclass
class Block:
    verification: bool
    sessions: list[str]
    lines: list[Line] = field(default_factory=list)
    failing: bool = False

    @property
    def entries(self) -> int:
        return sum(1 for line in self.lines if line.who)


@dataclass
class FailureView:
    where: str
    expected: str
    actual: str
    requirement: RequirementView
    level: str
    kind: str


@dataclass
class TranscriptView:
    anchor: str
    fail_anchor: str  # the failing exchange, or the transcript itself
    target: str
    row: Row
    cell: Cell
    failures: list[FailureView]
    blocks: list[Block]

    @property
    def open(self) -> bool:
        return self.cell.verdict not in ("PASS", "SKIP")


@dataclass
class SummaryItem:
    target: str
    row: Row
    verdict: str
    requirement: RequirementView
    level: str
    line: str  # expected/actual in one line, or the message
    href: str
    # Scenarios this row stands for: the "not run (...)" ERRORs of a run that
    # stopped early are one row (the first of them), not hundreds that bury
    # the findings above them.
    count: int = 1


NOT_RUN_PREFIX = "not run ("  # the message of a scenario an early stop never ran


@dataclass
class CellView:
    verdict: str
    href: str
    message: str


@dataclass
class RowView:
    row: Row
    requirements: list[RequirementView]
    cells: list[CellView | None]
    all_pass: bool
    search: str


@dataclass
class SectionView:
    name: str
    counts: list[tuple[str, list[tuple[str, int]]]]  # (target label, [(verdict, n)])
    rows: list[RowView]


def anchor(target: str, scenario: str) -> str:
    """The id of a transcript in the page: `t-dovecot--stat.drop-listing`."""
    clean = re.compile(r"[^A-Za-z0-9_.-]")
    return f"t-{clean.sub('_', target)}--{clean.sub('_', scenario)}"


def failing_indexes(cell: Cell) -> set[int]:
    """The transcript entries of the exchange that failed: every entry the
    first failure's step sent or received (entries carry their step).
    Without step marks (older reports, or a failure no step owns): the
    scenario's last wire exchange (the reply the check stopped at and the
    command before it), or the last event when the failure was a timeout or
    a closed connection. Only for verdicts a check produced."""
    if cell.verdict not in ("FAIL", "WARN", "ERROR", "XFAIL") or not cell.transcript:
        return set()
    entries = cell.transcript
    step = next((f.get("step") for f in cell.failures if f.get("step")), None)
    if step is not None:
        chosen = {i for i, e in enumerate(entries) if e.step == step}
        if chosen:
            first = min(chosen)  # an `S:` step judges the reply to the `C:` before it
            if entries[first].direction == "S":
                i = first - 1
                while i >= 0 and entries[i].direction == "C" and entries[i].session == (
                    entries[first].session
                ):
                    chosen.add(i)
                    i -= 1
            return chosen
    start = 0
    for i, e in enumerate(entries):
        if e.direction == "*" and e.session == "*" and e.data.startswith(b"scenario "):
            start = i + 1
    candidates = [
        i
        for i in range(start, len(entries))
        if entries[i].session != "*"
        and not (entries[i].direction == "*" and entries[i].data == CLIENT_CLOSED.encode())
    ]
    if not candidates:
        return set()
    last = candidates[-1]
    chosen = {last}
    session, direction = entries[last].session, entries[last].direction
    i = last - 1
    while i >= start and entries[i].session == session and entries[i].direction == direction:
        chosen.add(i)  # the other reads of the same reply
        i -= 1
    if direction == "S" and i >= start and entries[i].session == session:
        if entries[i].direction == "C":
            chosen.add(i)  # the command that drew the reply
    return chosen


def _entry_lines(e: Entry, limit: int, failing: bool, anchor: str) -> list[Line]:
    """The rows of one entry: one per wire line, the label on the first."""
    who = f"{e.at:7.3f} {e.session} {e.direction}:"
    mark = " fail" if failing else ""
    if e.direction == "*":
        text = Markup(html.escape(e.data.decode("utf-8", "replace"), quote=False))
        return [Line("ev" + mark, who, text, anchor)]
    css = ("c" if e.direction == "C" else "s") + mark
    if e.elided is not None:
        pieces: list[bytes | None] = [e.data[: e.elided.head], None, e.data[e.elided.head :]]
    else:
        shown = e.data[:limit]
        pieces = [shown] if len(e.data) <= limit else [shown, None]
    lines: list[Line] = []
    for piece in pieces:
        if piece is None:
            note = Markup(html.escape(_elision(e, limit), quote=False))
            lines.append(Line("el" + mark, "" if lines else who, note, "" if lines else anchor))
            continue
        for chunk in piece.splitlines(keepends=True) or ([b""] if e.elided is None else []):
            first = not lines
            lines.append(
                Line(css, who if first else "", Markup(render_bytes(chunk)), anchor if first else "")
            )
    return lines


def _elision(e: Entry, limit: int) -> str:
    if e.elided is None:
        return f"… {len(e.data) - limit} more octets not shown (--transcript-limit)"
    omitted = e.elided.length - len(e.data)
    return (
        f"… {omitted} octets not kept ({e.elided.length} in all, sha256 {e.elided.sha256}; "
        "mailspec run --full-transcripts keeps them) …"
    )


def transcript_blocks(cell: Cell, limit: int, failing: set[int], fail_anchor: str) -> list[Block]:
    first_failing = min(failing) if failing else -1
    blocks: list[Block] = []
    for i, e in enumerate(cell.transcript):
        verification = is_verification_session(e.session)
        if not blocks or blocks[-1].verification != verification:
            blocks.append(Block(verification, []))
        block = blocks[-1]
        if e.session not in block.sessions:
            block.sessions.append(e.session)
        if i in failing:
            block.failing = True
        anchor = fail_anchor if i == first_failing else ""
        block.lines.extend(_entry_lines(e, limit, i in failing, anchor))
    return blocks


def _failure_view(f: dict[str, Any], row: Row) -> FailureView:
    step, text = f.get("step"), str(f.get("step_text") or "")
    where = f"step {step} ({text})" if step else text
    req_id = f.get("requirement") or (row.requirements[0] if row.requirements else "")
    return FailureView(
        where=where,
        expected=str(f.get("expected", "")),
        actual=str(f.get("actual", "")),
        requirement=requirement(str(req_id)),
        level=str(f.get("level") or row.level),
        kind=str(f.get("kind") or ""),
    )


def _one_line(cell: Cell) -> str:
    if cell.failures:
        f = cell.failures[0]
        line = f"expected {f.get('expected', '')}; got {f.get('actual', '')}"
        if f.get("step"):
            line = f"step {f['step']} ({f.get('step_text', '')}): {line}"
        return line
    return cell.message or cell.expectation_reason or cell.verdict


def _counts(cells: list[Cell]) -> list[tuple[str, int]]:
    from conformance.reports.matrix import VERDICTS

    found = [c.verdict for c in cells]
    return [(v, found.count(v)) for v in VERDICTS if v in found]


@dataclass
class Page:
    title: str
    single: bool
    matrix: Matrix
    summary: list[SummaryItem]
    sections: list[SectionView]
    transcripts: list[tuple[Target, list[TranscriptView]]]
    css: Markup
    js: Markup

    @property
    def problems(self) -> int:
        return sum(s.count for s in self.summary if s.verdict in PROBLEM_VERDICTS)

    @property
    def warnings(self) -> int:
        return sum(s.count for s in self.summary if s.verdict == "WARN")


def build_page(matrix: Matrix, *, title: str, limit: int) -> Page:
    single = len(matrix.targets) == 1
    summary: list[SummaryItem] = []
    transcripts: list[tuple[Target, list[TranscriptView]]] = []
    hrefs: dict[tuple[str, str], str] = {}  # (target, scenario) -> where its cell links
    not_run: dict[tuple[str, str], SummaryItem] = {}  # (target, message) -> its one row
    for t in matrix.targets:
        views: list[TranscriptView] = []
        for r in matrix.rows:
            c = matrix.cell(t, r)
            if c is None:
                continue
            a = anchor(t.label, r.id)
            failing = failing_indexes(c)
            fail_anchor = f"{a}-fail" if failing else a
            hrefs[t.label, r.id] = f"#{fail_anchor}"
            failures = [_failure_view(f, r) for f in c.failures]
            blocks = transcript_blocks(c, limit, failing, fail_anchor)
            views.append(TranscriptView(a, fail_anchor, t.label, r, c, failures, blocks))
            if c.verdict == "ERROR" and c.message.startswith(NOT_RUN_PREFIX):
                group = not_run.get((t.label, c.message))
                if group is not None:
                    group.count += 1
                    group.line = f"{group.count} scenarios {c.message}, from {group.row.id} on"
                    continue
            if c.verdict in SUMMARY_VERDICTS:
                first = failures[0] if failures else None
                summary.append(
                    SummaryItem(
                        target=t.label,
                        row=r,
                        verdict=c.verdict,
                        requirement=first.requirement
                        if first
                        else requirement(r.requirements[0] if r.requirements else ""),
                        level=first.level if first else r.level,
                        line=_one_line(c),
                        href=f"#{fail_anchor}",
                    )
                )
                if c.verdict == "ERROR" and c.message.startswith(NOT_RUN_PREFIX):
                    not_run[t.label, c.message] = summary[-1]
        transcripts.append((t, views))
    summary.sort(key=lambda s: SUMMARY_VERDICTS.index(s.verdict))
    sections: list[SectionView] = []
    for name, rows in matrix.sections():
        counts = []
        for t in matrix.targets:
            cells = [c for r in rows if (c := matrix.cell(t, r)) is not None]
            counts.append((t.label, _counts(cells)))
        row_views = []
        for r in rows:
            cells: list[CellView | None] = []
            for t in matrix.targets:
                c = matrix.cell(t, r)
                if c is None:
                    cells.append(None)
                    continue
                message = "" if c.verdict == "PASS" else _one_line(c)
                cells.append(CellView(c.verdict, hrefs[t.label, r.id], message))
            row_views.append(
                RowView(
                    r,
                    [requirement(q) for q in r.requirements],
                    cells,
                    matrix.all_pass(r),
                    " ".join([r.id, r.title, name, *r.requirements]).lower(),
                )
            )
        sections.append(SectionView(name, counts, row_views))
    return Page(
        title,
        single,
        matrix,
        summary,
        sections,
        transcripts,
        Markup(_asset("report.css")),
        Markup(_asset("report.js")),
    )


@cache
def _asset(name: str) -> str:
    return (resources.files("conformance.reports") / "templates" / name).read_text("utf-8")


@cache
def _environment() -> Any:
    import jinja2

    try:  # compiled templates kept between runs (Jinja's own cache, in the temp dir)
        cache: Any = jinja2.FileSystemBytecodeCache()
    except (OSError, RuntimeError):
        cache = None
    return jinja2.Environment(
        loader=jinja2.PackageLoader("conformance.reports", "templates"),
        bytecode_cache=cache,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def render_page(matrix: Matrix, *, title: str, limit: int) -> str:
    from conformance.reports.matrix import VERDICTS

    page = build_page(matrix, title=title, limit=limit)
    template = _environment().get_template("report.html.j2")
    return str(template.render(page=page, verdicts=VERDICTS))
