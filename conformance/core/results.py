"""What a run produces: verdicts, failures, transcripts.

This module is the contract between the engine (which fills these objects)
and everything that presents them (console, JUnit, JSON, HTML matrix,
expectations).  It has no I/O and no dependency on the rest of the package.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Verdict(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"  # a MUST-level check broke, or a framing rule broke
    WARN = "WARN"  # only SHOULD/MAY checks broke (FAIL under --strict)
    SKIP = "SKIP"  # the target lacks a needed capability; reason says which
    ERROR = "ERROR"  # the scenario could not run (unreachable, provisioning)
    XFAIL = "XFAIL"  # failed, and listed in the expectations file
    XPASS = "XPASS"  # passed, but listed as expected to fail: the list is stale

    @property
    def fails_run(self) -> bool:
        """True for verdicts that make `mailspec run` exit 1."""
        return self in (Verdict.FAIL, Verdict.XPASS)

    @property
    def unjudged(self) -> bool:
        """True for verdicts that make `mailspec run` exit 3: the suite could not judge."""
        return self is Verdict.ERROR


class Direction(enum.StrEnum):
    CLIENT = "C"  # bytes we sent
    SERVER = "S"  # bytes we received
    EVENT = "*"  # connect, close, timeout, idle: a note, not wire bytes


@dataclass(frozen=True, slots=True)
class Elision:
    """Octets a report left out of a transcript entry: the entry's `data`
    holds the first `head` octets and then the last ones of the original."""

    length: int  # octets the original entry had
    sha256: str  # hex digest of all of them, to compare runs without the bytes
    head: int  # data[:head] starts the original, data[head:] ends it


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    at: float  # seconds since the scenario started
    session: str  # session name ("a", "b", …)
    direction: Direction
    data: bytes  # exact bytes (already redacted where secrets were sent)
    elided: Elision | None = None  # set when a report kept only part of `data`
    step: int | None = None  # the scenario step (1-based) that caused it; None: set-up


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a scenario did not pass: which step, expected vs. arrived."""

    step: int | None  # 1-based step index, None for scenario-level problems
    step_text: str  # the step as the scenario wrote it, e.g. "C: RETR 1"
    expected: str
    actual: str  # printable, invisible bytes escaped (\r\n, \x00)
    requirement: str | None = None  # the requirement this check belongs to
    level: str = "MUST"  # the level of the broken check
    kind: str = "mismatch"  # mismatch | framing | timeout | closed | assert | error

    def one_line(self) -> str:
        where = f"step {self.step} ({self.step_text}): " if self.step else ""
        return f"{where}expected {self.expected}; got {self.actual}"


@dataclass(slots=True)
class ScenarioResult:
    scenario_id: str
    title: str
    section: str  # report grouping, e.g. "RFC 1939 §5 STAT"
    requirements: list[str]
    level: str  # MUST | SHOULD | MAY
    verdict: Verdict
    message: str = ""  # one line: failure summary or skip reason
    failures: list[Failure] = field(default_factory=list)
    transcript: list[TranscriptEntry] = field(default_factory=list)
    duration: float = 0.0
    source: str = ""  # "scenarios/pop3/stat.yaml:12"
    expectation_reason: str | None = None  # set for XFAIL / XPASS


@dataclass(slots=True)
class TargetFingerprint:
    address: str  # "host:port"
    tls: str  # "plain" | "stls" | "implicit"
    greeting: str
    capabilities: list[str]  # as learned (CAPA lines or probe results)
    capa_authorization: list[str] | None = None  # raw CAPA lines before login
    #: POP3: raw CAPA lines after login; SMTP: the EHLO lines inside TLS
    #: (a plain run on a server offering STARTTLS)
    capa_transaction: list[str] | None = None
    embedded: bool = False  # True when the bundled reference server was started
    # TLS (issue 10): what the probe's handshake showed; None under plain
    tls_version: str | None = None  # "TLSv1.3"
    tls_cipher: str | None = None  # "TLS_AES_256_GCM_SHA384"
    certificate_subject: str | None = None  # "commonName=…"; None when not verified
    certificate_issuer: str | None = None
    certificate_not_after: str | None = None  # ISO 8601 UTC
    certificate_verified: bool | None = None  # False with --tls-no-verify
    capa_plaintext: list[str] | None = None  # CAPA lines before STLS (--tls stls)
    #: whether a plaintext session offered USER or SASL PLAIN/LOGIN before TLS;
    #: None when not known (implicit TLS has no plaintext session)
    plaintext_login_offered: bool | None = None


class MeasurementOutcome(enum.StrEnum):
    """How a measurement ended (docs/cli.md, *INFO measurements*)."""

    MEASURED = "measured"  # `value` is the fact, found inside the bounds
    AT_LEAST = "at-least"  # the search reached its upper bound: the fact is `value` or more
    BELOW = "below"  # even the lower bound failed: the fact is less than `value`
    NOT_MEASURED = "not-measured"  # `value` is None; `note` says why


@dataclass(slots=True)
class Measurement:
    """An INFO result: a measured fact about the target, shown in every
    report and never part of a verdict or of the exit code."""

    id: str  # "info.longest-command-line"
    title: str  # "longest command line answered"
    unit: str  # "octets" | "commands" | "seconds" | "connections"
    method: str  # how it was measured, one sentence
    bounds: dict[str, float]  # the search's limits, e.g. {"min": 64, "max": 65536}
    outcome: MeasurementOutcome
    value: float | None = None  # None only when not measured
    note: str = ""  # why not measured, or what else was seen
    samples: list[float] = field(default_factory=list)  # raw readings (the delay's three)

    def summary(self) -> str:
        """One line: `255 octets`, `none up to 50 commands`, `not measured: …`."""
        if self.outcome is MeasurementOutcome.NOT_MEASURED or self.value is None:
            return f"not measured: {self.note}" if self.note else "not measured"
        number = f"{self.value:.3f}" if self.unit == "seconds" else f"{self.value:g}"
        text = {
            MeasurementOutcome.MEASURED: f"{number} {self.unit}",
            MeasurementOutcome.AT_LEAST: f"{number} {self.unit} or more (the upper bound)",
            MeasurementOutcome.BELOW: f"less than {number} {self.unit} (the lower bound)",
        }[self.outcome]
        return f"{text}; {self.note}" if self.note else text


@dataclass(slots=True)
class RunResult:
    tool_version: str
    started_at: str  # ISO 8601 UTC
    duration: float
    target: TargetFingerprint
    config: dict[str, Any]  # the effective configuration, secrets removed
    results: list[ScenarioResult]
    strict: bool = False
    #: Why the run stopped before every selected scenario ran ("interrupted",
    #: "target unreachable since <scenario>"); None when it ran to the end.
    incomplete: str | None = None
    #: INFO results (conformance.pop3.measurements): facts, never verdicts
    measurements: list[Measurement] = field(default_factory=list)

    def counts(self) -> dict[Verdict, int]:
        out = {v: 0 for v in Verdict}
        for r in self.results:
            out[r.verdict] += 1
        return out

    @property
    def exit_code(self) -> int:
        """0 = every scenario judged, no FAIL, XPASS or ERROR; 3 = the suite
        could not judge (an ERROR, or the run stopped early) — whatever else
        failed, since the verdicts are incomplete; 1 = conformance failures."""
        if self.incomplete or any(r.verdict.unjudged for r in self.results):
            return 3
        return 1 if any(r.verdict.fails_run for r in self.results) else 0
