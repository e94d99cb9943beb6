"""kill -9 soak of the reference POP3 server (loopback only, bounded).

Each round starts ``python -m reference_server`` on 127.0.0.1 over a Maildir
store, lets one client thread per user run sessions that log in, UIDL,
RETR (and compare) one message, DELE one to three messages and QUIT, and
sends SIGKILL to the server after a random delay.  Then it checks the store
as the next server sees it (:meth:`MaildropStore.open`, which finishes an
UPDATE journal a killed server left behind):

* lost: a message no committed or unanswered QUIT deleted is missing;
* duplicated: a message's token appears twice;
* corrupted: a message's body does not match the digest in its header;
* unapplied: a deletion whose QUIT got ``+OK`` is still there;
* half: a session whose QUIT got no reply had some but not all of its
  deletions applied (UPDATE must be all or nothing).

Users whose maildrop runs low get new messages (tmp/, fsync, rename into
new/) between rounds.  Prints the kill count and the figures; exits 1 if
any figure other than the kill count is non-zero.  A measurement script,
not a timed test::

    python benchmarks/soak_kill9.py --kills 1000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

from reference_server.store.maildrop import JOURNAL_FILE_NAME, MaildirStore  # noqa: E402

PASSWORD = "soak-pw"
READY_TIMEOUT_SECONDS = 20.0
CLIENT_TIMEOUT_SECONDS = 10.0
REFILL_BELOW = 40
REFILL_COUNT = 40
_TOKEN = re.compile(rb"^Message-Id: <([0-9a-f]{24})@soak>\r?$", re.MULTILINE)
_DIGEST = re.compile(rb"^X-Soak-Digest: ([0-9a-f]{64})\r?$", re.MULTILINE)


@dataclass
class Figures:
    kills: int = 0
    sessions: int = 0
    quit_ok: int = 0
    quit_unanswered: int = 0
    deletions_committed: int = 0
    retr_mismatches: int = 0
    journals_finished: int = 0
    lost: int = 0
    duplicated: int = 0
    corrupted: int = 0
    unapplied: int = 0
    half: int = 0

    def failures(self) -> int:
        return (
            self.lost
            + self.duplicated
            + self.corrupted
            + self.unapplied
            + self.half
            + self.retr_mismatches
        )


@dataclass
class UserModel:
    present: set[str] = field(default_factory=set)


def make_message(rng: random.Random) -> tuple[str, bytes]:
    token = f"{rng.getrandbits(96):024x}"
    lines = []
    for _ in range(rng.randint(1, 40)):
        line = "".join(rng.choice("abc .xyz-=") for _ in range(rng.randint(0, 90)))
        lines.append(line)
    body = ("\n".join(lines) + "\n").encode()
    digest = hashlib.sha256(body).hexdigest()
    header = f"Message-Id: <{token}@soak>\nX-Soak-Digest: {digest}\nSubject: soak\n\n"
    return token, header.encode() + body


def deliver(maildir: Path, rng: random.Random, count: int) -> set[str]:
    tokens = set()
    for _ in range(count):
        token, content = make_message(rng)
        temporary = maildir / "tmp" / f"{token}.soak"
        with open(temporary, "wb") as output:
            output.write(content)
            output.flush()
            os.fsync(output.fileno())
        os.rename(temporary, maildir / "new" / f"{token}.soak")
        tokens.add(token)
    fd = os.open(maildir / "new", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return tokens


def check_message(wire: bytes) -> str | None:
    """The token of an intact message, None if it is corrupted."""
    token = _TOKEN.search(wire)
    digest = _DIGEST.search(wire)
    separator = wire.find(b"\r\n\r\n")
    if token is None or digest is None or separator < 0:
        return None
    body = wire[separator + 4 :].replace(b"\r\n", b"\n")
    if hashlib.sha256(body).hexdigest().encode() != digest.group(1):
        return None
    return token.group(1).decode()


class Client(threading.Thread):
    """Runs sessions for one user until the server dies."""

    def __init__(self, port: int, user: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.user = user
        self.rng = random.Random(seed)
        self.committed: list[set[str]] = []
        self.unanswered: list[set[str]] = []
        self.sessions = 0
        self.retr_mismatches = 0

    def run(self) -> None:
        while True:
            try:
                if not self.one_session():
                    return
            except OSError:
                return

    def one_session(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), CLIENT_TIMEOUT_SECONDS) as sock:
            stream = sock.makefile("rb")
            if not stream.readline().startswith(b"+OK"):
                return False
            for command in (f"USER {self.user}", f"PASS {PASSWORD}"):
                sock.sendall(command.encode() + b"\r\n")
                if not stream.readline().startswith(b"+OK"):
                    return False
            self.sessions += 1
            sock.sendall(b"UIDL\r\n")
            listing = read_multiline(stream)
            if listing is None:
                return False
            numbers = {}
            for line in listing.splitlines():
                number, uid = line.split(b" ", 1)
                numbers[uid.decode().removesuffix(".soak")] = number.decode()
            if not numbers:
                sock.sendall(b"QUIT\r\n")
                stream.readline()
                return True
            token = self.rng.choice(sorted(numbers))
            sock.sendall(f"RETR {numbers[token]}\r\n".encode())
            content = read_multiline(stream)
            if content is None:
                return False
            if check_message(content) != token:
                self.retr_mismatches += 1
            doomed = set(
                self.rng.sample(sorted(numbers), min(len(numbers), self.rng.randint(1, 3)))
            )
            for token in doomed:
                sock.sendall(f"DELE {numbers[token]}\r\n".encode())
                if not stream.readline().startswith(b"+OK"):
                    return False
            sock.sendall(b"QUIT\r\n")
            try:
                reply = stream.readline()
            except OSError:
                reply = b""
            if reply.startswith(b"+OK"):
                self.committed.append(doomed)
                return True
            self.unanswered.append(doomed)
            return False


def read_multiline(stream) -> bytes | None:  # type: ignore[no-untyped-def]
    if not stream.readline().startswith(b"+OK"):
        return None
    content = bytearray()
    while (line := stream.readline()) != b".\r\n":
        if not line.endswith(b"\r\n"):
            return None
        content += line[1:] if line.startswith(b".") else line
    return bytes(content)


def start_server(root: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reference_server",
            "--listen",
            "127.0.0.1:0",
            "--store",
            f"maildir:{root}/store/{{user}}",
            "--users",
            str(root / "users"),
            "--log-level",
            "WARNING",
        ],
        cwd=REPOSITORY_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    line = process.stdout.readline()  # the server prints it once it listens
    if time.monotonic() > deadline or "listening on" not in line:
        process.kill()
        raise SystemExit(f"soak: server did not start: {line!r}")
    return process, int(line.rsplit(":", 1)[1])


def check_store(
    root: Path, models: dict[str, UserModel], clients: list[Client], figures: Figures
) -> None:
    store = MaildirStore(f"{root}/store/{{user}}")
    for client in clients:
        model = models[client.user]
        if (store.path_for(client.user) / JOURNAL_FILE_NAME).exists():
            figures.journals_finished += 1
        maildrop = store.open(client.user)  # finishes a journal, like the next login
        try:
            found: Counter[str] = Counter()
            for message in maildrop.messages:
                token = check_message(message.content)
                if token is None:
                    figures.corrupted += 1
                else:
                    found[token] += 1
        finally:
            maildrop.release()
        figures.duplicated += sum(count - 1 for count in found.values() if count > 1)
        committed = set().union(*client.committed)
        figures.deletions_committed += len(committed)
        figures.unapplied += len(committed & set(found))
        maybe = set().union(*client.unanswered)
        for group in client.unanswered:
            gone = group - set(found)
            if gone and gone != group:
                figures.half += 1
        figures.lost += len(model.present - committed - maybe - set(found))
        model.present = set(found) - committed
        figures.sessions += client.sessions
        figures.quit_ok += len(client.committed)
        figures.quit_unanswered += len(client.unanswered)
        figures.retr_mismatches += client.retr_mismatches


def soak(kills: int, users: int, seed: int, max_delay: float) -> Figures:
    rng = random.Random(seed)
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="mailspec-soak-") as directory:
        root = Path(directory)
        (root / "users").write_text("".join(f"user{i}:{PASSWORD}\n" for i in range(users)))
        models = {}
        for i in range(users):
            maildir = root / "store" / f"user{i}"
            for subdirectory in ("cur", "new", "tmp"):
                (maildir / subdirectory).mkdir(parents=True)
            models[f"user{i}"] = UserModel(deliver(maildir, rng, REFILL_COUNT * 2))
        started = time.monotonic()
        for round_number in range(kills):
            process, port = start_server(root)
            clients = [Client(port, f"user{i}", rng.getrandbits(32)) for i in range(users)]
            for client in clients:
                client.start()
            time.sleep(rng.uniform(0.0, max_delay))
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            figures.kills += 1
            for client in clients:
                client.join(CLIENT_TIMEOUT_SECONDS * 2)
            check_store(root, models, clients, figures)
            for user, model in models.items():
                if len(model.present) < REFILL_BELOW:
                    model.present |= deliver(root / "store" / user, rng, REFILL_COUNT)
            if (round_number + 1) % 100 == 0:
                print(f"  {round_number + 1} kills, {time.monotonic() - started:.0f} s", flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--users", type=int, default=4, help="client threads, one maildrop each")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--max-delay", type=float, default=0.4, help="SIGKILL at uniform(0, S) s after start"
    )
    arguments = parser.parse_args()
    started = time.monotonic()
    figures = soak(arguments.kills, arguments.users, arguments.seed, arguments.max_delay)
    elapsed = time.monotonic() - started
    print(
        f"kills={figures.kills} sessions={figures.sessions} quit_ok={figures.quit_ok} "
        f"quit_unanswered={figures.quit_unanswered} "
        f"deletions_committed={figures.deletions_committed} "
        f"journals_finished_at_next_open={figures.journals_finished}"
    )
    print(
        f"lost={figures.lost} duplicated={figures.duplicated} corrupted={figures.corrupted} "
        f"unapplied_committed_deletions={figures.unapplied} half_applied_updates={figures.half} "
        f"retr_mismatches={figures.retr_mismatches} elapsed={elapsed:.0f}s"
    )
    return 1 if figures.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
