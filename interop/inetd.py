"""A minimal inetd: `python interop/inetd.py HOST:PORT -- PROGRAM ARGS...`.

Listens on HOST:PORT and runs PROGRAM once per connection with the socket as
its standard input and output (what inetd's `nowait` services get).
SIGTERM/SIGINT stop it; it then ends the sessions it spawned (by their PIDs)
and exits. The program's stderr goes to ours.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: inetd.py HOST:PORT -- PROGRAM ARGS...", file=sys.stderr)
        return 2
    host, _, port = argv[0].rpartition(":")
    program = argv[2:]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    listener.listen(128)
    children: list[subprocess.Popen] = []
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        with contextlib.suppress(OSError):
            listener.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"inetd listening on {host}:{port} for {program[0]}", file=sys.stderr, flush=True)
    while not stopping:
        try:
            conn, _peer = listener.accept()
        except OSError:
            break
        with conn:
            children.append(
                subprocess.Popen(program, stdin=conn.fileno(), stdout=conn.fileno(), close_fds=True)
            )
        children = [c for c in children if c.poll() is None]
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
