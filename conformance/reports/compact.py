"""Transcripts a CI can keep (docs/cli.md, "Report size").

A passing run of the whole corpus moves megabytes of message bodies (the
1.1 MB fixture message is fetched six times by one pipelining scenario);
kept verbatim they make reports no artifact store or JUnit viewer wants.
Before the reports are written, each scenario's transcript is shortened:

* PASS and SKIP scenarios: the sessions of the set-up check (`verify-…`)
  and of the capability probe (`probe`), the same dozen lines before every
  scenario, become one note each with their entry count, octets and
  SHA-256; consecutive entries of one session and
  direction (a reply body arrives in many reads) are joined; a joined
  entry longer than `PASSING_KEEP_OCTETS` or `PASSING_KEEP_LINES` lines is
  kept as its first and last line (each at most `EDGE_LINE_OCTETS`), with
  its length and SHA-256 (`Elision`), so two runs still compare.
* every other verdict keeps the exact bytes of each exchange up to
  `FAILING_KEEP_OCTETS` a step: a longer run of reads is kept as its first
  and last half of that bound, with the elision recorded.
* `--full-transcripts` skips all of this.

Events (`*` entries) are never shortened.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from collections.abc import Iterable

from conformance.core.results import Direction, Elision, RunResult, TranscriptEntry, Verdict

PASSING_KEEP_OCTETS = 1024  # a passing entry up to this size is kept whole
PASSING_KEEP_LINES = 4  # ... and up to this many lines
EDGE_LINE_OCTETS = 256  # first/last line kept of a shortened passing entry
FAILING_KEEP_OCTETS = 64 * 1024  # exact bytes kept a step in a non-PASS scenario
PASSING_VERDICTS = frozenset({Verdict.PASS, Verdict.SKIP})
VERIFY_PREFIX = "verify-"  # transcript sessions of the set-up check (engine)
PROBE_SESSION = "probe"  # the capability probe's session


def is_verification_session(session: str) -> bool:
    return session.startswith(VERIFY_PREFIX) or session == PROBE_SESSION


def _summarize_verification(entries: list[TranscriptEntry]) -> list[TranscriptEntry]:
    """Each stretch of one set-up or probe session as one note."""
    out: list[TranscriptEntry] = []
    i = 0
    while i < len(entries):
        e = entries[i]
        if not is_verification_session(e.session):
            out.append(e)
            i += 1
            continue
        j = i
        while j < len(entries) and entries[j].session == e.session:
            j += 1
        digest = hashlib.sha256()
        octets = 0
        for x in entries[i:j]:
            digest.update(x.direction.value.encode() + x.data)
            octets += len(x.data) if x.direction is not Direction.EVENT else 0
        note = (
            f"set-up check passed: {j - i} entries not kept ({octets} octets on the wire, "
            f"sha256 {digest.hexdigest()}); --full-transcripts keeps them"
        )
        out.append(TranscriptEntry(e.at, e.session, Direction.EVENT, note.encode()))
        i = j
    return out


def _runs(entries: Iterable[TranscriptEntry]) -> list[list[TranscriptEntry]]:
    """Consecutive wire entries of one session and direction, grouped."""
    groups: list[list[TranscriptEntry]] = []
    for e in entries:
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and e.direction is not Direction.EVENT
            and last.direction is e.direction
            and last.session == e.session
            and last.elided is None
            and e.elided is None
        ):
            groups[-1].append(e)
        else:
            groups.append([e])
    return groups


def _elide(first: TranscriptEntry, data: bytes, head: bytes, tail: bytes) -> TranscriptEntry:
    return TranscriptEntry(
        first.at,
        first.session,
        first.direction,
        head + tail,
        Elision(len(data), hashlib.sha256(data).hexdigest(), len(head)),
        first.step,
    )


def _edges(data: bytes) -> tuple[bytes, bytes]:
    """The first and the last line of `data`, each bounded."""
    first_end = data.find(b"\n")
    first = data[: first_end + 1] if first_end >= 0 else data
    first = first[:EDGE_LINE_OCTETS]
    rest = data[len(first) :]
    body = rest[:-1] if rest.endswith(b"\n") else rest
    last_start = body.rfind(b"\n") + 1
    last = rest[last_start:]
    if len(last) > EDGE_LINE_OCTETS:
        last = last[-EDGE_LINE_OCTETS:]
    return first, last


def compact_passing(entries: list[TranscriptEntry]) -> list[TranscriptEntry]:
    out: list[TranscriptEntry] = []
    for group in _runs(_summarize_verification(entries)):
        data = b"".join(e.data for e in group)
        if group[0].direction is Direction.EVENT or (
            len(data) <= PASSING_KEEP_OCTETS and data.count(b"\n") <= PASSING_KEEP_LINES
        ):
            out.extend(group)
            continue
        head, tail = _edges(data)
        out.append(_elide(group[0], data, head, tail))
    # the step marks lead a reader to a failing exchange; a passing
    # transcript has none, so they would only weigh on the report
    return [e if e.step is None else replace(e, step=None) for e in out]


def compact_failing(entries: list[TranscriptEntry]) -> list[TranscriptEntry]:
    out: list[TranscriptEntry] = []
    half = FAILING_KEEP_OCTETS // 2
    for group in _runs(entries):
        data = b"".join(e.data for e in group)
        if group[0].direction is Direction.EVENT or len(data) <= FAILING_KEEP_OCTETS:
            out.extend(group)  # exact, read by read, with their times
            continue
        out.append(_elide(group[0], data, data[:half], data[-half:]))
    return out


def compact_run(run: RunResult) -> None:
    """Shorten every scenario's transcript in place (see the module doc)."""
    for r in run.results:
        if r.verdict in PASSING_VERDICTS:
            r.transcript = compact_passing(r.transcript)
        else:
            r.transcript = compact_failing(r.transcript)


def restore_hint(entry: TranscriptEntry) -> str:
    """The one-line note shown where octets were left out."""
    e = entry.elided
    if e is None:
        return ""
    omitted = e.length - len(entry.data)
    return (
        f"[… {omitted} octets not kept; {e.length} in all, sha256 {e.sha256}; "
        "--full-transcripts keeps them]"
    )


__all__ = [
    "FAILING_KEEP_OCTETS",
    "compact_failing",
    "compact_passing",
    "compact_run",
    "restore_hint",
]
