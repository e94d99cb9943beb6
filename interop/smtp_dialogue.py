"""A raw SMTP dialogue with timings, for minimal reproductions.

    python -m interop.smtp_dialogue PORT 'EHLO c.test\\r\\n' 'MAIL FROM:<s@example.org>\\r\\n' ...

Connects to 127.0.0.1:PORT, reads the greeting, then sends each argument
(backslash escapes such as \\r\\n decoded) in one write of its own and
prints what arrived until the server has been quiet for QUIET seconds
(or WAIT seconds when nothing comes at all). Every line is `seconds
C:|S: bytes`, so a transcript shows which write got no answer. No SMTP
parsing: what the server sends is printed as it came.

Standard library only: nothing from conformance/ or reference_server/.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

#: how long to wait for the first byte of an answer
WAIT = 3.0
#: the answer is over once the server has been quiet this long
QUIET = 0.5
#: bound of what one answer may hold (RFC 5321 section 4.5.3.1.5 reply
#: lines are at most 512 octets; an EHLO reply has one per keyword)
MAX_ANSWER = 65536


def read_answer(sock: socket.socket, wait: float = WAIT, quiet: float = QUIET) -> bytes:
    """What arrives within `wait` seconds, then until `quiet` seconds pass
    without more; b"<EOF>" appended when the server closed."""
    out = bytearray()
    sock.settimeout(wait)
    try:
        while len(out) < MAX_ANSWER:
            chunk = sock.recv(4096)
            if not chunk:
                out += b"<EOF>"
                break
            out += chunk
            sock.settimeout(quiet)
    except TimeoutError:
        pass
    return bytes(out)


def decode_escapes(text: str) -> bytes:
    """`EHLO x\\r\\n` as typed in a shell -> the bytes it means."""
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def dialogue(port: int, writes: list[bytes], host: str = "127.0.0.1") -> list[str]:
    lines: list[str] = []
    with socket.create_connection((host, port), timeout=WAIT) as sock:
        started = time.monotonic()

        def note(direction: str, data: bytes) -> None:
            lines.append(f"{time.monotonic() - started:5.2f} {direction}: {data!r}")

        note("S", read_answer(sock))
        for data in writes:
            sock.sendall(data)
            note("C", data)
            note("S", read_answer(sock))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interop.smtp_dialogue")
    parser.add_argument("port", type=int)
    parser.add_argument("writes", nargs="*", help="each sent in one write (\\r\\n decoded)")
    args = parser.parse_args(argv)
    try:
        for line in dialogue(args.port, [decode_escapes(w) for w in args.writes]):
            print(line)
    except (OSError, UnicodeError) as exc:
        print(f"smtp_dialogue: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
