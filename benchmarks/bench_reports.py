"""How long writing the reports of a passing embedded run takes, against a
baseline measured in the same run: json.dumps of the same results with no
transcripts (the least any report writer must do). Prints figures only.

    python benchmarks/bench_reports.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

from conformance.cli import load_corpus, write_reports
from conformance.core.config import RunConfig, finalize
from conformance.pop3.engine import run_suite
from conformance.reports.compact import compact_run

BUDGET_SECONDS = 0.3  # issue 9: writing the reports of a passing run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    scenarios = [s for s in load_corpus([]) if not getattr(s, "slow", False)]
    run = run_suite(scenarios, finalize(RunConfig()))
    best_write = best_baseline = float("inf")
    total = 0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            outputs = [
                (f"--{n}", Path(tmp) / f)
                for n, f in (("junit", "junit.xml"), ("json", "results.json"), ("html", "r.html"))
            ]
            copy_of_run = copy.deepcopy(run)
            started = time.process_time()
            compact_run(copy_of_run)
            write_reports(copy_of_run, outputs)
            best_write = min(best_write, time.process_time() - started)
            total = sum(path.stat().st_size for _flag, path in outputs)
        started = time.process_time()
        json.dumps([[r.scenario_id, r.verdict.value, r.message] for r in run.results])
        best_baseline = min(best_baseline, time.process_time() - started)
    print(f"scenarios:            {len(run.results)}")
    print(f"reports written:      {total / 1e6:.2f} MB")
    print(f"write, CPU (best):    {best_write:.3f} s (budget {BUDGET_SECONDS} s)")
    print(f"baseline json.dumps:  {best_baseline * 1000:.2f} ms")
    print(f"ratio write/baseline: {best_write / max(best_baseline, 1e-9):.0f}x")


if __name__ == "__main__":
    main()
