#!/usr/bin/env python3
"""Compare the verdicts of two `mailspec run --json` reports, scenario by
scenario: the check that a refactoring changed no verdict.

    python scripts/compare-verdicts.py BEFORE.json AFTER.json
    python scripts/compare-verdicts.py --write-golden REPORT.json GOLDEN.json

Either side may also be a golden file ({scenario id: verdict}, as
tests/interop/golden/ holds). Prints each scenario whose verdict differs
(and those only in one report); exit 0 when every verdict is identical,
1 otherwise. --write-golden records a report's verdicts as a golden file."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def verdicts(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if "results" not in data:  # a golden file
        return dict(data)
    return {r["id"]: r["verdict"] for r in data["results"]}


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--write-golden":
        golden = dict(sorted(verdicts(Path(argv[1])).items()))
        Path(argv[2]).write_text(json.dumps(golden, indent=1) + "\n", encoding="utf-8")
        print(f"{argv[2]}: {len(golden)} verdicts")
        return 0
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    before, after = (verdicts(Path(a)) for a in argv)
    differ = [
        f"{sid}: {before.get(sid, '(absent)')} -> {after.get(sid, '(absent)')}"
        for sid in sorted(before.keys() | after.keys())
        if before.get(sid) != after.get(sid)
    ]
    for line in differ:
        print(line)
    counts = {v: list(after.values()).count(v) for v in sorted(set(after.values()))}
    print(
        f"{len(before)} vs {len(after)} scenarios, {len(differ)} differ; after: "
        + ", ".join(f"{v} {n}" for v, n in counts.items())
    )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
