"""Real POP3 clients fetch one mailbox and must deliver byte-identical messages.

Clients: Python's poplib (always), fetchmail, mpop and getmail6 (Debian
packages of those names; skipped with a reason when the binary is absent).
Every client runs with its configuration in a temporary directory and HOME
pointing there, never the user's own.
"""

from __future__ import annotations

import os
import poplib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pop3_testlib import write_maildir

from reference_server import UserDirectory, start_server
from reference_server.pop3.server import ServerHandle

PASSWORD = "interop-pw"

MESSAGES = [
    b"From: a@example.org\r\nSubject: crlf\r\n\r\nplain CRLF body\r\n",
    b"From: b@example.org\nSubject: lf\n\n.leading dot\n.\n..two dots\nend\n",
    b"From: c@example.org\nSubject: no final newline\n\nlast line without newline",
    b"From: d@example.org\nSubject: 8bit\nContent-Type: text/plain; charset=utf-8\n\n"
    b"caf\xc3\xa9 \xe2\x82\xac\nFrom the middle of a line\n",
    b"From: e@example.org\nSubject: big\n\n"
    + b"".join(b"line %06d %s\n" % (i, b"x" * 60) for i in range(3000)),
    b"From: f@example.org\nSubject: empty body\n\n",
]


def as_delivered(stored: bytes) -> bytes:
    """What a Unix client writes: LF line ends, a final newline."""
    local = stored.replace(b"\r\n", b"\n")
    return local if local.endswith(b"\n") else local + b"\n"


EXPECTED = [as_delivered(message) for message in MESSAGES]

# A tiny MDA: writes stdin to DIR/NNNN (delivery order).
DELIVER_SCRIPT = """\
import os, sys
directory = sys.argv[1]
with open(os.path.join(directory, "%04d" % len(os.listdir(directory))), "wb") as out:
    out.write(sys.stdin.buffer.read())
"""


@pytest.fixture
def served_mailbox(tmp_path: Path) -> Iterator[tuple[ServerHandle, Path]]:
    maildir = write_maildir(tmp_path / "store", "alice", MESSAGES)
    users = UserDirectory({"alice": PASSWORD})
    with start_server(store=f"maildir:{tmp_path}/store/{{user}}", users=users) as handle:
        yield handle, maildir


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (Debian package: apt-get install {binary})")
    return path


def run_client(command: list[str], home: Path) -> None:
    environment = {**os.environ, "HOME": str(home), "LC_ALL": "C"}
    result = subprocess.run(command, env=environment, capture_output=True, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)


def delivered_files(directory: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(directory.iterdir())]


def remaining(maildir: Path) -> int:
    return len(list((maildir / "new").iterdir())) + len(list((maildir / "cur").iterdir()))


def private_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_poplib_fetches_byte_identical_messages(
    served_mailbox: tuple[ServerHandle, Path],
) -> None:
    handle, _ = served_mailbox
    client = poplib.POP3(handle.host, handle.port, timeout=30)
    client.user("alice")
    client.pass_(PASSWORD)
    fetched = [b"\n".join(client.retr(n)[1]) + b"\n" for n in range(1, len(MESSAGES) + 1)]
    client.quit()
    assert fetched == EXPECTED


@pytest.mark.interop
def test_fetchmail_fetches_byte_identical_messages(
    served_mailbox: tuple[ServerHandle, Path], tmp_path: Path
) -> None:
    fetchmail = require("fetchmail")
    handle, maildir = served_mailbox
    outbox = tmp_path / "fetchmail-out"
    outbox.mkdir()
    deliver = tmp_path / "deliver.py"
    deliver.write_text(DELIVER_SCRIPT)
    rc = private_file(
        tmp_path / "fetchmailrc",
        f"""\
set no bouncemail
set no syslog
set invisible
poll {handle.host} service {handle.port} protocol pop3 auth password no dns
  user "alice" there with password "{PASSWORD}" is "alice" here
  keep fetchall no rewrite sslproto ''
  mda "{sys.executable} {deliver} {outbox}"
""",
    )
    run_client(
        [
            fetchmail,
            "--nodetach",
            "--silent",
            "-f",
            str(rc),
            "-i",
            str(tmp_path / "fetchids"),
            "--pidfile",
            str(tmp_path / "fetchmail.pid"),
        ],
        tmp_path,
    )
    assert delivered_files(outbox) == EXPECTED
    assert remaining(maildir) == len(MESSAGES)  # "keep"


def mpop_config(handle: ServerHandle, tmp_path: Path, outbox: Path, keep: bool) -> Path:
    return private_file(
        tmp_path / "mpoprc",
        f"""\
defaults
account default
host {handle.host}
port {handle.port}
user alice
password {PASSWORD}
auth user
tls off
delivery maildir {outbox}
keep {"on" if keep else "off"}
received_header off
uidls_file {tmp_path / "mpop-uidls"}
""",
    )


@pytest.mark.interop
def test_mpop_fetches_byte_identical_messages(
    served_mailbox: tuple[ServerHandle, Path], tmp_path: Path
) -> None:
    mpop = require("mpop")
    handle, maildir = served_mailbox
    outbox = tmp_path / "mpop-out"
    write_maildir(tmp_path, "mpop-out", [])
    config = mpop_config(handle, tmp_path, outbox, keep=True)
    run_client([mpop, "--quiet", f"--file={config}", "--all-accounts"], tmp_path)
    assert sorted(delivered_files(outbox / "new")) == sorted(EXPECTED)
    assert remaining(maildir) == len(MESSAGES)


@pytest.mark.interop
def test_mpop_download_and_delete_empties_the_maildrop(
    served_mailbox: tuple[ServerHandle, Path], tmp_path: Path
) -> None:
    mpop = require("mpop")
    handle, maildir = served_mailbox
    outbox = tmp_path / "mpop-out"
    write_maildir(tmp_path, "mpop-out", [])
    config = mpop_config(handle, tmp_path, outbox, keep=False)
    run_client([mpop, "--quiet", f"--file={config}", "--all-accounts"], tmp_path)
    assert sorted(delivered_files(outbox / "new")) == sorted(EXPECTED)
    assert remaining(maildir) == 0


@pytest.mark.interop
def test_getmail_fetches_byte_identical_messages(
    served_mailbox: tuple[ServerHandle, Path], tmp_path: Path
) -> None:
    getmail = require("getmail")
    handle, maildir = served_mailbox
    outbox = tmp_path / "getmail-out"
    outbox.mkdir()
    deliver = tmp_path / "deliver.py"
    deliver.write_text(DELIVER_SCRIPT)
    # External MDA: getmail refuses its own Maildir delivery when run as root.
    rc = tmp_path / "getmailrc"
    rc.write_text(f"""\
[retriever]
type = SimplePOP3Retriever
server = {handle.host}
port = {handle.port}
username = alice
password = {PASSWORD}

[destination]
type = MDA_external
path = {sys.executable}
arguments = ("{deliver}", "{outbox}")
allow_root_commands = true

[options]
delete = false
read_all = true
received = false
delivered_to = false
verbose = 0
""")
    run_client([getmail, f"--getmaildir={tmp_path}", f"--rcfile={rc}"], tmp_path)
    delivered = delivered_files(outbox)
    # getmail's MDA_external delivery prepends an envelope trace header.
    trace = b"Return-Path: <unknown>\n"
    assert all(message.startswith(trace) for message in delivered)
    assert [message[len(trace) :] for message in delivered] == EXPECTED
    assert remaining(maildir) == len(MESSAGES)
