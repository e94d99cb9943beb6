"""Leaving the process once `main()` has returned, without the interpreter's teardown.

When a reference server's `main()` returns, its sessions have ended, its
locks are released and every UPDATE it committed is on disk (fsynced before
the reply). What is left is the interpreter's finalization: tearing down the
few hundred modules asyncio, ssl and the server import, which on a 2-core VM
took 13-20 ms of every stop, against under 1 ms for the shutdown itself. The
embedded server of every `mailspec run` pays it once, and so does every test
that starts and stops a server process.

`exit_now` does what that teardown would still do for us (worker threads
finish their step, log handlers and standard streams are flushed), then
ends the process with `os._exit`. Only the `python -m` entry points use it;
`main()` called in-process returns as before.
"""

from __future__ import annotations

import logging
import os
import sys
import threading


def exit_now(status: int) -> None:
    """End the process with `status` once nothing it holds is unwritten."""
    current = threading.current_thread()
    for thread in threading.enumerate():
        # a storage worker may be finishing a step the shutdown cancelled
        if thread is not current and not thread.daemon:
            thread.join()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or gone: nothing more to write
            pass
    os._exit(status)
