"""The requirements catalogue (a copy of shared/rfc/requirements.yaml).

Scenarios cite requirement IDs; reports show each requirement's summary and
RFC section from here, never RFC sentences."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml


@dataclass(frozen=True)
class Requirement:
    id: str
    protocol: str  # "pop3" | "smtp"
    rfc: int
    section: str
    level: str  # MUST | SHOULD | MAY | MUST-NOT | SHOULD-NOT | IMPLIED
    summary: str
    testable: bool
    how: str

    @property
    def reference(self) -> str:
        return f"RFC {self.rfc} §{self.section}"


@cache
def load_catalogue() -> dict[str, Requirement]:
    text = (resources.files("conformance") / "data" / "requirements.yaml").read_text("utf-8")
    # libyaml when PyYAML has it: the pure-Python loader takes ~0.3 s of CPU
    # for this file, which every report with requirement summaries pays.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(text, Loader=loader)  # a safe loader either way
    out: dict[str, Requirement] = {}
    for protocol in ("pop3", "smtp"):
        for e in data.get(protocol, []):
            out[e["id"]] = Requirement(
                id=e["id"],
                protocol=protocol,
                rfc=int(e["rfc"]),
                section=str(e["section"]),
                level=e["level"],
                summary=e["summary"],
                testable=bool(e["testable"]),
                how=e.get("how", ""),
            )
    return out
