"""Restarting a target between minimisation attempts (`mailspec fuzz
--restart-command CMD`): a case that wedges a server (it stops greeting,
stops accepting) would otherwise make every later re-run fail whatever it
sent, and the finding could be neither minimised nor confirmed.

The command is split like a shell line (shlex; no shell runs it: write
`sh -c '...'` for pipes or `;`), run with a deadline and its output kept
bounded; then the target must greet (`+OK`) a new connection within
GREETING_SECONDS. Either failing is a TargetUnreachable naming the cause."""

from __future__ import annotations

import shlex
import socket
import subprocess
import time

from conformance.core.driver import format_address
from conformance.core.errors import ConfigError, TargetUnreachable

#: How long the restart command may run (a service manager's restart).
COMMAND_SECONDS = 60.0
#: How long the restarted target has to greet a new connection.
GREETING_SECONDS = 30.0
#: One connection attempt's deadline while waiting for the greeting.
ATTEMPT_SECONDS = 2.0
RETRY_PAUSE_SECONDS = 0.2
#: RFC 1939 §3 / RFC 2449 §4: a status line is at most 512 octets.
MAX_GREETING_OCTETS = 512
#: Of the command's output, this much is shown when it fails.
OUTPUT_TAIL_OCTETS = 400


class CommandRestart:
    """Runs `command`, then waits until `host`:`port` greets with +OK."""

    def __init__(self, command: str, host: str, port: int) -> None:
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"--restart-command: {exc}") from None
        if not self.argv:
            raise ConfigError("--restart-command: empty command")
        self.command = command
        self.host, self.port = host, port
        self.restarts = 0

    def __call__(self) -> None:
        self.restarts += 1
        try:
            done = subprocess.run(
                self.argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=COMMAND_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TargetUnreachable(
                f"--restart-command did not finish within {COMMAND_SECONDS:.0f} s: {self.command}"
            ) from None
        except OSError as exc:
            raise TargetUnreachable(f"--restart-command could not run: {exc}") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout)[-OUTPUT_TAIL_OCTETS:]
            shown = tail.decode("utf-8", errors="replace").strip()
            raise TargetUnreachable(
                f"--restart-command exited with status {done.returncode}"
                + (f": {shown}" if shown else "")
            )
        wait_for_greeting(self.host, self.port, GREETING_SECONDS)


def wait_for_greeting(host: str, port: int, seconds: float) -> None:
    """Return once a new connection is greeted with +OK; else TargetUnreachable
    with the last thing seen. Each attempt is bounded in time and size."""
    deadline = time.monotonic() + seconds
    last = "no attempt"
    while True:
        last = _greeting_once(host, port, min(ATTEMPT_SECONDS, deadline - time.monotonic()))
        if last == "":
            return
        if time.monotonic() + RETRY_PAUSE_SECONDS >= deadline:
            raise TargetUnreachable(
                f"{format_address(host, port)} did not greet with +OK within {seconds:.0f} s "
                f"of the restart ({last})"
            )
        time.sleep(RETRY_PAUSE_SECONDS)


def _greeting_once(host: str, port: int, seconds: float) -> str:
    """ "" when greeted with +OK, else what went wrong."""
    if seconds <= 0:
        return "out of time"
    try:
        with socket.create_connection((host, port), timeout=seconds) as sock:
            received = b""
            until = time.monotonic() + seconds
            while b"\n" not in received and len(received) < MAX_GREETING_OCTETS:
                sock.settimeout(max(until - time.monotonic(), 0.01))
                chunk = sock.recv(MAX_GREETING_OCTETS - len(received))
                if not chunk:
                    return "closed before a greeting"
                received += chunk
            if received.startswith(b"+OK"):
                try:
                    sock.sendall(b"QUIT\r\n")
                except OSError:
                    pass
                return ""
            return f"greeted with {received[:60]!r}"
    except TimeoutError:
        return "no greeting in time"
    except OSError as exc:
        return exc.strerror or str(exc)
