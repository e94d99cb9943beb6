"""The client kinds of `mailspec load` and their weights (docs/load.md);
kept apart so that building the CLI parser imports nothing heavy."""

from __future__ import annotations

FLOWS = ("fetch-delete", "leave-on-server", "top-preview", "noop-keepalive", "failed-login")
DEFAULT_MIX = {
    "fetch-delete": 3,
    "leave-on-server": 3,
    "top-preview": 2,
    "noop-keepalive": 1,
    "failed-login": 1,
}


def parse_mix(text: str) -> dict[str, int]:
    """`fetch-delete=3,top-preview=1`: flows not named keep their default
    weight; ValueError names the bad part."""
    mix = dict(DEFAULT_MIX)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.partition("=")
        if name not in FLOWS or not sep:
            raise ValueError(f"expected FLOW=WEIGHT with FLOW one of {', '.join(FLOWS)}: {part!r}")
        if not weight.isdigit():
            raise ValueError(f"weight must be a whole number: {part!r}")
        mix[name] = int(weight)
    if not any(mix.values()):
        raise ValueError("every weight is 0: nothing to run")
    return mix


def format_mix(mix: dict[str, int]) -> str:
    return ",".join(f"{name}={mix[name]}" for name in FLOWS)
