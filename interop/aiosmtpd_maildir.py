"""aiosmtpd as a process of its own, delivering to Maildirs.

    python3 interop/aiosmtpd_maildir.py --port 8025 --mail-root DIR \
        --domain example.test --users alice,bob --hostname mx.example.test

Run by interop/smtp_servers.py (AiosmtpdServer) with Debian's
/usr/bin/python3 and python3-aiosmtpd, or with any interpreter that has the
PyPI aiosmtpd. aiosmtpd itself is an SMTP library with no delivery agent, so
this file is the deployment: RCPT accepts the listed users (and postmaster,
RFC 5321 section 4.5.1) in one domain and refuses every other address with
550; DATA writes the message as aiosmtpd hands it over (dot-unstuffed, line
ends as received) into DIR/USER/Maildir/new through tmp/, after a
Return-Path: and a Received: line (RFC 5321 section 4.4), the way an MTA's
local delivery does. aiosmtpd's protocol behaviour (EHLO keywords, HELP,
VRFY, limits) is left at the library's defaults.

Standard library and aiosmtpd only: nothing from the suite is imported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import time
from email.utils import formatdate
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

#: RFC 5321 section 4.5.1: postmaster is accepted in every local domain;
#: its mail goes to the first user.
POSTMASTER = "postmaster"


class MaildirHandler:
    """RCPT policy and Maildir delivery for aiosmtpd's SMTP class."""

    def __init__(self, mail_root: Path, domain: str, users: list[str], hostname: str):
        self.mail_root = mail_root
        self.domain = domain.lower()
        self.users = [u.lower() for u in users]
        self.hostname = hostname
        self.counter = 0

    def mailbox_for(self, address: str) -> str | None:
        if address.lower() == POSTMASTER:  # RFC 5321 §4.5.1: <Postmaster> with no domain
            return self.users[0]
        local, _, domain = address.rpartition("@")
        if domain.lower() != self.domain:
            return None
        local = local.lower()
        if local == POSTMASTER:
            return self.users[0]
        return local if local in self.users else None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options
    ) -> str:
        if self.mailbox_for(address) is None:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        boxes = sorted({self.mailbox_for(r) or "" for r in envelope.rcpt_tos} - {""})
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        for box in boxes:
            received = (
                f"Received: from {session.host_name} ([{peer}])\r\n"
                f"\tby {self.hostname} (aiosmtpd) with {protocol}\r\n"
                f"\tfor <{box}@{self.domain}>; {formatdate(localtime=False)}\r\n"
            )
            trace = f"Return-Path: <{envelope.mail_from}>\r\n{received}".encode(
                "utf-8", "surrogateescape"
            )
            self.deliver(box, trace + content)
        return "250 2.0.0 OK: queued"

    def deliver(self, box: str, data: bytes) -> None:
        """Maildir delivery: write under tmp/, fsync, rename into new/."""
        maildir = self.mail_root / box / "Maildir"
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        self.counter += 1
        name = f"{int(time.time())}.P{os.getpid()}Q{self.counter}.{socket.gethostname()}"
        tmp = maildir / "tmp" / name
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, maildir / "new" / name)


async def serve(args: argparse.Namespace) -> None:
    handler = MaildirHandler(
        Path(args.mail_root), args.domain, args.users.split(","), args.hostname
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname=args.hostname), host=args.host, port=args.port
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mail-root", required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--users", required=True, help="comma-separated local parts")
    parser.add_argument("--hostname", required=True)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
