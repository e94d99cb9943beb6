"""Which event loop the reference servers' command lines run on.

The transports (reference_server.pop3.server, reference_server.smtp.server)
use only asyncio's public API, so any conforming loop runs them. uvloop
(libuv underneath) spends less CPU per callback, per read and per write than
the stock selector loop: the embedded server of a default `mailspec run`
answers each turn in about a sixth less server CPU with it
(benchmarks/bench_suite.py prints the split). It is a dependency where it
has wheels; `--event-loop asyncio` keeps the stock loop (the in-process
``start_server`` fixtures always use it, so both loops are exercised).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Callable, Coroutine
from typing import Any

#: The values of every reference server's `--event-loop` flag.
EVENT_LOOP_CHOICES = ("auto", "asyncio", "uvloop")


class EventLoopUnavailable(Exception):
    """The event loop asked for cannot run here."""


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def chosen_loop(choice: str) -> str:
    """`auto` is uvloop where it is installed, else asyncio."""
    if choice not in EVENT_LOOP_CHOICES:
        raise EventLoopUnavailable(
            f"--event-loop {choice!r}: choose one of {', '.join(EVENT_LOOP_CHOICES)}"
        )
    if choice == "auto":
        return "uvloop" if uvloop_installed() else "asyncio"
    if choice == "uvloop" and not uvloop_installed():
        raise EventLoopUnavailable(
            "--event-loop uvloop: uvloop is not installed here "
            "(pip install uvloop, or --event-loop asyncio)"
        )
    return choice


def running_loop_name() -> str:
    """The loop this coroutine runs on, named as `--event-loop` names it."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"


def log_running_loop() -> None:
    """Log ``event=event-loop`` once the listeners are bound.

    Not before: a server that cannot start (bad flag, port in use) says so
    in one line on stderr and nothing else.
    """
    logging.getLogger("reference_server").info("event=event-loop name=%s", running_loop_name())


def run(main: Coroutine[Any, Any, None], choice: str = "auto") -> None:
    """asyncio.run(main) on the loop `choice` names."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        name = chosen_loop(choice)
    except EventLoopUnavailable:
        main.close()  # never started: no "never awaited" warning
        raise
    if name == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main)
