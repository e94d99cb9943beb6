"""Command line: ``python -m reference_server --listen HOST:PORT --store SPEC --users FILE``.

Once the socket is listening, exactly one line goes to stdout::

    mailspec-reference-server listening on HOST:PORT

and is flushed; logs go to stderr.  Configuration errors print one line
``reference_server: error: ...`` to stderr and exit with status 2.
SIGTERM and SIGINT stop the server: open sessions end without UPDATE.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import resource
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import combined
from .protocol import DEFAULT_AUTOLOGOUT_SECONDS, MIN_AUTOLOGOUT_SECONDS, SessionConfig
from .server import Pop3Server, ServerSettings
from .storage import MaildropStore, StoreSpecError, store_from_spec
from .users import UsersFileError, load_users_file

READY_LINE_PREFIX = "mailspec-reference-server listening on"
EXIT_CONFIGURATION_ERROR = 2


class ConfigurationError(Exception):
    """A command-line value that cannot be used; printed as one line."""


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int


def parse_listen(value: str) -> ListenAddress:
    host, separator, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not separator or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigurationError(f"bad --listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:1110")
    return ListenAddress(host, int(port_text))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reference_server",
        description="mailspec reference POP3 server (RFC 1939, RFC 2449, LAST from RFC 1225)",
    )
    parser.add_argument("--listen", default="127.0.0.1:1110", help="HOST:PORT (port 0: any free)")
    parser.add_argument("--store", required=True, help="maildir:/path/{user} or mbox:/path/{user}")
    parser.add_argument("--users", required=True, help="file of user:password lines")
    parser.add_argument(
        "--autologout",
        type=float,
        default=DEFAULT_AUTOLOGOUT_SECONDS,
        metavar="S",
        help=f"inactivity timer in seconds (default {DEFAULT_AUTOLOGOUT_SECONDS}, "
        "the RFC 1939 minimum; lower values are for tests only)",
    )
    parser.add_argument("--no-last", action="store_true", help="refuse the RFC 1225 LAST command")
    parser.add_argument("--apop", action="store_true", help="offer APOP (timestamp in greeting)")
    combined.add_arguments(parser)  # --smtp-listen: POP3 and SMTP on one store
    parser.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    return parser


def load_store(spec: str) -> MaildropStore:
    try:
        store = store_from_spec(spec)
        store.check_base_directory()
    except StoreSpecError as problem:
        raise ConfigurationError(str(problem)) from None
    return store


async def serve(server: Pop3Server, address: ListenAddress) -> None:
    try:
        host, port = await server.listen(address.host, address.port)
    except OSError as problem:
        if problem.errno == errno.EADDRINUSE:
            raise ConfigurationError(
                f"cannot listen on {address.host}:{address.port}: port already in use"
            ) from None
        raise ConfigurationError(
            f"cannot listen on {address.host}:{address.port}: {problem.strerror or problem}"
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    print(f"{READY_LINE_PREFIX} {host}:{port}", flush=True)
    await stop.wait()
    logging.getLogger("reference_server.server").info("event=shutdown")
    await server.close()


def raise_open_file_limit() -> None:
    """Each TRANSACTION session holds a socket and a lock file descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
        except (ValueError, OSError):
            pass  # keep the inherited limit


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=arguments.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        address = parse_listen(arguments.listen)
        store = load_store(arguments.store)
        users = load_users_file(Path(arguments.users))
        if arguments.autologout <= 0:
            raise ConfigurationError("--autologout must be a positive number of seconds")
        if arguments.autologout < MIN_AUTOLOGOUT_SECONDS:
            logging.getLogger("reference_server").warning(
                "event=config autologout=%s below the RFC 1939 minimum of %s s",
                arguments.autologout,
                MIN_AUTOLOGOUT_SECONDS,
            )
        settings = ServerSettings(
            autologout_seconds=arguments.autologout,
            session_config=SessionConfig(
                enable_apop=arguments.apop, enable_last=not arguments.no_last
            ),
        )
        server = Pop3Server(store, users, settings=settings)
        smtp = combined.smtp_server_for(arguments, store, users)
        raise_open_file_limit()
        if smtp is None:
            asyncio.run(serve(server, address))
        else:
            asyncio.run(combined.serve(server, address, smtp, arguments))
    except (ConfigurationError, UsersFileError) as problem:
        print(f"reference_server: error: {problem}", file=sys.stderr, flush=True)
        return EXIT_CONFIGURATION_ERROR
    return 0
