"""Console output in the h2spec spirit: results grouped by section, one line
per scenario with a coloured verdict (TTY only; never with NO_COLOR), the
failures explained at the end (requirement summary and `RFC n §s`, step,
expected, actual), a summary line, and progress on stderr for long runs."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from conformance.reports.text import explain, transcript_lines
from conformance.core.results import RunResult, ScenarioResult, Verdict

_COLORS = {
    Verdict.PASS: "32",  # green
    Verdict.FAIL: "31;1",  # bold red
    Verdict.WARN: "33",  # yellow
    Verdict.SKIP: "36",  # cyan
    Verdict.ERROR: "35;1",  # bold magenta
    Verdict.XFAIL: "34",  # blue
    Verdict.XPASS: "31;1",
}
#: The verdicts `mailspec run --quiet` still prints a line for.
QUIET_SHOWS = frozenset({Verdict.FAIL, Verdict.WARN, Verdict.ERROR, Verdict.XPASS})
PROGRESS_AFTER = 2.0  # seconds: short runs show no progress at all
PROGRESS_EVERY = 10.0  # seconds between progress lines when stderr is not a TTY


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def use_color(stream: TextIO) -> bool:
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return _isatty(stream)


def summary_line(run: RunResult) -> str:
    """`N passed, N failed, N warned, N skipped[, N errors, N xfailed, N xpassed] in T s`."""
    c = run.counts()
    parts = [
        f"{c[Verdict.PASS]} passed",
        f"{c[Verdict.FAIL]} failed",
        f"{c[Verdict.WARN]} warned",
        f"{c[Verdict.SKIP]} skipped",
    ]
    if c[Verdict.ERROR]:
        parts.append(f"{c[Verdict.ERROR]} error{'s' if c[Verdict.ERROR] != 1 else ''}")
    if c[Verdict.XFAIL]:
        parts.append(f"{c[Verdict.XFAIL]} xfailed")
    if c[Verdict.XPASS]:
        parts.append(f"{c[Verdict.XPASS]} xpassed")
    return f"{', '.join(parts)} in {run.duration:.2f}s"


class Console:
    def __init__(
        self,
        out: TextIO | None = None,
        err: TextIO | None = None,
        *,
        color: bool | None = None,
        verbose: bool = False,
        quiet: bool = False,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.color = use_color(self.out) if color is None else color
        self.verbose = verbose
        #: one line only for the scenarios that need a look (QUIET_SHOWS);
        #: the failures, warnings and summary at the end are the same
        self.quiet = quiet
        self.err_tty = _isatty(self.err)
        self._section: str | None = None
        self._started = time.monotonic()
        self._last_progress = 0.0
        self._progress_shown = False

    # -- pieces ------------------------------------------------------------
    def paint(self, verdict: Verdict, text: str) -> str:
        return f"\x1b[{_COLORS[verdict]}m{text}\x1b[0m" if self.color else text

    def _bold(self, text: str) -> str:
        return f"\x1b[1m{text}\x1b[0m" if self.color else text

    def _write(self, line: str = "") -> None:
        self._clear_progress()
        print(line, file=self.out, flush=True)

    def _clear_progress(self) -> None:
        if self._progress_shown and self.err_tty:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self._progress_shown = False

    # -- the run ------------------------------------------------------------
    def header(self, target: str, count: int) -> None:
        self._started = time.monotonic()
        self._write(f"mailspec: {count} scenario{'s' if count != 1 else ''} against {target}")

    def result(self, result: ScenarioResult, done: int, total: int) -> None:
        """The engine's progress callback: one line per scenario (with
        `quiet`, per scenario that needs a look), then progress."""
        if self.quiet and result.verdict not in QUIET_SHOWS:
            self.progress(done, total, result.scenario_id)
            return
        if result.section != self._section:
            self._section = result.section
            self._write()
            self._write(self._bold(result.section))
        verdict = self.paint(result.verdict, f"{result.verdict.value:<5}")
        line = f"  {verdict} {result.scenario_id}: {result.title}"
        if result.verdict in (Verdict.SKIP, Verdict.XFAIL) and (
            result.message or result.expectation_reason
        ):
            line += f" ({result.expectation_reason or result.message})"
        self._write(line)
        self.progress(done, total, result.scenario_id)

    def progress(self, done: int, total: int, current: str = "") -> None:
        now = time.monotonic()
        if now - self._started < PROGRESS_AFTER or done >= total:
            return
        if self.err_tty:
            self.err.write(f"\r\x1b[K[{done}/{total}] {current}"[:200])
            self.err.flush()
            self._progress_shown = True
        elif now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            print(f"[{done}/{total}] {now - self._started:.0f}s", file=self.err, flush=True)

    def summary(self, run: RunResult) -> None:
        self._clear_progress()
        problems = [
            r for r in run.results if r.verdict in (Verdict.FAIL, Verdict.XPASS, Verdict.ERROR)
        ]
        warnings = [r for r in run.results if r.verdict is Verdict.WARN]
        for title, group in (("Failures", problems), ("Warnings", warnings)):
            if not group:
                continue
            self._write()
            self._write(self._bold(f"{title}:"))
            for r in group:
                self._write()
                lines = explain(r)
                self._write(f"  {self.paint(r.verdict, r.verdict.value)} {lines[0]}")
                for line in lines[1:]:
                    self._write(f"    {line}")
                if self.verbose and r.transcript:
                    self._write("    transcript:")
                    for line in transcript_lines(r.transcript):
                        self._write(f"    {line}")
        self._write()
        t = run.target
        origin = " (embedded reference server)" if t.embedded else ""
        self._write(f"target: {t.address}{origin}")
        if t.greeting:
            self._write(f"greeting: {t.greeting}")
        if t.capabilities:
            self._write(f"capabilities: {' '.join(t.capabilities)}")
        for m in run.measurements:  # INFO: facts, never verdicts
            self._write(f"INFO {m.id}: {m.summary()}")
        line = summary_line(run)
        verdict = (
            Verdict.FAIL
            if run.exit_code
            else (Verdict.WARN if run.counts()[Verdict.WARN] else Verdict.PASS)
        )
        self._write(self.paint(verdict, line))
