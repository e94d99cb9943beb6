"""What does our POP3 client add to one request/response turn, compared
with a bare socket talking to the same server in the same run?

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
about 1 MB): the time per turn of each client and the overhead of 2 and 3
beyond 1. Best of --repeat rounds; prints figures, asserts nothing.

    python benchmarks/bench_turns.py [--noops 1000] [--retrs 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from conformance.core.config import RunConfig, finalize
from conformance.core.driver import deadline_after
from conformance.core.fixture import Account
from conformance.core.results import Verdict
from conformance.core.scenario import Scenario, load_scenario_file
from conformance.core.transcript import Transcript
from conformance.pop3.engine import Runner
from conformance.pop3.session import Pop3Session

TIMEOUT = 10.0
RECV_OCTETS = 65_536


class Timing:
    """Best wall-clock and best client-CPU seconds of a kind of turn."""

    def __init__(self) -> None:
        self.wall = self.cpu = float("inf")

    def add(self, wall: float, cpu: float) -> None:
        self.wall, self.cpu = min(self.wall, wall), min(self.cpu, cpu)


def timed(action: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


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


def engine_round(runner: Runner, scenario: Scenario) -> tuple[float, float]:
    """One run of `scenario` by the engine: wall (its duration) and CPU."""
    cpu = time.process_time()
    result = runner.run(scenario)
    cpu = time.process_time() - cpu
    if result.verdict is not Verdict.PASS:
        raise RuntimeError(f"engine scenario: {result.verdict} {result.message}")
    return result.duration, cpu


def large_message(account: Account) -> int:
    sizes = [m.octets for m in account.messages]
    return sizes.index(max(sizes)) + 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noops", type=int, default=1000, help="NOOP turns per round")
    parser.add_argument("--retrs", type=int, default=20, help="RETR turns per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (best is used)")
    args = parser.parse_args()

    with Runner(finalize(RunConfig())) as runner, tempfile.TemporaryDirectory() as tmp:
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
        print(f"server: embedded reference server {runner.host}:{runner.port}")
        print("per turn: wall-clock ms / client CPU ms; overhead = beyond the raw socket")
        for label, command, multiline, count, step in kinds:
            with_turns = engine_scenario(Path(tmp), step, count)
            without = engine_scenario(Path(tmp), step, 0)
            timings = {name: Timing() for name in ("raw", "session", "engine", "engine-0")}
            for _ in range(args.repeat):  # rounds interleave the clients: same load for each
                args_ = (runner.host, runner.port, account, command, multiline, count)
                timings["raw"].add(*raw_round(*args_))
                timings["session"].add(*session_round(*args_))
                timings["engine"].add(*engine_round(runner, with_turns))
                timings["engine-0"].add(*engine_round(runner, without))
            base = timings.pop("engine-0")
            timings["engine"].wall -= base.wall
            timings["engine"].cpu -= base.cpu
            raw = timings["raw"]
            print(f"{label}: {count} turns a round, best of {args.repeat}")
            for name, timing in timings.items():
                wall, cpu = timing.wall / count * 1e3, timing.cpu / count * 1e3
                line = f"  {name:<8} {wall:8.3f} ms wall {cpu:8.3f} ms CPU"
                if name != "raw":
                    line += (
                        f"   overhead {(timing.wall - raw.wall) / count * 1e3:7.3f} ms wall "
                        f"({timing.wall / raw.wall:.2f}x), "
                        f"{(timing.cpu - raw.cpu) / count * 1e3:7.3f} ms CPU"
                    )
                print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
