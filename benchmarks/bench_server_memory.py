"""Memory of the reference POP3 server under idle load and a huge maildrop
(loopback only, bounded).  A measurement script, not a test.

``--idle N``: N connections that read the greeting and then sit idle
(``--logged-in``: each logs in to its own maildrop first, so it also holds
a lock and a snapshot).  Prints the server's RSS before and with the N
sessions, the RSS per session, and how many sessions still answer at the
end (CAPA before login, NOOP after).

``--maildrop-gb G``: one Maildir of G GiB (64 MiB messages); one session
RETRs every message and checks each size.  Prints the server's peak RSS
(VmHWM), which must stay far below the maildrop's size.  With ``--mbox``
the same messages are one mbox file (indexed at login, served from its
byte offsets)::

    python benchmarks/bench_server_memory.py --idle 10000
    python benchmarks/bench_server_memory.py --idle 2000 --logged-in
    python benchmarks/bench_server_memory.py --maildrop-gb 1
    python benchmarks/bench_server_memory.py --maildrop-gb 0.2 --mbox

(1,000 concurrent *active* sessions: benchmarks/bench_reference_server.py.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-pw"
BIG_MESSAGE_OCTETS = 64 * 1024 * 1024
CONNECT_BATCH = 500


def proc_status(pid: int, field: str) -> int:
    """A /proc/PID/status field in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, wanted)), hard))


def start_server(root: Path, kind: str = "maildir") -> tuple[subprocess.Popen[bytes], str, int]:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reference_server",
            "--listen",
            "127.0.0.1:0",
            "--store",
            f"{kind}:{root}/store/{{user}}",
            "--users",
            str(root / "users"),
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)},
    )
    assert server.stdout is not None
    ready = server.stdout.readline().decode().strip()
    host, _, port = ready.rpartition(" ")[2].rpartition(":")
    return server, host, int(port)


def provision_users(root: Path, users: int, message: bytes) -> None:
    (root / "users").write_text("".join(f"user{i}:{PASSWORD}\n" for i in range(users)))
    for i in range(users):
        maildir = root / "store" / f"user{i}"
        for subdirectory in ("cur", "new", "tmp"):
            (maildir / subdirectory).mkdir(parents=True)
        if message:
            (maildir / "new" / "0001.bench").write_bytes(message)


async def idle_load(host: str, port: int, sessions: int, logged_in: bool, pid: int) -> None:
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    errors = 0
    reasons: dict[str, int] = {}
    baseline = proc_status(pid, "VmRSS")

    async def connect(i: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            greeting = await reader.readline()
            if not greeting.startswith(b"+OK"):
                reasons[greeting[:60].decode(errors="replace")] = 1 + reasons.get("greeting", 0)
                return None
            if logged_in:
                for command in (f"USER user{i}", f"PASS {PASSWORD}"):
                    writer.write(command.encode() + b"\r\n")
                    line = await reader.readline()
                    if not line.startswith(b"+OK"):
                        key = line[:60].decode(errors="replace") or "closed"
                        reasons[key] = reasons.get(key, 0) + 1
                        return None
            return reader, writer
        except OSError as problem:
            key = type(problem).__name__
            reasons[key] = reasons.get(key, 0) + 1
            return None

    started = time.perf_counter()
    for batch in range(0, sessions, CONNECT_BATCH):
        results = await asyncio.gather(
            *(connect(i) for i in range(batch, min(sessions, batch + CONNECT_BATCH)))
        )
        for result in results:
            if result is None:
                errors += 1
            else:
                connections.append(result)
    connected = time.perf_counter() - started
    await asyncio.sleep(2)  # let the server settle
    loaded = proc_status(pid, "VmRSS")
    probe = b"NOOP\r\n" if logged_in else b"CAPA\r\n"

    async def still_there(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            writer.write(probe)
            line = await asyncio.wait_for(reader.readline(), 60)
            if not line.startswith(b"+OK"):
                return False
            if not logged_in:
                while (await asyncio.wait_for(reader.readline(), 60)) != b".\r\n":
                    pass
            writer.write(b"QUIT\r\n")
            return (await asyncio.wait_for(reader.readline(), 60)).startswith(b"+OK")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    answered = sum(await asyncio.gather(*(still_there(r, w) for r, w in connections)))
    per_session = (loaded - baseline) / max(1, len(connections))
    kind = "logged-in" if logged_in else "pre-login"
    print(f"idle sessions:      {sessions} {kind} (connected in {connected:.1f} s)")
    print(f"connect errors:     {errors} {reasons or ''}")
    print(f"server RSS before:  {baseline / 1024:.1f} MiB")
    print(f"server RSS with:    {loaded / 1024:.1f} MiB")
    print(f"RSS per session:    {per_session:.1f} KiB")
    print(f"answered at end:    {answered} of {len(connections)}")


async def big_retr(host: str, port: int, expected: list[int], pid: int) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=1024 * 1024)
    await reader.readline()
    started = time.perf_counter()
    for command in ("USER user0", f"PASS {PASSWORD}"):
        writer.write(command.encode() + b"\r\n")
        line = await reader.readline()
        assert line.startswith(b"+OK"), line
    login = time.perf_counter() - started
    logged_in_rss = proc_status(pid, "VmHWM")
    mismatches = 0
    total = 0
    started = time.perf_counter()
    for number, size in enumerate(expected, start=1):
        writer.write(b"RETR %d\r\n" % number)
        status = await reader.readline()
        assert status.startswith(b"+OK"), status
        received = 0
        while (line := await reader.readline()) != b".\r\n":
            received += len(line) - (1 if line.startswith(b"..") else 0)
        total += received
        mismatches += received != size
    elapsed = time.perf_counter() - started
    writer.write(b"QUIT\r\n")
    await reader.readline()
    writer.close()
    peak = proc_status(pid, "VmHWM")
    print(f"maildrop:           {sum(expected) / 2**30:.2f} GiB in {len(expected)} messages")
    print(f"server RSS at login: {logged_in_rss / 1024:.1f} MiB peak (VmHWM)")
    print(f"login (size scan):  {login:.1f} s")
    print(
        f"RETR all:           {total / 2**30:.2f} GiB in {elapsed:.1f} s, "
        f"{mismatches} size mismatches"
    )
    print(f"server peak RSS:    {peak / 1024:.1f} MiB (VmHWM)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=int, default=0, help="idle sessions to hold")
    parser.add_argument("--logged-in", action="store_true", help="idle sessions log in first")
    parser.add_argument("--maildrop-gb", type=float, default=0, help="size of the big maildrop")
    parser.add_argument("--mbox", action="store_true", help="the big maildrop is one mbox file")
    arguments = parser.parse_args()
    if not arguments.idle and not arguments.maildrop_gb:
        parser.error("give --idle N or --maildrop-gb G")
    raise_fd_limit(4 * arguments.idle + 1024)
    with tempfile.TemporaryDirectory(prefix="pop3-memory-") as directory:
        root = Path(directory)
        if arguments.idle:
            message = b"Subject: idle\r\n\r\nbody\r\n" if arguments.logged_in else b""
            provision_users(root, arguments.idle if arguments.logged_in else 1, message)
            server, host, port = start_server(root)
            try:
                asyncio.run(idle_load(host, port, arguments.idle, arguments.logged_in, server.pid))
            finally:
                stopped = time.perf_counter()
                server.terminate()
                server.wait(120)
                print(f"server stopped in:  {time.perf_counter() - stopped:.1f} s (SIGTERM)")
        if arguments.maildrop_gb:
            count = max(1, round(arguments.maildrop_gb * 2**30 / BIG_MESSAGE_OCTETS))
            line = b"x" * 1022 + b"\r\n"
            body = b"Subject: big\r\n\r\n" + line * (BIG_MESSAGE_OCTETS // len(line) - 1)
            if arguments.mbox:
                (root / "store").mkdir()
                (root / "users").write_text(f"user0:{PASSWORD}\n")
                with open(root / "store" / "user0", "wb") as mbox:
                    for _ in range(count):  # mboxrd: From line, message, empty line
                        mbox.write(b"From bench@example.test Thu Jan  1 00:00:00 2026\r\n")
                        mbox.write(body + b"\r\n")
            else:
                provision_users(root, 1, b"")
                for n in range(count):
                    (root / "store" / "user0" / "new" / f"{n:04d}.big").write_bytes(body)
            server, host, port = start_server(root, "mbox" if arguments.mbox else "maildir")
            try:
                asyncio.run(big_retr(host, port, [len(body)] * count, server.pid))
            finally:
                server.terminate()
                server.wait(60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
