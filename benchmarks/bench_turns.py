"""What do our POP3 client and our reference server add to one
request/response turn, compared with what loopback costs, in the same run?

One embedded reference server (its own process, loopback), one account,
the same commands, three clients, one after the other:

1. raw: a bare socket: send the command, recv until the reply ends (CRLF;
   CRLF "." CRLF after RETR). No checks at all: what the wire and the
   server cost;
2. session: conformance.pop3.session.Pop3Session: transcript, redaction,
   deadlines, the reply reader with every framing check;
3. engine: a scenario of the same turns run by the POP3 engine (Runner):
   steps, templates, reply patterns, the unsolicited-data check, RETR's
   body compared with the fixture. Its per-turn figure is the difference
   between the scenario with the turns and the same scenario without them
   (set-up, login and the maildrop checks cancel out).

Printed per kind of turn (NOOP; RETR of the fixture's large message,
about 1 MB): the time per turn of each client, the client's CPU and the
server process's CPU per turn (from /proc), and the overhead of 2 and 3
beyond 1: that is the ENGINE alone (the server's share is in the raw
figure too, so it cancels). The server's share is the raw turn beyond a
loopback round trip to a bare echo peer, printed as "server"; "engine +
server" is the engine turn beyond that round trip. Best of --repeat rounds.

With --compare CHECKOUT, a second reference server is started from that
checkout's reference_server package (e.g. /work/main: the code before a
change) over the same fixture, and the raw and session clients also run
against it in the same rounds: a before/after of the server in one run.

    python benchmarks/bench_turns.py [--noops 1000] [--retrs 20] [--repeat 5]
        [--compare /work/main]

Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from conformance.core.config import RunConfig, finalize
from conformance.core.driver import deadline_after
from conformance.core.fixture import Account
from conformance.core.results import Verdict
from conformance.core.scenario import Scenario, load_scenario_file
from conformance.core.transcript import Transcript
from conformance.embedded import EmbeddedServer
from conformance.pop3.engine import Runner
from conformance.pop3.session import Pop3Session

TIMEOUT = 10.0
RECV_OCTETS = 65_536
RTT_SAMPLES = 2000


class Timing:
    """Best wall-clock, client-CPU and server-CPU seconds of a kind of turn."""

    def __init__(self) -> None:
        self.wall = self.cpu = self.server = float("inf")

    def add(self, wall: float, cpu: float, server: float = float("nan")) -> None:
        self.wall, self.cpu = min(self.wall, wall), min(self.cpu, cpu)
        self.server = min(self.server, server) if server == server else self.server


#: pid of the server process the current round talks to (for its CPU)
SERVER_PID: dict[str, int] = {}


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of process `pid` so far; NaN if unknown."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(action: Callable[[], object]) -> tuple[float, float, float]:
    pid = SERVER_PID.get("now")
    wall, cpu, server = time.perf_counter(), time.process_time(), process_cpu(pid)
    action()
    return (
        time.perf_counter() - wall,
        time.process_time() - cpu,
        process_cpu(pid) - server,
    )


def loopback_rtt() -> float:
    """Median round trip of a small request/response to a bare echo thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)

    def echo() -> None:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while data := conn.recv(64):
                conn.sendall(b"+OK\r\n" * data.count(b"\n"))

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    samples = []
    with listener, socket.create_connection(listener.getsockname(), timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(RTT_SAMPLES):
            started = time.perf_counter()
            sock.sendall(b"NOOP\r\n")
            sock.recv(64)
            samples.append(time.perf_counter() - started)
    thread.join(TIMEOUT)
    samples.sort()
    return samples[len(samples) // 2]


@contextlib.contextmanager
def other_server(checkout: Path, runner: Runner) -> Iterator[tuple[str, int, int | None]]:
    """The reference server of another checkout, over the same fixture."""
    import conformance.embedded as embedded

    located = embedded.locate_server_package
    embedded.locate_server_package = lambda: checkout  # type: ignore[assignment]
    server = EmbeddedServer(runner.fixture, finalize(RunConfig()))
    try:
        host, port = server.start()
    finally:
        embedded.locate_server_package = located
    try:
        yield host, port, server.process.pid if server.process else None
    finally:
        server.stop()


def raw_round(
    host: str, port: int, account: Account, command: bytes, multiline: bool, count: int
) -> tuple[float, float]:
    """Log in on a bare socket, time `count` turns of `command`, quit."""
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def reply(multiline: bool) -> bytes:
        data = bytearray(sock.recv(RECV_OCTETS))
        end = b"\r\n.\r\n" if multiline else b"\r\n"
        while not data.endswith(end):
            more = sock.recv(RECV_OCTETS)
            if not more:
                raise ConnectionError("the server closed the connection")
            data += more
        return bytes(data)

    def turns() -> None:
        for _ in range(count):
            sock.sendall(command)
            reply(multiline)

    with sock:
        reply(False)
        for line in (f"USER {account.user}", f"PASS {account.password}"):
            sock.sendall(line.encode() + b"\r\n")
            if not reply(False).startswith(b"+OK"):
                raise RuntimeError(f"raw client: {line.split()[0]} refused")
        figures = timed(turns)
        sock.sendall(b"QUIT\r\n")
        reply(False)
    return figures


def session_round(
    host: str, port: int, account: Account, command: bytes, multiline: bool, count: int
) -> tuple[float, float]:
    """The same with a Pop3Session (every framing check, the transcript)."""
    session = Pop3Session.connect("a", host, port, Transcript(), timeout=TIMEOUT)

    def turns() -> None:
        for _ in range(count):
            session.send(command)
            got = session.read_reply(multiline, deadline_after(TIMEOUT))
            if got.findings or got.status is None or not got.status.positive:
                raise RuntimeError(f"session client: {command!r} answered {got}")

    try:
        session.read_reply(False, deadline_after(TIMEOUT))
        for line in (f"USER {account.user}", f"PASS {account.password}"):
            session.send(line.encode() + b"\r\n")
            got = session.read_reply(False, deadline_after(TIMEOUT))
            if got.status is None or not got.status.positive:
                raise RuntimeError(f"session client: {line.split()[0]} refused")
        figures = timed(turns)
        session.send(b"QUIT\r\n")
        session.read_reply(False, deadline_after(TIMEOUT))
    finally:
        session.close()
    return figures


SCENARIO = """\
section: "bench"
scenarios:
  - id: bench.turns
    title: turns for bench_turns.py
    requirements: [POP3-1939-NOOP-01]
    level: MUST
    steps:
      - open: a
      - S: +OK
      - login
{turns}      - C: QUIT
      - S: +OK
"""


def engine_scenario(directory: Path, turn: str, count: int) -> Scenario:
    path = directory / f"bench-{count}.yaml"
    path.write_text(SCENARIO.format(turns=turn * count), encoding="utf-8")
    (scenario,) = load_scenario_file(path)
    return scenario


def engine_round(runner: Runner, scenario: Scenario) -> tuple[float, float, float]:
    """One run of `scenario` by the engine: wall (its duration), CPU, server CPU."""
    pid = SERVER_PID.get("now")
    cpu, server = time.process_time(), process_cpu(pid)
    result = runner.run(scenario)
    cpu, server = time.process_time() - cpu, process_cpu(pid) - server
    if result.verdict is not Verdict.PASS:
        raise RuntimeError(f"engine scenario: {result.verdict} {result.message}")
    return result.duration, cpu, server


def large_message(account: Account) -> int:
    sizes = [m.octets for m in account.messages]
    return sizes.index(max(sizes)) + 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noops", type=int, default=1000, help="NOOP turns per round")
    parser.add_argument("--retrs", type=int, default=20, help="RETR turns per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (best is used)")
    parser.add_argument("--compare", type=Path, metavar="CHECKOUT", help="a second server")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        runner = stack.enter_context(Runner(finalize(RunConfig())))
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        embedded = runner._embedded  # the server process, for its CPU
        pid = embedded.process.pid if embedded and embedded.process else None
        servers = {"": (runner.host, runner.port, pid)}
        if args.compare:
            servers[" (cmp)"] = stack.enter_context(other_server(args.compare.resolve(), runner))
        account = runner.account("main")
        number = large_message(account)
        octets = account.messages[number - 1].octets
        kinds = [
            ("NOOP", b"NOOP\r\n", False, args.noops, "      - C: NOOP\n      - S: +OK\n"),
            (
                f"RETR {number} ({octets:,} octets)",
                f"RETR {number}\r\n".encode(),
                True,
                args.retrs,
                f"      - C: RETR {number}\n      - S: +OK\n        body: {{message: {number}}}\n",
            ),
        ]
        rtt = loopback_rtt()
        print(f"server: embedded reference server {runner.host}:{runner.port}")
        if args.compare:
            host, port, _ = servers[" (cmp)"]
            print(f"  (cmp): the reference server of {args.compare} on {host}:{port}")
        print(f"loopback round trip to a bare echo thread: {rtt * 1e3:.3f} ms (median)")
        print(
            "per turn: wall ms / client CPU ms / server CPU ms; overhead = beyond the raw "
            "socket to the same server (the engine's share alone)"
        )
        for label, command, multiline, count, step in kinds:
            with_turns = engine_scenario(Path(tmp), step, count)
            without = engine_scenario(Path(tmp), step, 0)
            timings: dict[str, Timing] = {}
            for _ in range(args.repeat):  # rounds interleave the clients: same load for each
                for suffix, (host, port, server_pid) in servers.items():
                    SERVER_PID["now"] = server_pid  # type: ignore[assignment]
                    args_ = (host, port, account, command, multiline, count)
                    timings.setdefault("raw" + suffix, Timing()).add(*raw_round(*args_))
                    timings.setdefault("session" + suffix, Timing()).add(*session_round(*args_))
                SERVER_PID["now"] = pid  # type: ignore[assignment]
                timings.setdefault("engine", Timing()).add(*engine_round(runner, with_turns))
                timings.setdefault("engine-0", Timing()).add(*engine_round(runner, without))
            base = timings.pop("engine-0")
            timings["engine"].wall -= base.wall
            timings["engine"].cpu -= base.cpu
            timings["engine"].server -= base.server
            print(f"{label}: {count} turns a round, best of {args.repeat}")
            for name, timing in timings.items():
                raw = timings["raw" + name.partition(" ")[1] + name.partition(" ")[2]]
                wall, cpu = timing.wall / count * 1e3, timing.cpu / count * 1e3
                server = timing.server / count * 1e3
                line = f"  {name:<13} {wall:8.3f} ms wall {cpu:7.3f} ms CPU {server:7.3f} ms server"
                if not name.startswith("raw"):
                    line += (
                        f"   overhead {(timing.wall - raw.wall) / count * 1e3:7.3f} ms wall "
                        f"({timing.wall / raw.wall:.2f}x), "
                        f"{(timing.cpu - raw.cpu) / count * 1e3:7.3f} ms CPU"
                    )
                else:
                    line += f"   server {(timing.wall / count - rtt) * 1e3:7.3f} ms beyond the rtt"
                print(line)
            engine = timings["engine"]
            print(
                f"  engine + server beyond the loopback round trip: "
                f"{(engine.wall / count - rtt) * 1e3:.3f} ms a turn"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
