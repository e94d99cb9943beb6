"""The framing oracle's vocabulary: a rule every reply of a protocol is held
to whatever the scenario asks, and a finding that one was broken (always a
FAIL, at any scenario level; docs/scenario-format.md, *Framing oracle*).
Each protocol package defines its own rules (conformance.pop3.framing,
conformance.smtp.framing)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FramingRule:
    key: str
    summary: str
    requirements: tuple[str, ...]


@dataclass(frozen=True)
class FramingFinding:
    rule: FramingRule
    detail: str  # what arrived, invisible bytes escaped

    @property
    def requirement(self) -> str:
        return self.rule.requirements[0]

    def expected(self) -> str:
        return f"{self.rule.summary} ({', '.join(self.rule.requirements)})"


def finding(rule: FramingRule, detail: str) -> FramingFinding:
    return FramingFinding(rule, detail)
