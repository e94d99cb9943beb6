"""How much faster is `mailspec run` against Dovecot with account pools?

Starts the interop harness's Dovecot (interop/servers.py: Debian's 2.3,
127.0.0.1, a temporary directory) with N account pools (msmain1 ... msmainN,
the config's `pool: N`), then runs the same corpus twice against it in this
one run, one after the other:

1. `mailspec run --config POOLS.yaml --jobs 1` (serial);
2. `mailspec run --config POOLS.yaml` (jobs: the config's pool, i.e. N);

and prints each run's wall time, the CPU of mailspec (the run's process)
and of Dovecot (every process of its session), the ratio serial / parallel,
whether the two runs gave the same verdicts (scripts/compare-verdicts.py
does the same on the two JSON reports, which are kept under --reports)
and whether they match tests/interop/golden/dovecot.json.

    python benchmarks/bench_interop_jobs.py [--pools 8] [--default-delays]
        [--high-performance] [--select GLOB]... [--reports DIR]

--default-delays keeps Dovecot's failed-login delay (2 s) and its per-IP
auth penalty (2 -> 4 -> 8 -> 15 s, which also delays the other pools'
logins from 127.0.0.1); without it the harness's fast_failures setting is
used (as tests/interop does). --high-performance runs Dovecot's login and
pop3 processes in its high-performance mode (interop/servers.py).

Loopback only; needs root and the dovecot-pop3d package (installed with
apt-get when missing). Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conformance.core.fixture import load_fixture  # noqa: E402
from interop.servers import DovecotServer  # noqa: E402

GOLDEN = REPO / "tests" / "interop" / "golden" / "dovecot.json"
RUN_TIMEOUT_SECONDS = 900


def session_cpu(leader: int) -> float:
    """CPU seconds of every live process in `leader`'s session, with what
    they reaped (Dovecot's master reaps its per-connection children)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[3]) == leader:  # field 6 of stat: the session id
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / tick


def verdicts(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text("utf-8"))
    return {r["id"]: r["verdict"] for r in data["results"]}


def timed_run(
    config: Path, jobs: list[str], report: Path, extra: list[str], leader: int
) -> tuple[str, float]:
    environ = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "conformance", "run", "--config", str(config), *jobs]
    argv += ["--json", str(report), *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = session_cpu(leader)
    started = time.perf_counter()
    done = subprocess.run(
        argv,
        env=environ,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
        cwd=report.parent,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    server = session_cpu(leader) - server_before
    if done.returncode not in (0, 1):
        raise SystemExit(f"mailspec run {' '.join(jobs)} exited {done.returncode}: {done.stderr}")
    return f"{wall:8.1f} s wall, mailspec CPU {cpu:5.1f} s, Dovecot CPU {server:5.1f} s", wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", type=int, default=8, help="account pools (parallel jobs)")
    parser.add_argument("--default-delays", action="store_true", help="Dovecot's auth delays")
    parser.add_argument("--high-performance", action="store_true", help="reuse processes")
    parser.add_argument("--select", action="append", default=[], metavar="GLOB")
    parser.add_argument("--reports", type=Path, help="keep the JSON reports here")
    args = parser.parse_args()
    reports = args.reports or Path(tempfile.mkdtemp(prefix="mailspec-bench-jobs-"))
    reports.mkdir(parents=True, exist_ok=True)
    extra = [a for s in args.select for a in ("--select", s)]

    server = DovecotServer(
        load_fixture(),
        fast_failures=not args.default_delays,
        pools=args.pools,
        high_performance=args.high_performance,
    )
    server.start()
    try:
        assert server.process is not None
        config = server.write_run_config(reports / "dovecot-pools.yaml")
        print(f"server: {server.version()} on {server.address}")
        print(
            f"  {args.pools} account pools, "
            f"{'default auth-failure delays' if args.default_delays else 'fast_failures'}, "
            f"{'high-performance' if args.high_performance else 'default (high-security)'} "
            f"process mode; load average before: {os.getloadavg()[0]:.2f}"
        )
        serial, parallel = reports / "serial.json", reports / "parallel.json"
        line, serial_wall = timed_run(config, ["--jobs", "1"], serial, extra, server.process.pid)
        print(f"serial (--jobs 1)      {line}")
        line, parallel_wall = timed_run(config, [], parallel, extra, server.process.pid)
        print(f"parallel (--jobs {args.pools:<2})   {line}")
    finally:
        server.stop()
    before, after = verdicts(serial), verdicts(parallel)
    differ = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    print(
        f"speed-up                {serial_wall / parallel_wall:7.2f}x  "
        f"(verdicts {'identical' if not differ else f'DIFFER in {len(differ)}: {differ[:5]}'})"
    )
    if not args.select:
        golden = json.loads(GOLDEN.read_text("utf-8"))
        moved = sorted(k for k in golden.keys() | after.keys() if golden.get(k) != after.get(k))
        print(f"vs golden/dovecot.json  {'same verdicts' if not moved else f'{len(moved)} moved'}")
    print(f"reports                 {serial} {parallel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
