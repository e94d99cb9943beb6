"""Requirement coverage: which scenarios check each catalogue requirement,
totals by RFC and level, what is left uncovered, and what is not testable
over the wire (with the catalogue's `how`). `mailspec coverage [--json]`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from conformance.core.catalogue import Requirement


class _ScenarioLike(Protocol):
    id: str
    requirements: list[str]


@dataclass
class Totals:
    testable: int = 0
    covered: int = 0
    uncovered: list[str] = field(default_factory=list)
    not_testable: list[str] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return round(100.0 * self.covered / self.testable, 1) if self.testable else 100.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "testable": self.testable,
            "covered": self.covered,
            "percent": self.percent,
            "uncovered": list(self.uncovered),
            "not_testable": list(self.not_testable),
        }


@dataclass
class Coverage:
    protocol: str
    requirements: dict[str, Requirement]
    scenarios_for: dict[str, list[str]]  # requirement id -> scenario ids (every catalogue id)
    unknown: dict[str, list[str]]  # cited by scenarios, absent from the catalogue

    def _totals(self, key: str) -> dict[str, Totals]:
        out: dict[str, Totals] = {}
        for req in self.requirements.values():
            t = out.setdefault(str(getattr(req, key)), Totals())
            if not req.testable:
                t.not_testable.append(req.id)
            elif self.scenarios_for[req.id]:
                t.testable += 1
                t.covered += 1
            else:
                t.testable += 1
                t.uncovered.append(req.id)
        return out

    @property
    def by_rfc(self) -> dict[str, Totals]:
        return dict(sorted(self._totals("rfc").items(), key=lambda kv: int(kv[0])))

    @property
    def by_level(self) -> dict[str, Totals]:
        return self._totals("level")

    @property
    def total(self) -> Totals:
        t = Totals()
        for part in self.by_rfc.values():
            t.testable += part.testable
            t.covered += part.covered
            t.uncovered += part.uncovered
            t.not_testable += part.not_testable
        return t

    def to_dict(self) -> dict[str, Any]:
        total = self.total
        return {
            "protocol": self.protocol,
            **total.to_dict(),
            "by_rfc": {k: v.to_dict() for k, v in self.by_rfc.items()},
            "by_level": {k: v.to_dict() for k, v in self.by_level.items()},
            "requirements": {
                rid: {
                    "rfc": req.rfc,
                    "section": req.section,
                    "level": req.level,
                    "testable": req.testable,
                    "summary": req.summary,
                    "scenarios": self.scenarios_for[rid],
                }
                for rid, req in self.requirements.items()
            },
            "not_testable_reasons": {
                rid: req.how for rid, req in self.requirements.items() if not req.testable
            },
            "unknown_requirements": self.unknown,
        }


def compute_coverage(
    catalogue: dict[str, Requirement],
    scenarios: Iterable[_ScenarioLike],
    protocol: str = "pop3",
) -> Coverage:
    reqs = {rid: r for rid, r in catalogue.items() if r.protocol == protocol}
    scenarios_for: dict[str, list[str]] = {rid: [] for rid in reqs}
    unknown: dict[str, list[str]] = {}
    for sc in scenarios:
        for rid in sc.requirements:
            if rid in scenarios_for:
                if sc.id not in scenarios_for[rid]:
                    scenarios_for[rid].append(sc.id)
            elif rid not in catalogue:
                unknown.setdefault(rid, []).append(sc.id)
    return Coverage(protocol, reqs, scenarios_for, unknown)


def _table(title: str, rows: dict[str, Totals], label: str) -> list[str]:
    lines = [title, f"  {label:<12} {'testable':>8} {'covered':>8} {'%':>6}  not testable"]
    for key, t in rows.items():
        name = f"RFC {key}" if label == "RFC" else key
        lines.append(
            f"  {name:<12} {t.testable:>8} {t.covered:>8} {t.percent:>6.1f}  {len(t.not_testable)}"
        )
    return lines


def render_text(cov: Coverage, *, verbose: bool = True) -> str:
    total = cov.total
    lines = [
        f"Requirement coverage ({cov.protocol}): {total.covered}/{total.testable} testable "
        f"requirements covered ({total.percent:.1f}%), {len(total.not_testable)} not testable",
        "",
    ]
    lines += _table("By RFC:", cov.by_rfc, "RFC")
    lines.append("")
    lines += _table("By level:", cov.by_level, "level")
    if verbose:
        lines += ["", "Requirements and the scenarios that check them:"]
        for rid, req in cov.requirements.items():
            if not req.testable:
                checked = "(not testable)"
            else:
                checked = ", ".join(cov.scenarios_for[rid]) or "-- uncovered --"
            lines.append(f"  {rid:<22} {req.level:<10} {checked}")
    lines += ["", f"Uncovered testable requirements ({len(total.uncovered)}):"]
    for rid in total.uncovered:
        req = cov.requirements[rid]
        lines.append(f"  {rid} ({req.level}, {req.reference}): {req.summary}")
    lines += ["", f"Not testable over the wire ({len(total.not_testable)}):"]
    for rid in total.not_testable:
        req = cov.requirements[rid]
        lines.append(f"  {rid} ({req.level}, {req.reference}): {req.how or req.summary}")
    if cov.unknown:
        lines += ["", "Cited by scenarios but not in the catalogue:"]
        for rid, ids in cov.unknown.items():
            lines.append(f"  {rid}: {', '.join(ids)}")
    return "\n".join(lines)
