"""Command line: ``python -m reference_server.smtp --listen HOST:PORT --store SPEC
--users FILE [--domain NAME]``.

Once every socket is listening, one line per listener goes to stdout::

    mailspec-reference-smtp-server listening on HOST:PORT
    mailspec-reference-smtp-server listening on HOST:PORT (smtps)

and is flushed; logs go to stderr.  Configuration errors print one line
``reference_server.smtp: error: ...`` to stderr and exit with status 2.
SIGTERM and SIGINT stop the server: open sessions get 421.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from reference_server import event_loop
from reference_server.cli import (
    ConfigurationError,
    ListenAddress,
    add_event_loop_argument,
    load_store,
    parse_listen,
)
from reference_server.smtp.protocol import (
    DEFAULT_COMMAND_TIMEOUT_SECONDS,
    DEFAULT_MAX_MESSAGE_OCTETS,
    MIN_COMMAND_TIMEOUT_SECONDS,
    MIN_MESSAGE_OCTETS,
    SmtpConfig,
)
from reference_server.smtp.server import READY_LINE_PREFIX, SmtpServer, SmtpSettings
from reference_server.users import UsersFileError, load_users_file

EXIT_CONFIGURATION_ERROR = 2


def add_smtp_options(parser: argparse.ArgumentParser) -> None:
    """The SMTP options, shared with the combined POP3 + SMTP command line."""
    parser.add_argument(
        "--domain",
        default="example.test",
        help="server name and local recipients' domain (default example.test)",
    )
    parser.add_argument(
        "--any-domain", action="store_true", help="accept recipients in every domain (catch-all)"
    )
    parser.add_argument("--tls-cert", metavar="PEM", help="certificate chain: enables STARTTLS")
    parser.add_argument("--tls-key", metavar="PEM", help="private key for --tls-cert")
    parser.add_argument(
        "--smtps-listen", metavar="HOST:PORT", help="also listen with implicit TLS (smtps)"
    )
    parser.add_argument(
        "--smtp-timeout",
        type=float,
        default=DEFAULT_COMMAND_TIMEOUT_SECONDS,
        metavar="S",
        help=f"command timeout in seconds before 421 (default {DEFAULT_COMMAND_TIMEOUT_SECONDS}, "
        "the RFC 5321 minimum; lower values are for tests only)",
    )
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=DEFAULT_MAX_MESSAGE_OCTETS,
        metavar="OCTETS",
        help=f"SIZE limit (default {DEFAULT_MAX_MESSAGE_OCTETS}, at least {MIN_MESSAGE_OCTETS})",
    )
    parser.add_argument(
        "--auth-without-tls",
        action="store_true",
        help="offer AUTH PLAIN/LOGIN on unencrypted connections (tests on loopback)",
    )
    parser.add_argument(
        "--refuse-sessions",
        action="store_true",
        help="greet every client with 554 and serve only QUIT (RFC 5321 section 3.1)",
    )
    parser.add_argument(
        "--keep-bare-line-ends",
        action="store_true",
        help="store messages with bare CR/LF verbatim instead of refusing them",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reference_server.smtp",
        description="mailspec reference SMTP server (RFC 5321 with PIPELINING, SIZE, 8BITMIME, "
        "ENHANCEDSTATUSCODES, STARTTLS, AUTH, SMTPUTF8, CHUNKING)",
    )
    parser.add_argument("--listen", default="127.0.0.1:2525", help="HOST:PORT (port 0: any free)")
    parser.add_argument("--store", required=True, help="maildir:/path/{user} or mbox:/path/{user}")
    parser.add_argument("--users", required=True, help="file of user:password lines")
    add_smtp_options(parser)
    add_event_loop_argument(parser)
    parser.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    return parser


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None:
        raise ConfigurationError("--tls-key needs --tls-cert")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as problem:
        raise ConfigurationError(f"cannot load --tls-cert {cert!r}: {problem}") from None
    return context


def smtp_settings(arguments: argparse.Namespace) -> SmtpSettings:
    """Check the SMTP options; one ConfigurationError naming the flag if bad."""
    if arguments.smtp_timeout <= 0:
        raise ConfigurationError("--smtp-timeout must be a positive number of seconds")
    if arguments.smtp_timeout < MIN_COMMAND_TIMEOUT_SECONDS:
        logging.getLogger("reference_server.smtp").warning(
            "event=config timeout=%s below the RFC 5321 minimum of %s s",
            arguments.smtp_timeout,
            MIN_COMMAND_TIMEOUT_SECONDS,
        )
    if arguments.max_message_size < MIN_MESSAGE_OCTETS:
        raise ConfigurationError(
            f"--max-message-size must be at least {MIN_MESSAGE_OCTETS} (RFC 5321 section 4.5.3.1.7)"
        )
    context = tls_context(arguments.tls_cert, arguments.tls_key)
    if arguments.smtps_listen and context is None:
        raise ConfigurationError("--smtps-listen needs --tls-cert and --tls-key")
    return SmtpSettings(
        command_timeout_seconds=arguments.smtp_timeout,
        config=SmtpConfig(
            domain=arguments.domain,
            max_message_octets=arguments.max_message_size,
            auth_without_tls=arguments.auth_without_tls,
            refuse_bare_line_ends=not arguments.keep_bare_line_ends,
            any_domain=arguments.any_domain,
            refuse_sessions=arguments.refuse_sessions,
        ),
        tls_context=context,
    )


async def listen_smtp(
    server: SmtpServer, address: ListenAddress, smtps: ListenAddress | None
) -> list[str]:
    """Open the listeners; returns the ready lines to print."""
    lines = []
    for where, implicit in ((address, False), (smtps, True)):
        if where is None:
            continue
        try:
            host, port = await server.listen(where.host, where.port, implicit_tls=implicit)
        except OSError as problem:
            reason = (
                "port already in use"
                if problem.errno == errno.EADDRINUSE
                else problem.strerror or str(problem)
            )
            raise ConfigurationError(
                f"cannot listen on {where.host}:{where.port}: {reason}"
            ) from None
        lines.append(f"{READY_LINE_PREFIX} {host}:{port}" + (" (smtps)" if implicit else ""))
    return lines


async def serve(server: SmtpServer, address: ListenAddress, smtps: ListenAddress | None) -> None:
    lines = await listen_smtp(server, address, smtps)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    print("\n".join(lines), flush=True)
    event_loop.log_running_loop()
    await stop.wait()
    logging.getLogger("reference_server.smtp.server").info("event=shutdown")
    await server.close()


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=arguments.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        address = parse_listen(arguments.listen)
        smtps = parse_listen(arguments.smtps_listen) if arguments.smtps_listen else None
        store = load_store(arguments.store)
        users = load_users_file(Path(arguments.users))
        server = SmtpServer(store, users, settings=smtp_settings(arguments))
        loop = event_loop.chosen_loop(arguments.event_loop)
        event_loop.run(serve(server, address, smtps), loop)
    except (ConfigurationError, UsersFileError, event_loop.EventLoopUnavailable) as problem:
        print(f"reference_server.smtp: error: {problem}", file=sys.stderr, flush=True)
        return EXIT_CONFIGURATION_ERROR
    return 0
