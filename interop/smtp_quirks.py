"""Measure how the real SMTP servers answer the soft spots of RFC 5321.

    python -m interop.smtp_quirks                 # every server, Markdown table
    python -m interop.smtp_quirks postfix exim    # some of them
    python -m interop.smtp_quirks --json FILE     # the raw replies too

Each probe is one fresh connection: read the whole greeting, send the
probe's chunks one write each, and after each chunk collect what the
server sends until it is quiet for QUIET seconds (or closes). Nothing is
pipelined except where the probe is about pipelining. What was stored is
reported for the DATA probes (number of messages in alice's Maildir).
The table in docs/interop-smtp.md is this command's output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import time
from dataclasses import dataclass, field

from interop.smtp_servers import SMTP_SERVERS, ServerUnavailable, SmtpServer

#: a server that has answered is done when nothing more comes for this long
QUIET = 0.6
#: bound on one step's wait for a first octet (Postfix and Exim answer at
#: once; a longer silence is reported as "(no reply)")
STEP_TIMEOUT = 3.0
#: bound on what one step reads
MAX_STEP = 65536

EHLO = b"EHLO client.example.test\r\n"
MAIL = b"MAIL FROM:<sender@example.org>\r\n"
RCPT = b"RCPT TO:<alice@example.test>\r\n"


@dataclass
class Probe:
    name: str
    chunks: list[bytes]
    #: report how many messages alice's Maildir gained
    counts_delivery: bool = False
    #: send the first chunk before the greeting arrives
    early: bool = False


PROBES = [
    Probe("HELP", [EHLO, b"HELP\r\n"]),
    Probe("VRFY alice", [EHLO, b"VRFY alice\r\n"]),
    Probe("VRFY nosuchuser", [EHLO, b"VRFY nosuchuser\r\n"]),
    Probe("VRFY alice@example.test", [EHLO, b"VRFY alice@example.test\r\n"]),
    Probe("EXPN alice", [EHLO, b"EXPN alice\r\n"]),
    Probe("NOOP ended by bare LF", [EHLO, b"NOOP\n"]),
    Probe("second EHLO", [EHLO, EHLO]),
    Probe("RSET before EHLO", [b"RSET\r\n"]),
    Probe("MAIL before EHLO", [MAIL]),
    Probe("nested MAIL", [EHLO, MAIL, MAIL]),
    Probe("unknown MAIL parameter", [EHLO, b"MAIL FROM:<sender@example.org> FOO=BAR\r\n"]),
    Probe("unknown command", [EHLO, b"FROB\r\n"]),
    Probe("NOOP with an argument", [EHLO, b"NOOP hello\r\n"]),
    Probe("command line of 600 octets", [EHLO, b"NOOP " + b"x" * 593 + b"\r\n"]),
    Probe(
        "MAIL+RCPT+DATA in one write",
        [EHLO, MAIL + RCPT + b"DATA\r\n", b"Subject: p\r\n\r\npipelined\r\n.\r\n"],
        counts_delivery=True,
    ),
    Probe("EHLO before the greeting", [EHLO], early=True),
    Probe(
        "bare LF line ends in DATA",
        [EHLO, MAIL, RCPT, b"DATA\r\n", b"Subject: lf\n\nline one\nline two\r\n.\r\n"],
        counts_delivery=True,
    ),
    Probe(
        "`\\n.\\n` inside DATA (smuggling)",
        [
            EHLO,
            MAIL,
            RCPT,
            b"DATA\r\n",
            b"Subject: s\r\n\r\nbefore\n.\nNOOP\r\nafter\r\n.\r\n",
        ],
        counts_delivery=True,
    ),
    Probe(
        "`\\r\\n.\\n` inside DATA",
        [EHLO, MAIL, RCPT, b"DATA\r\n", b"Subject: s\r\n\r\nbefore\r\n.\nafter\r\n.\r\n"],
        counts_delivery=True,
    ),
]


@dataclass
class Outcome:
    probe: str
    #: per chunk, the reply lines received after it ("[closed]" at EOF)
    replies: list[list[str]] = field(default_factory=list)
    delivered: int | None = None
    #: the messages alice's Maildir gained (DATA probes)
    stored: list[bytes] = field(default_factory=list)
    skips_ehlo: bool = False

    def summary(self) -> str:
        """The replies after the greeting, and after the first EHLO when
        the probe starts with one (the probe is about what follows)."""
        parts = []
        skip = 2 if self.skips_ehlo else 1
        for lines in self.replies[skip:]:
            parts.append(" / ".join(_short(line) for line in lines) or "(no reply)")
        text = "; ".join(parts)
        if self.delivered is not None:
            text += f"; stored: {self.delivered}"
        return text


def _short(line: str) -> str:
    return line if len(line) <= 60 else line[:57] + "..."


def _collect(sock: socket.socket) -> list[str]:
    """Reply lines until the server is quiet or closes (bounded)."""
    data = bytearray()
    closed = False
    sock.settimeout(STEP_TIMEOUT)
    deadline = time.monotonic() + STEP_TIMEOUT + 5 * QUIET
    while len(data) < MAX_STEP and time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        except OSError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
        sock.settimeout(QUIET)
    lines = [
        line.decode("utf-8", "replace").rstrip("\r")
        for line in bytes(data).split(b"\n")
        if line.strip()
    ]
    # a multi-line reply is summed up by its last line plus the number of lines
    folded: list[str] = []
    run = 0
    for line in lines:
        run += 1
        if line[3:4] != "-":
            folded.append(line if run == 1 else f"{line} ({run} lines)")
            run = 0
    if run:
        folded.append(f"{lines[-1]} (unterminated)")
    if closed:
        folded.append("[closed]")
    return folded


def run_probe(server: SmtpServer, probe: Probe) -> Outcome:
    outcome = Outcome(probe.name, skips_ehlo=probe.chunks[0] == EHLO and not probe.early)
    before = len(server.messages("alice"))
    with socket.create_connection(server.address, timeout=STEP_TIMEOUT) as sock:
        chunks = list(probe.chunks)
        if probe.early:
            sock.sendall(chunks.pop(0))
            outcome.replies.append([])
        outcome.replies.append(_collect(sock))  # the greeting (and early answers)
        for chunk in chunks:
            if outcome.replies[-1][-1:] == ["[closed]"]:
                break
            with contextlib.suppress(OSError):
                sock.sendall(chunk)
            outcome.replies.append(_collect(sock))
        with contextlib.suppress(OSError):
            sock.sendall(b"QUIT\r\n")
    if probe.early:
        # the greeting step holds the answers to the early EHLO
        outcome.replies = [[], outcome.replies[1]]
    if probe.counts_delivery:
        time.sleep(1.0)  # the MTAs deliver from their queue
        outcome.stored = server.messages("alice")[before:]
        outcome.delivered = len(outcome.stored)
    return outcome


def measure(names: list[str]) -> dict[str, dict]:
    results: dict[str, dict] = {}
    for name in names:
        server = SMTP_SERVERS[name]()
        try:
            server.start()
        except ServerUnavailable as exc:
            server.stop()
            results[name] = {"unavailable": str(exc)}
            continue
        try:
            outcomes = [run_probe(server, probe) for probe in PROBES]
            results[name] = {
                "version": server.version(),
                "greeting": server.greeting,
                "ehlo": server.ehlo_lines,
                "probes": {
                    o.probe: {
                        "replies": o.replies,
                        "stored": [m.decode("utf-8", "replace") for m in o.stored],
                    }
                    for o in outcomes
                },
                "summary": {o.probe: o.summary() for o in outcomes},
            }
        finally:
            server.stop()
    return results


def markdown(results: dict[str, dict]) -> str:
    names = list(results)
    rows = ["| probe | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for probe in PROBES:
        cells = []
        for name in names:
            summary = results[name].get("summary", {})
            cell = summary.get(probe.name, "unavailable")
            cells.append(cell.replace("|", "\\|"))
        rows.append(f"| {probe.name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interop.smtp_quirks")
    parser.add_argument("servers", nargs="*", help=", ".join(SMTP_SERVERS))
    parser.add_argument("--json", help="also write every reply to this file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.servers) - set(SMTP_SERVERS))
    if unknown:
        parser.error(f"unknown server {', '.join(unknown)} (known: {', '.join(SMTP_SERVERS)})")
    names = args.servers or list(SMTP_SERVERS)
    results = measure(names)
    print(markdown(results))
    for name, result in results.items():
        if "unavailable" in result:
            print(f"\n{name}: unavailable: {result['unavailable']}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
