"""How fast is a full conformance run, compared with what the wire costs?

The brief: the whole suite against a local server should take about as long
as its bytes take to cross loopback, plus pytest's start-up. This script
measures both in the same run and prints the ratio:

1. a loopback baseline on this machine, now: TCP connect time, round-trip
   time of a small request/response, and one-way throughput. The round
   trip twice: between two threads of this process, and between this
   process and an echo in a process of its own. Engine and server are
   always two processes, so the second is the floor of a turn (on this
   2-core VM ~50-75 us, stable; the first swings between ~6 and ~70 us
   with where the scheduler puts the two threads);
2. a full default run (`run_suite`, embedded reference server), timed;
3. from that run's transcripts: connections opened, request/response turns,
   octets both ways, and the deliberate waits the scenarios ask for, which
   no implementation can avoid: `idle:` and `expect_open:` seconds, and the
   pauses between the pieces of a `chop:` write (read from the transcript's
   "written in N pieces of K octets, P s apart" events: N - 1 pauses of P);
4. baseline = connects x connect + turns x RTT + octets / throughput + waits,
   and the ratio of the measured run to it (with and without the waits);
5. start-up of `mailspec run` and of pytest with the plugin, as subprocesses;
6. the per-turn overhead: what engine and server add to each request/response
   turn beyond the two-process round trip, connects, transfer and waits
   (and, beside it, beyond the one-process round trip); and
   how it splits: the CPU this process (the engine) and the embedded server
   (a child process, reaped at the end of the run) spent, per turn. This
   figure is the whole run's residual divided by its turns: it includes the
   server's start-up, the target probe and measurements, and every
   scenario's set-up (re-provisioning, the maildrop check sessions);
6b. the same serial run split in two: the time inside the scenarios
   beyond their waits (per turn: the turns with every scenario's set-up and
   checks), and outside them (start-up, probe, measurements). One turn
   alone, engine and server apart: benchmarks/bench_turns.py;
7. serial (`--jobs 1`) vs parallel (`--jobs` automatic) vs the critical path
   (the longest single scenario of the serial run), with a check that both
   runs gave the same verdicts;
8. with --profile N: one serial run under cProfile, the N functions with the
   most own time (waiting in select/recv/sleep shows as such).

Usage: python benchmarks/bench_suite.py [--repeat N] [--select GLOB]... [--profile N]

Loopback only; every loop is bounded. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import fnmatch
import io
import os
import pstats
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from conformance.core.config import RunConfig
from conformance.core.results import Direction, RunResult, ScenarioResult
from conformance.core.scenario import Scenario, bundled_scenario_dir, load_scenarios
from conformance.core.schedule import deliberate_wait
from conformance.pop3.engine import run_suite

RTT_SAMPLES = 2000
CONNECT_SAMPLES = 200
THROUGHPUT_OCTETS = 64 * 1024 * 1024
CHUNK = 64 * 1024


def _echo_server() -> tuple[socket.socket, int]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


def _echo(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.settimeout(30)
    with conn:
        while True:
            data = conn.recv(CHUNK)
            if not data:
                return
            if data[:1] == b"R":  # a round-trip probe: answer it
                conn.sendall(b"+OK\r\n")
            # anything else is throughput traffic: drained, not echoed


# A round-trip echo in a process of its own: what every turn between the
# engine and a server (always another process) costs the OS at the least.
ECHO_PROCESS = """
import socket, sys
listener = socket.create_server(("127.0.0.1", 0))
listener.settimeout(30)
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
conn.settimeout(30)
while conn.recv(64):
    conn.sendall(b"+OK\\r\\n")
"""


def two_process_rtt() -> float:
    """Median round trip of a small request to an echo in another process:
    the floor of a turn between two processes on this machine (on a VM the
    wake-up of the other side's core is most of it)."""
    echo = subprocess.Popen(
        [sys.executable, "-c", ECHO_PROCESS], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert echo.stdout is not None
        port = int(echo.stdout.readline())
        rtt = median_round_trip(port)
    finally:
        echo.wait(10)
    return rtt


def median_round_trip(port: int) -> float:
    """Median of RTT_SAMPLES small request/response round trips on one
    connection to an echo on `port`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rtts = []
        for _ in range(RTT_SAMPLES):
            started = time.perf_counter()
            s.sendall(b"RSTAT\r\n")
            s.recv(64)
            rtts.append(time.perf_counter() - started)
    return statistics.median(rtts)


def loopback_baseline() -> dict[str, float]:
    listener, port = _echo_server()
    try:
        connects = []
        for _ in range(CONNECT_SAMPLES):
            started = time.perf_counter()
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            connects.append(time.perf_counter() - started)
            s.close()
        rtt = median_round_trip(port)
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        block = b"x" * CHUNK
        started = time.perf_counter()
        sent = 0
        while sent < THROUGHPUT_OCTETS:
            s.sendall(block)
            sent += len(block)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # returns b"" once the echo side has drained and closed
        throughput = sent / (time.perf_counter() - started)
        s.close()
    finally:
        listener.close()
    return {
        "connect": statistics.median(connects),
        "rtt": rtt,
        "rtt_two_processes": two_process_rtt(),
        "throughput": throughput,
    }


def deliberate_waits(scenarios: list[Scenario]) -> float:
    """The scenarios' idle:/expect_open: seconds, as the scheduler counts them."""
    return sum(deliberate_wait(scenario) for scenario in scenarios)


CHOP_EVENT = re.compile(rb"^written in (\d+) pieces of \d+ octets, ([0-9.e+-]+) s apart$")


def chop_pauses(result: ScenarioResult) -> float:
    """Seconds a scenario's `chop:` writes paused between their pieces, as
    its transcript records them (the engine stops pausing at the scenario's
    deadline, so this is an upper bound there)."""
    seconds = 0.0
    for entry in result.transcript:
        if entry.direction is Direction.EVENT:
            found = CHOP_EVENT.match(entry.data)
            if found:
                seconds += (int(found[1]) - 1) * float(found[2])
    return seconds


def run_waits(run: RunResult, scenarios: list[Scenario]) -> float:
    """Every deliberate wait of a run: the scenarios' idle:/expect_open:
    seconds and the chop pauses its transcripts record."""
    return deliberate_waits(scenarios) + sum(chop_pauses(r) for r in run.results)


def wire_figures(results: list[ScenarioResult]) -> dict[str, int]:
    connects = turns = octets = 0
    for result in results:
        last_direction = None
        for entry in result.transcript:
            if entry.direction is Direction.EVENT:
                if entry.data.startswith(b"connected"):
                    connects += 1
                continue
            octets += len(entry.data)
            if entry.direction is Direction.CLIENT and last_direction is not Direction.CLIENT:
                turns += 1
            last_direction = entry.direction
    return {"connects": connects, "turns": turns, "octets": octets}


def in_scenarios(run: RunResult, scenarios: list[Scenario]) -> tuple[float, int]:
    """Seconds the run's scenarios took beyond their deliberate waits, and
    their turns (their own set-up and checks included)."""
    waits = {s.id: deliberate_wait(s) for s in scenarios}
    seconds = sum(r.duration - waits.get(r.scenario_id, 0.0) - chop_pauses(r) for r in run.results)
    return seconds, wire_figures(run.results)["turns"]


def children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def timed_runs(
    scenarios: list[Scenario], repeat: int, jobs: int | None
) -> tuple[list[float], RunResult, tuple[float, float]]:
    """Wall times of `repeat` runs, the fastest run (whose transcripts the
    per-scenario figures come from, so they add up with its wall time), and
    the least CPU of the engine (this process) and of the embedded server
    (its child) in a run."""
    walls, best = [], None
    engine_cpu = server_cpu = float("inf")
    for _ in range(max(1, repeat)):
        started, cpu, child = time.perf_counter(), time.process_time(), children_cpu()
        run = run_suite(scenarios, RunConfig(), jobs=jobs)
        walls.append(time.perf_counter() - started)
        if walls[-1] == min(walls):
            best = run
        engine_cpu = min(engine_cpu, time.process_time() - cpu)
        server_cpu = min(server_cpu, children_cpu() - child)
    assert best is not None
    return walls, best, (engine_cpu, server_cpu)


def verdict_map(run: RunResult) -> dict[str, str]:
    return {r.scenario_id: str(r.verdict) for r in run.results}


# Built-ins in which the engine's thread waits for the server or the clock.
WAITING = ("recv", "select", "poll", "sleep", "connect", "sendall", "accept")


def profile_run(scenarios: list[Scenario], top: int, turns: int, waits: float) -> str:
    """One serial embedded run under cProfile: the time split into waiting
    (for the server, the wire, deliberate waits) and the engine's own CPU,
    per turn, and the `top` functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    started = time.perf_counter()
    run_suite(scenarios, RunConfig(), jobs=1)
    wall = time.perf_counter() - started
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    waiting = sum(
        tottime
        for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items()  # type: ignore[attr-defined]
        if filename == "~" and any(w in function for w in WAITING)
    )
    per_turn = 1e3 / max(1, turns)
    out.write(
        f"profiled serial run {wall:.3f} s: waiting {waiting:.3f} s "
        f"(of which deliberate {waits:.2f} s), engine CPU {wall - waiting:.3f} s\n"
        f"per turn: server + wire {(waiting - waits) * per_turn:.3f} ms, "
        f"engine {(wall - waiting) * per_turn:.3f} ms (profiler overhead included)\n"
    )
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def timed_command(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, capture_output=True, timeout=600, check=False)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed full runs (best is used)")
    parser.add_argument("--select", action="append", default=[], help="scenario id glob")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile top N")
    args = parser.parse_args()

    scenarios = [s for s in load_scenarios([bundled_scenario_dir()]) if not s.slow]
    if args.select:
        scenarios = [s for s in scenarios if any(fnmatch.fnmatch(s.id, p) for p in args.select)]

    base = loopback_baseline()
    walls, run, (engine_cpu, server_cpu) = timed_runs(scenarios, args.repeat, jobs=1)
    parallel_walls, parallel, _ = timed_runs(scenarios, args.repeat, jobs=None)
    wire = wire_figures(run.results)
    waits = run_waits(run, scenarios)
    wire_seconds = (
        wire["connects"] * base["connect"]
        + wire["turns"] * base["rtt_two_processes"]
        + wire["octets"] / base["throughput"]
    )
    baseline = wire_seconds + waits
    best = min(walls)

    repo = Path(__file__).resolve().parents[1]
    tmp = Path("/tmp")
    pytest_startup = timed_command([sys.executable, "-m", "pytest", "--version"], tmp)
    cli_startup = timed_command([sys.executable, "-m", "conformance", "--help"], tmp)

    if sys.dont_write_bytecode:
        print(
            "note: PYTHONDONTWRITEBYTECODE is set: every start of the embedded server "
            "compiles its modules again (tens of ms a run that a user's machine does not pay)"
        )
    verdicts = ", ".join(f"{v}={n}" for v, n in run.counts().items() if n)
    all_walls = ", ".join(f"{w:.2f}" for w in walls)
    per_turn_ms = (best - waits) / max(1, wire["turns"]) * 1e3
    print(f"scenarios run            {len(scenarios)}  ({verdicts})")
    print(f"loopback connect         {base['connect'] * 1e6:8.1f} us (median of {CONNECT_SAMPLES})")
    print(
        f"loopback round trip      {base['rtt'] * 1e6:8.1f} us (median of {RTT_SAMPLES}; "
        "two threads of one process)"
    )
    print(
        f"  between two processes  {base['rtt_two_processes'] * 1e6:8.1f} us (median of "
        f"{RTT_SAMPLES}; the floor of a turn between engine and server)"
    )
    print(f"loopback throughput      {base['throughput'] / 1e6:8.1f} MB/s")
    print(f"connections opened       {wire['connects']}")
    print(f"request/response turns   {wire['turns']}")
    print(f"octets on the wire       {wire['octets']:,}")
    print(
        f"deliberate waits         {waits:8.2f} s (idle:/expect_open: in the scenarios, "
        f"{waits - deliberate_waits(scenarios):.2f} s of it chop: pauses)"
    )
    print(f"wire time (baseline)     {wire_seconds:8.3f} s")
    print(f"baseline incl. waits     {baseline:8.3f} s")
    print(f"full run, best of {len(walls)}     {best:8.3f} s  (all: {all_walls})")
    print(f"ratio run / baseline     {best / baseline:8.2f}x")
    if best > waits and wire_seconds > 0:
        print(
            f"ratio excluding waits    {(best - waits) / wire_seconds:8.1f}x  "
            f"(engine + server time per turn: {per_turn_ms:.2f} ms)"
        )
    # what is left of the serial run once waits, connects and transfer are
    # taken out, per turn, beyond one loopback round trip
    residual = (
        best - waits - wire["connects"] * base["connect"] - wire["octets"] / base["throughput"]
    )
    per_turn = residual / max(1, wire["turns"])
    floor = base["rtt_two_processes"]
    print(
        f"per-turn overhead        {(per_turn - floor) * 1e3:8.3f} ms (engine + server beyond "
        f"the {floor * 1e3:.3f} ms two-process round trip; a turn is "
        f"{per_turn / floor:.1f}x that)"
    )
    print(
        f"  beyond one process's   {(per_turn - base['rtt']) * 1e3:8.3f} ms (beyond the "
        f"{base['rtt'] * 1e3:.3f} ms round trip between two threads of one process)"
    )
    turns = max(1, wire["turns"])
    print(
        f"  of which engine CPU    {engine_cpu / turns * 1e3:8.3f} ms a turn "
        f"({engine_cpu:.2f} s in the serial run: this process, set-up and checks included)"
    )
    print(
        f"  of which server CPU    {server_cpu / turns * 1e3:8.3f} ms a turn "
        f"({server_cpu:.2f} s: the embedded reference server process)"
    )
    inside, inside_turns = in_scenarios(run, scenarios)
    print(
        f"  inside the scenarios   {inside / max(1, inside_turns) * 1e3:8.3f} ms a turn "
        f"({inside:.2f} s beyond their waits: turns, their set-up and checks)"
    )
    print(
        f"  outside the scenarios  {best - waits - inside:8.3f} s (server start-up, probe, "
        f"measurements, scheduling)"
    )
    longest = max(run.results, key=lambda r: r.duration)
    parallel_best = min(parallel_walls)
    same = verdict_map(run) == verdict_map(parallel)
    print(f"serial (--jobs 1)        {best:8.3f} s")
    print(
        f"parallel (--jobs auto)   {parallel_best:8.3f} s  "
        f"({best / parallel_best:.2f}x faster; verdicts {'identical' if same else 'DIFFER'})"
    )
    print(
        f"critical path            {longest.duration:8.3f} s  ({longest.scenario_id}; "
        f"parallel run = critical path + {parallel_best - longest.duration:.3f} s)"
    )
    print(f"pytest start-up          {pytest_startup:8.3f} s (python -m pytest --version)")
    print(f"mailspec start-up        {cli_startup:8.3f} s (python -m conformance --help)")
    print(f"repository               {repo}")
    if args.profile:
        print()
        print(profile_run(scenarios, args.profile, wire["turns"], waits))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
