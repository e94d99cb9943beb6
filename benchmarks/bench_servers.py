"""The same `mailspec load` against the reference server and Dovecot, side
by side, measured in one run (issue 14; docs/load.md).

For each server: start it on loopback with the load accounts (the reference
server as its own process, the way conformance/embedded.py does; Dovecot the
way interop/servers.py does, which installs dovecot-pop3d with apt-get when
it is missing, as root), run `mailspec load --target ... --provision ...`
with the same users, duration and mix, read Locust's CSV, and sample the RSS
of the server's whole process tree while the load runs. Prints sessions/s,
NOOP and RETR latency percentiles, peak RSS, and Dovecot/reference ratios.

    python benchmarks/bench_servers.py [--users 20] [--duration 10] [--mix ...]

The default mix leaves failed logins out: Dovecot delays every failed
login (auth_failure_delay, 2 s) and then penalises the client address, which
would measure that policy rather than the server. Loopback only; every loop
is bounded; prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conformance.core.config import RunConfig
from conformance.core.fixture import Fixture, load_fixture
from conformance.embedded import EmbeddedServer
from conformance.load.client import load_accounts, load_fixture_of

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIX = "fetch-delete=3,leave-on-server=3,top-preview=2,noop-keepalive=1,failed-login=0"
RSS_SAMPLE_SECONDS = 0.25
RUN_GRACE_SECONDS = 180


@dataclass
class Figures:
    server: str
    exit_code: int = -1
    sessions: int = 0
    sessions_per_second: float = 0.0
    failures: int = 0
    percentiles: dict[str, dict[str, float]] = field(default_factory=dict)
    peak_rss_kib: int = 0
    processes: int = 0
    note: str = ""


def process_tree(root: int) -> list[int]:
    """`root` and every descendant, from /proc (bounded by the pid count)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo and len(tree) < 10_000:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Peak summed RSS of a process tree, sampled on a thread."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak = 0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_SECONDS):
            tree = process_tree(self.root)
            self.peak = max(self.peak, sum(rss_kib(p) for p in tree))
            self.processes = max(self.processes, len(tree))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def read_locust_csv(path: Path, seconds: float) -> tuple[int, int, dict[str, dict[str, float]]]:
    sessions = failures = 0
    percentiles: dict[str, dict[str, float]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            name = row["Name"]
            if name.startswith("session "):
                sessions += int(row["Request Count"])
            if name == "Aggregated":
                failures = int(row["Failure Count"])
                continue
            percentiles[name] = {
                key: float(row[key]) if row[key] not in ("", "N/A") else 0.0
                for key in ("50%", "95%", "99%")
            }
    return sessions, failures, percentiles


def run_load(
    name: str, host: str, port: int, provision: str, args: argparse.Namespace, root_pid: int
) -> Figures:
    figures = Figures(name)
    with tempfile.TemporaryDirectory(prefix=f"mailspec-bench-{name}-") as tmp:
        prefix = Path(tmp) / "run"
        command = [
            sys.executable, "-m", "conformance", "load", "--headless",
            "--target", f"{host}:{port}", "--provision", provision,
            "--users", str(args.users), "--spawn-rate", str(args.users),
            "--duration", str(args.duration), "--accounts", str(args.users + 1),
            "--mix", args.mix, "--csv", str(prefix),
        ]  # fmt: skip
        with RssSampler(root_pid) as sampler:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=args.duration + RUN_GRACE_SECONDS,
                check=False,
                cwd=tmp,
            )
        figures.exit_code = done.returncode
        figures.peak_rss_kib, figures.processes = sampler.peak, sampler.processes
        stats = Path(f"{prefix}_stats.csv")
        if stats.exists():
            sessions, failures, percentiles = read_locust_csv(stats, args.duration)
            figures.sessions, figures.failures = sessions, failures
            figures.sessions_per_second = sessions / args.duration
            figures.percentiles = percentiles
        summary = done.stdout[done.stdout.find("mailspec load summary") :]
        result = [line for line in summary.splitlines() if line.startswith("result:")]
        figures.note = result[0] if result else (done.stderr.strip().splitlines() or [""])[-1]
    return figures


def bench_reference(fixture: Fixture, args: argparse.Namespace) -> Figures:
    server = EmbeddedServer(fixture, RunConfig())
    host, port = server.start()
    try:
        assert server.provisioner is not None and server.process is not None
        provision = f"maildir:{server.provisioner.template}"
        return run_load("reference", host, port, provision, args, server.process.pid)
    finally:
        server.stop()


def bench_dovecot(fixture: Fixture, args: argparse.Namespace) -> Figures:
    sys.path.insert(0, str(REPOSITORY_ROOT))
    from interop.servers import DovecotServer, ServerUnavailable

    server = DovecotServer(fixture)
    try:
        server.start()
    except (ServerUnavailable, RuntimeError) as exc:
        return Figures("dovecot", note=f"not run: {exc}")
    try:
        assert server.process is not None
        return run_load(
            "dovecot", server.host, server.port, server.provision_spec, args, server.process.pid
        )
    finally:
        server.stop()


def ratio(a: float, b: float) -> str:
    return f"{a / b:7.2f}x" if b else "      -"


def show(results: list[Figures]) -> None:
    width = 14
    print(f"{'':<26}" + "".join(f"{r.server:>{width}}" for r in results) + "   dovecot/reference")

    def row(label: str, value: Callable[[Figures], float], unit: str = "") -> None:
        values = [value(r) for r in results]
        cells = "".join(f"{v:>{width - len(unit)}.1f}{unit}" for v in values)
        tail = ratio(values[1], values[0]) if len(values) == 2 else ""
        print(f"{label:<26}{cells}   {tail}")

    row("sessions/s", lambda r: r.sessions_per_second)
    row("sessions", lambda r: r.sessions)
    row("failed requests", lambda r: r.failures)
    for command in ("NOOP", "RETR"):
        for key in ("50%", "95%", "99%"):
            row(f"{command} p{key[:-1]} (ms)", lambda r, c=command, k=key: _p(r, c, k))
    row("peak RSS (MiB)", lambda r: r.peak_rss_kib / 1024)
    row("server processes (max)", lambda r: r.processes)
    for r in results:
        print(f"{r.server}: exit {r.exit_code}; {r.note}")


def _p(figures: Figures, command: str, key: str) -> float:
    return figures.percentiles.get(command, {}).get(key, 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--mix", default=DEFAULT_MIX)
    parser.add_argument("--skip-dovecot", action="store_true")
    args = parser.parse_args()
    fixture = load_fixture_of(load_accounts(load_fixture(), args.users + 1))
    print(f"mailspec load x2: {args.users} users, {args.duration:g} s each, mix {args.mix}")
    results = [bench_reference(fixture, args)]
    if not args.skip_dovecot:
        results.append(bench_dovecot(fixture, args))
    show(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
