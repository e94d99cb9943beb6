"""Coverage-guided fuzzing of the sans-I/O cores (``Pop3Session``, ``SmtpSession``).

Every input builds a fresh session from its first byte (POP3 or SMTP,
logged in or not, APOP, STLS offered, TLS required, UTF8 mode, a small
bad-command limit), then feeds the rest of the input in pieces whose size
the second byte picks.  A crash is any exception out of ``receive_data``
(or ``tls_started`` / ``connection_lost``), or a non-empty output that does
not end with CRLF.  The maildrop is in memory: three eager messages and two
lazy ones that are streamed in 7-octet pieces (the streaming threshold is
lowered so RETR/TOP of them go through the piecewise stuffing and TOP code).

With atheris (libFuzzer; ``pip install atheris``) the reference_server
modules are instrumented and libFuzzer's own figures are printed (``Done N
runs in S second(s)``); without it, or with ``--engine random``, a seeded
mutator over a corpus of valid dialogues runs instead.  A measurement
script, not a test::

    python benchmarks/fuzz_core.py --runs 10000000
    python benchmarks/fuzz_core.py --seconds 600 --engine random
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

try:
    import atheris
except ImportError:  # the fallback engine below needs nothing
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["reference_server"]):
        from reference_server.pop3 import protocol
        from reference_server.smtp import delivery as smtp_delivery
        from reference_server.smtp import protocol as smtp_protocol
        from reference_server.store import maildrop as storage
else:
    from reference_server.pop3 import protocol
    from reference_server.smtp import delivery as smtp_delivery
    from reference_server.smtp import protocol as smtp_protocol
    from reference_server.store import maildrop as storage

storage.SMALL_MESSAGE_OCTETS = 16  # lazy messages above this are streamed

MESSAGES = [
    b"Subject: one\r\n\r\nbody\r\n.dot line\r\n",
    b"Subject: two\r\nX: y\r\n\r\n",
    b"no header end at all\r\n..\r\n",
]
LAZY_MESSAGES = [
    b"Subject: lazy\r\n\r\n.first\r\nsecond\r\n.\r\nthird line is longer\r\n",
    "Subject: caf\u00e9\r\n\r\nutf8 header\r\n".encode(),
]
SEED_DIALOGUES = [
    b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 4\r\nTOP 4 1\r\n"
    b"DELE 1\r\nRSET\r\nLAST\r\nNOOP\r\nQUIT\r\n",
    b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nRETR 5\r\nUTF8\r\nLANG\r\nLANG en\r\nQUIT\r\n",
    b"AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\nTOP 5 0\r\nLIST 9\r\nDELE 0\r\nQUIT\r\n",
    b"STLS\r\nUSER alice\r\nAPOP alice 0123456789abcdef0123456789abcdef\r\nQUIT\r\n",
    b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nhi\r\n.\r\n"
    b"BDAT 3 LAST\r\nabcRSET\r\nAUTH PLAIN\r\n*\r\nQUIT\r\n",
]


# Piece sizes the second byte picks: one octet at a time and the small chops
# that split every command and terminator, then pieces that hold several
# commands.  (Every size from 1 to 16 cost ~100 receive_data calls per input
# for no new edges; this table keeps the 1-octet and the splitting cases.)
FEED_STEPS = (1, 2, 3, 5, 7, 16, 64, 256)


class _NoLock:
    def release(self) -> None:
        pass


def _pieces(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 7):
        yield data[start : start + 7]


class MemoryMaildrop(storage.Maildrop):
    def load(self) -> list[storage.StoredMessage]:
        messages = [
            storage.StoredMessage(f"m{n}", f"uid{n}", content) for n, content in enumerate(MESSAGES)
        ]
        for n, content in enumerate(LAZY_MESSAGES, start=len(MESSAGES)):
            messages.append(
                storage.StoredMessage(
                    f"m{n}", f"uid{n}", size=len(content), opener=lambda c=content: _pieces(c)
                )
            )
        return messages

    def commit(self, deleted: object) -> None:
        pass

    def seen_uids(self) -> set[str]:
        return set()

    def record_seen(self, uids: set[str]) -> None:
        pass


class MemoryStore(storage.MaildropStore):
    maildrop_class = MemoryMaildrop

    def open(self, user: str) -> storage.Maildrop:
        return self.maildrop_class(self, user, Path(user), _NoLock())  # type: ignore[arg-type]


class MemoryDeliverer(smtp_delivery.Deliverer):
    def deliver(self, envelope: smtp_delivery.Envelope) -> str:
        return "fuzz-id"


class Crash(Exception):
    """An invariant of the core was broken."""


USERS = protocol.UserDirectory({"alice": "secret", "bob": "pw"})
USERS.set("carol", "apop-secret", protocol.LoginMethod.APOP)
STORE = MemoryStore("/nonexistent/{user}")
_SCRATCH = tempfile.mkdtemp(prefix="mailspec-fuzz-")
DELIVERER = MemoryDeliverer(storage.MaildirStore(_SCRATCH + "/{user}"))


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    flags, split = data[0], data[1]
    payload = data[2:]
    step = FEED_STEPS[split % len(FEED_STEPS)] if split else len(payload) or 1
    if flags & 0x80:
        smtp = smtp_protocol.SmtpSession(
            DELIVERER,
            USERS,
            smtp_protocol.SmtpConfig(
                domain="example.org",
                starttls_available=bool(flags & 1),
                auth_without_tls=bool(flags & 2),
                any_domain=bool(flags & 4),
                refuse_bare_line_ends=not flags & 8,
            ),
        )
        check(smtp.greeting())
        for start in range(0, len(payload), step):
            check(smtp.receive_data(payload[start : start + step]))
            if smtp.tls_requested and flags & 16:
                smtp.tls_established()
        smtp.connection_lost()
        return
    config = protocol.SessionConfig(
        enable_apop=bool(flags & 1),
        stls_available=bool(flags & 4),
        require_tls=bool(flags & 8),
        bad_command_limit=3 if flags & 16 else 0,
        expire_days=0 if flags & 32 else None,
        hostname="fuzz.example",
    )
    session = protocol.Pop3Session(STORE, USERS, config)
    check(session.greeting())
    if flags & 2:
        check(session.receive_data(b"USER alice\r\nPASS secret\r\n"))
    if flags & 64:
        session.utf8_mode = True
    for start in range(0, len(payload), step):
        check(session.receive_data(payload[start : start + step]))
        if session.tls_pending:
            session.tls_started(version="TLSv1.3", cipher="fuzz")
    session.connection_lost()


def check(output: bytes) -> None:
    if output and not output.endswith(b"\r\n"):
        raise Crash(f"output does not end with CRLF: {output[-40:]!r}")


def mutate(rng: random.Random, corpus: list[bytes]) -> bytes:
    data = bytearray(rng.choice(corpus))
    for _ in range(rng.randint(1, 8)):
        choice = rng.random()
        position = rng.randint(0, len(data))
        if choice < 0.3:
            data[position:position] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
        elif choice < 0.5 and data:
            del data[position : position + rng.randint(1, 8)]
        elif choice < 0.7:
            token = rng.choice(
                [b"\r\n", b"\n", b"\r", b"\x00", b" ", b"4294967297", b"-1", b"0", b".", b"*"]
            )
            data[position:position] = token
        elif choice < 0.8:
            data[position:position] = b"A" * rng.choice([255, 256, 512, 1000, 9000])
        else:
            other = rng.choice(corpus)
            data[position:position] = other[: rng.randint(0, len(other))]
    return bytes(data)


def random_engine(runs: int, seconds: float, seed: int) -> int:
    rng = random.Random(seed)
    corpus = [
        bytes([flags, split]) + dialogue
        for flags in (0, 2, 3, 22, 0x80, 0x83)
        for split in (0, 1, 5)
        for dialogue in SEED_DIALOGUES
    ]
    started = time.monotonic()
    done = 0
    while done < runs and time.monotonic() - started < seconds:
        data = mutate(rng, corpus)
        try:
            one_input(data)
        except Exception as problem:
            print(f"CRASH on {data!r}: {type(problem).__name__}: {problem}", flush=True)
            return 1
        done += 1
    elapsed = time.monotonic() - started
    print(
        f"engine=random runs={done} crashes=0 seconds={elapsed:.1f} "
        f"rate={done / max(elapsed, 1e-9):.0f}/s",
        flush=True,
    )
    return 0


def atheris_engine(runs: int, seconds: float, seed: int, extra: list[str]) -> None:
    assert atheris is not None
    corpus_directory = Path(tempfile.mkdtemp(prefix="mailspec-fuzz-corpus-"))
    for n, dialogue in enumerate(SEED_DIALOGUES):
        for flags in (0, 2, 3, 22, 0x80, 0x83):
            (corpus_directory / f"seed-{n}-{flags}").write_bytes(bytes([flags, 3]) + dialogue)
    arguments = [sys.argv[0], f"-seed={seed}", "-max_len=1024", "-print_final_stats=1"]
    if runs > 0:
        arguments.append(f"-runs={runs}")
    if seconds > 0:
        arguments.append(f"-max_total_time={int(seconds)}")
    arguments += [*extra, str(corpus_directory)]
    print(f"engine=atheris libFuzzer arguments: {' '.join(arguments[1:])}", flush=True)
    atheris.Setup(arguments, one_input)
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000_000, help="inputs to try (0: no bound)")
    parser.add_argument("--seconds", type=float, default=0, help="time bound (0: none)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--engine", choices=("atheris", "random"), default="atheris")
    parser.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags, e.g. -jobs=2")
    arguments = parser.parse_args()
    if arguments.engine == "atheris" and atheris is None:
        print("atheris is not installed: using --engine random", file=sys.stderr)
        arguments.engine = "random"
    if arguments.engine == "random":
        return random_engine(
            arguments.runs or sys.maxsize, arguments.seconds or float("inf"), arguments.seed
        )
    atheris_engine(arguments.runs, arguments.seconds, arguments.seed, arguments.libfuzzer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
