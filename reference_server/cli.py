"""Command line: ``python -m reference_server --listen HOST:PORT --store SPEC --users FILE``.

Once the socket is listening, exactly one line goes to stdout::

    mailspec-reference-server listening on HOST:PORT

and is flushed; with ``--implicit-tls-listen`` a second line follows::

    mailspec-reference-server listening (implicit TLS) on HOST:PORT

Logs go to stderr.  Configuration errors print one line
``reference_server: error: ...`` to stderr and exit with status 2.
SIGTERM and SIGINT stop the server: open sessions end without UPDATE.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import resource
import signal
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reference_server import combined, event_loop
from reference_server.pop3.protocol import (
    DEFAULT_AUTOLOGOUT_SECONDS,
    DEFAULT_BAD_COMMAND_LIMIT,
    DEFAULT_FAILED_LOGIN_DELAY_SECONDS,
    MIN_AUTOLOGOUT_SECONDS,
    SessionConfig,
)
from reference_server.pop3.server import (
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    STORAGE_THREADS,
    Pop3Server,
    ServerSettings,
)
from reference_server.sasl import DEFAULT_MECHANISMS, MECHANISMS
from reference_server.store.maildrop import MaildropStore, StoreSpecError, store_from_spec
from reference_server.tls import TlsConfigurationError, server_context
from reference_server.users import UsersFileError, load_users_file

READY_LINE_PREFIX = "mailspec-reference-server listening on"
IMPLICIT_TLS_READY_LINE_PREFIX = "mailspec-reference-server listening (implicit TLS) on"
EXIT_CONFIGURATION_ERROR = 2
#: How the program was started, for --help; ``mailspec serve`` sets it.
PROG_ENVIRONMENT_VARIABLE = "REFERENCE_SERVER_PROG"
DEFAULT_PROG = "python -m reference_server"


class ConfigurationError(Exception):
    """A command-line value that cannot be used; printed as one line."""


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int


def parse_listen(value: str, flag: str = "--listen") -> ListenAddress:
    host, separator, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not separator or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigurationError(f"bad {flag} {value!r}: expected HOST:PORT, e.g. 127.0.0.1:1110")
    return ListenAddress(host, int(port_text))


def parse_sasl(value: str) -> tuple[str, ...]:
    """``--sasl PLAIN,LOGIN``: known names, any case, no repeats; empty: none."""
    names = [name.strip().upper() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in MECHANISMS]
    if unknown:
        raise ConfigurationError(
            f"bad --sasl {value!r}: unknown mechanism {unknown[0]!r} "
            f"(known: {','.join(MECHANISMS)})"
        )
    return tuple(dict.fromkeys(names))


def parse_expire(value: str) -> int | None:
    """``--expire DAYS|NEVER`` (RFC 2449 section 6.7); None means NEVER."""
    if value.upper() == "NEVER":
        return None
    if not value.isascii() or not value.isdigit():
        raise ConfigurationError(f"bad --expire {value!r}: expected a number of days or NEVER")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=os.environ.get(PROG_ENVIRONMENT_VARIABLE) or DEFAULT_PROG,
        description="reference_server: mailspec's POP3 server (RFC 1939, RFC 2449, "
        "LAST from RFC 1225, STLS from RFC 2595, pop3s from RFC 8314, SASL AUTH from "
        "RFC 5034, RFC 3206 codes, UTF8 and LANG from RFC 6856)",
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
    parser.add_argument(
        "--tls-cert", metavar="PEM", help="certificate chain (PEM); enables STLS on --listen"
    )
    parser.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert (PEM)")
    parser.add_argument(
        "--implicit-tls-listen",
        metavar="HOST:PORT",
        help="also listen here with TLS from the first octet (pop3s, RFC 8314); needs --tls-cert",
    )
    parser.add_argument(
        "--require-tls",
        action="store_true",
        help="refuse USER/PASS/APOP/AUTH until TLS is active (RFC 2595 section 2.2); "
        "needs --tls-cert",
    )
    parser.add_argument(
        "--sasl",
        metavar="MECH,MECH",
        default=",".join(DEFAULT_MECHANISMS),
        help=f"SASL mechanisms AUTH offers (default {','.join(DEFAULT_MECHANISMS)}; empty: none)",
    )
    parser.add_argument(
        "--login-delay",
        type=int,
        default=0,
        metavar="S",
        help="refuse a user's login within S seconds of that user's last one "
        "(RFC 2449 LOGIN-DELAY; default 0: none)",
    )
    parser.add_argument(
        "--expire",
        default="NEVER",
        metavar="DAYS|NEVER",
        help="retention advertised as EXPIRE (RFC 2449 section 6.7; default NEVER); "
        "0 removes retrieved messages at QUIT",
    )
    parser.add_argument(
        "--login-timeout",
        type=float,
        default=None,
        metavar="S",
        help="inactivity timer before login (default: the --autologout value)",
    )
    parser.add_argument(
        "--bad-command-limit",
        type=int,
        default=DEFAULT_BAD_COMMAND_LIMIT,
        metavar="N",
        help=f"close after N consecutive -ERR replies, the last saying so "
        f"(default {DEFAULT_BAD_COMMAND_LIMIT}; 0: no limit)",
    )
    parser.add_argument(
        "--failed-login-delay",
        type=float,
        default=DEFAULT_FAILED_LOGIN_DELAY_SECONDS,
        metavar="S",
        help="wait S seconds before answering a failed PASS/APOP/AUTH "
        f"(default {DEFAULT_FAILED_LOGIN_DELAY_SECONDS:g})",
    )
    parser.add_argument(
        "--max-connections-per-address",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        metavar="N",
        help="refuse a client address's connection beyond N open ones "
        f"(default {DEFAULT_MAX_CONNECTIONS_PER_ADDRESS}: no cap)",
    )
    parser.add_argument(
        "--storage-threads",
        type=int,
        default=STORAGE_THREADS,
        metavar="N",
        help=f"worker threads for the steps that read or write the store (default "
        f"{STORAGE_THREADS}); 0 runs them on the event loop, for a store on a RAM file "
        "system such as /dev/shm",
    )
    add_event_loop_argument(parser)
    parser.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    return parser


def add_event_loop_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--event-loop",
        choices=event_loop.EVENT_LOOP_CHOICES,
        default="auto",
        help="asyncio's own loop or uvloop (less CPU a turn); default auto: uvloop "
        "where it is installed",
    )


def load_store(spec: str) -> MaildropStore:
    try:
        store = store_from_spec(spec)
        store.check_base_directory()
    except StoreSpecError as problem:
        raise ConfigurationError(str(problem)) from None
    return store


async def listen(
    server: Pop3Server, address: ListenAddress, *, implicit_tls: bool = False
) -> tuple[str, int]:
    try:
        return await server.listen(address.host, address.port, implicit_tls=implicit_tls)
    except OSError as problem:
        if problem.errno == errno.EADDRINUSE:
            raise ConfigurationError(
                f"cannot listen on {address.host}:{address.port}: port already in use"
            ) from None
        raise ConfigurationError(
            f"cannot listen on {address.host}:{address.port}: {problem.strerror or problem}"
        ) from None


async def serve(
    server: Pop3Server, address: ListenAddress, implicit_tls: ListenAddress | None = None
) -> None:
    host, port = await listen(server, address)
    tls_bound = None
    if implicit_tls is not None:
        try:
            tls_bound = await listen(server, implicit_tls, implicit_tls=True)
        except ConfigurationError:
            await server.close()
            raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    print(f"{READY_LINE_PREFIX} {host}:{port}", flush=True)
    if tls_bound is not None:
        print(f"{IMPLICIT_TLS_READY_LINE_PREFIX} {tls_bound[0]}:{tls_bound[1]}", flush=True)
    event_loop.log_running_loop()
    await stop.wait()
    logging.getLogger("reference_server.pop3.server").info("event=shutdown")
    await server.close()


def load_tls(arguments: argparse.Namespace) -> ssl.SSLContext | None:
    if arguments.tls_cert is None and arguments.tls_key is None:
        return None
    if arguments.tls_cert is None:
        raise ConfigurationError("--tls-key needs --tls-cert")
    return server_context(Path(arguments.tls_cert), arguments.tls_key and Path(arguments.tls_key))


def raise_open_file_limit() -> None:
    """Each TRANSACTION session holds a socket and a lock file descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
        except (ValueError, OSError):
            pass  # keep the inherited limit


def check_abuse_limits(arguments: argparse.Namespace) -> None:
    if arguments.login_timeout is not None and not arguments.login_timeout > 0:
        raise ConfigurationError("--login-timeout must be a positive number of seconds")
    if arguments.bad_command_limit < 0:
        raise ConfigurationError("--bad-command-limit must be 0 (no limit) or a positive number")
    if not arguments.failed_login_delay >= 0:
        raise ConfigurationError("--failed-login-delay must be 0 or a positive number of seconds")
    if arguments.storage_threads < 0:
        raise ConfigurationError("--storage-threads must be 0 (steps on the event loop) or more")
    if arguments.max_connections_per_address < 0:
        raise ConfigurationError(
            "--max-connections-per-address must be 0 (no cap) or a positive number"
        )


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
        implicit_tls = (
            parse_listen(arguments.implicit_tls_listen, "--implicit-tls-listen")
            if arguments.implicit_tls_listen
            else None
        )
        if arguments.login_delay < 0:
            raise ConfigurationError("--login-delay must be 0 or a positive number of seconds")
        check_abuse_limits(arguments)
        settings = ServerSettings(
            autologout_seconds=arguments.autologout,
            session_config=SessionConfig(
                enable_apop=arguments.apop,
                enable_last=not arguments.no_last,
                require_tls=arguments.require_tls,
                sasl_mechanisms=parse_sasl(arguments.sasl),
                login_delay_seconds=arguments.login_delay,
                expire_days=parse_expire(arguments.expire),
                bad_command_limit=arguments.bad_command_limit,
                failed_login_delay_seconds=arguments.failed_login_delay,
            ),
            tls_context=load_tls(arguments),
            login_timeout_seconds=arguments.login_timeout,
            max_connections_per_address=arguments.max_connections_per_address,
            storage_threads=arguments.storage_threads,
        )
        if settings.tls_context is None and (implicit_tls or arguments.require_tls):
            flag = "--implicit-tls-listen" if implicit_tls else "--require-tls"
            raise ConfigurationError(f"{flag} needs --tls-cert and --tls-key")
        server = Pop3Server(store, users, settings=settings)
        smtp = combined.smtp_server_for(arguments, store, users)
        raise_open_file_limit()
        loop = event_loop.chosen_loop(arguments.event_loop)
        if smtp is None:
            event_loop.run(serve(server, address, implicit_tls), loop)
        elif implicit_tls is not None:
            raise ConfigurationError("--smtp-listen does not combine with --implicit-tls-listen")
        else:
            event_loop.run(combined.serve(server, address, smtp, arguments), loop)
    except (
        ConfigurationError,
        UsersFileError,
        TlsConfigurationError,
        event_loop.EventLoopUnavailable,
    ) as problem:
        print(f"reference_server: error: {problem}", file=sys.stderr, flush=True)
        return EXIT_CONFIGURATION_ERROR
    return 0
