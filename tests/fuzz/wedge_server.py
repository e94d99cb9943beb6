"""A planted fault as a process of its own, so `mailspec fuzz
--restart-command` has a real process to restart:

    python wedge_server.py serve PORT ROOT          # runs until killed
    python wedge_server.py restart PORT ROOT PIDFILE

`restart` kills the process PIDFILE names (SIGKILL: a wedged server is not
asked), starts a new `serve` on the same port in a session of its own and
writes its pid; the fuzzer then waits for the greeting itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

KILL_WAIT_SECONDS = 5.0


def serve(port: int, root: Path) -> None:
    from planted_faults import WedgedByFormatString, start

    start(WedgedByFormatString, root, port)
    while True:
        signal.pause()


def spawn(port: int, root: Path, pidfile: Path) -> int:
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "serve", str(port), str(root)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pidfile.write_text(str(child.pid), encoding="ascii")
    return child.pid


def stop(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text(encoding="ascii"))
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return  # our own child, reaped
        except ChildProcessError:  # not our child: wait until it is gone (or a zombie)
            if not _running(pid):
                return
        time.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return state[0] != "Z"


def main(argv: list[str]) -> int:
    action, port, root = argv[0], int(argv[1]), Path(argv[2])
    if action == "serve":
        serve(port, root)
    elif action == "restart":
        pidfile = Path(argv[3])
        stop(pidfile)
        spawn(port, root, pidfile)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
