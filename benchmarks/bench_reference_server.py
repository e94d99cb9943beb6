"""Concurrency benchmark of the reference POP3 server (loopback only, bounded).

Starts ``python -m reference_server`` as a subprocess on 127.0.0.1 with one
Maildir per user, then opens N sessions at once from asyncio clients; each
session does greeting, USER, PASS, STAT, LIST, UIDL, RETR 1, QUIT and checks
every reply.  Prints sessions/s, p50/p99/max session latency and the error
count.  This is a measurement script, not a test::

    python benchmarks/bench_reference_server.py --sessions 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
MESSAGE = b"From: bench@example.org\r\nSubject: benchmark\r\n\r\n" + b"body line\r\n" * 50
PASSWORD = "bench-pw"


class SessionFailure(Exception):
    """A reply was not what the POP3 dialogue expects."""


def provision(root: Path, users: int) -> Path:
    users_file = root / "users"
    users_file.write_text("".join(f"user{i}:{PASSWORD}\n" for i in range(users)))
    for i in range(users):
        maildir = root / "store" / f"user{i}"
        for subdirectory in ("cur", "new", "tmp"):
            (maildir / subdirectory).mkdir(parents=True)
        (maildir / "new" / "0001.bench").write_bytes(MESSAGE)
    return users_file


async def expect_ok(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readline()
    if not line.startswith(b"+OK"):
        raise SessionFailure(line[:80].decode("ascii", "replace") or "connection closed")
    return line


async def read_multiline(reader: asyncio.StreamReader) -> bytes:
    await expect_ok(reader)
    content = bytearray()
    while (line := await reader.readline()) != b".\r\n":
        if not line:
            raise SessionFailure("connection closed inside a multi-line reply")
        content += line
    return bytes(content)


async def one_session(host: str, port: int, user: str, timeout: float) -> float:
    started = time.perf_counter()
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            await expect_ok(reader)
            for command in (f"USER {user}", f"PASS {PASSWORD}", "STAT"):
                writer.write(command.encode() + b"\r\n")
                await expect_ok(reader)
            for command in ("LIST", "UIDL"):
                writer.write(command.encode() + b"\r\n")
                await read_multiline(reader)
            writer.write(b"RETR 1\r\n")
            if await read_multiline(reader) != MESSAGE:
                raise SessionFailure("RETR content differs from the stored message")
            writer.write(b"QUIT\r\n")
            await expect_ok(reader)
        finally:
            writer.close()
    return time.perf_counter() - started


async def run_load(host: str, port: int, sessions: int, timeout: float) -> dict[str, object]:
    start_gate = asyncio.Event()

    async def gated(i: int) -> float:
        await start_gate.wait()
        return await one_session(host, port, f"user{i}", timeout)

    tasks = [asyncio.create_task(gated(i)) for i in range(sessions)]
    await asyncio.sleep(0)
    started = time.perf_counter()
    start_gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.perf_counter() - started
    latencies = sorted(r for r in results if isinstance(r, float))
    errors = [r for r in results if not isinstance(r, float)]
    return {"elapsed": elapsed, "latencies": latencies, "errors": errors}


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1000, help="concurrent sessions")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-session limit, s")
    arguments = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * arguments.sessions)), hard))

    with tempfile.TemporaryDirectory(prefix="pop3-bench-") as directory:
        root = Path(directory)
        users_file = provision(root, arguments.sessions)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reference_server",
                "--listen",
                "127.0.0.1:0",
                "--store",
                f"maildir:{root}/store/{{user}}",
                "--users",
                str(users_file),
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)},
        )
        try:
            assert server.stdout is not None
            ready = server.stdout.readline().decode().strip()
            host, _, port = ready.rpartition(" ")[2].rpartition(":")
            result = asyncio.run(run_load(host, int(port), arguments.sessions, arguments.timeout))
        finally:
            server.terminate()
            server.wait(30)

    latencies: list[float] = result["latencies"]  # type: ignore[assignment]
    errors: list[BaseException] = result["errors"]  # type: ignore[assignment]
    elapsed: float = result["elapsed"]  # type: ignore[assignment]
    print(
        f"sessions:        {arguments.sessions} concurrent (loopback, 1 message of "
        f"{len(MESSAGE)} octets each)"
    )
    print(f"completed:       {len(latencies)}")
    print(f"errors:          {len(errors)}")
    for kind in sorted({type(e).__name__ + ": " + str(e)[:60] for e in errors})[:5]:
        print(f"  e.g. {kind}")
    print(f"wall time:       {elapsed:.2f} s")
    print(f"sessions/s:      {len(latencies) / elapsed:.0f}")
    print(f"latency p50:     {percentile(latencies, 0.50) * 1000:.0f} ms")
    print(f"latency p99:     {percentile(latencies, 0.99) * 1000:.0f} ms")
    if latencies:
        print(f"latency max:     {latencies[-1] * 1000:.0f} ms")
        print(f"latency mean:    {statistics.fmean(latencies) * 1000:.0f} ms")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
