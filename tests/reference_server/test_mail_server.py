"""One local mail server, SMTP in and POP3 out: the promise of issue 11. A
message sent with smtplib or swaks is retrieved with poplib byte-identical
apart from the two trace headers (Return-Path:, Received:)."""

from __future__ import annotations

import os
import poplib
import shutil
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest
from pop3_testlib import REPOSITORY_ROOT
from smtp_testlib import PASSWORD, strip_trace_headers

from reference_server.combined import ReferenceMailServer

MESSAGE = (
    b"From: sender@client.test\r\nTo: alice@example.test\r\nSubject: round trip\r\n\r\n"
    b"first line\r\n.a line starting with a dot\r\n.\r\n..\r\n"
    b"From the mbox's point of view this line needs quoting\r\n"
    b"\r\ntrailing blank line above\r\n"
)


def retrieve_all(host: str, port: int, user: str, password: str) -> list[bytes]:
    """Every message over POP3, as the wire carried it (unstuffed, CRLF)."""
    client = poplib.POP3(host, port, timeout=10)
    try:
        client.user(user)
        client.pass_(password)
        count, _ = client.stat()
        return [b"".join(line + b"\r\n" for line in client.retr(n)[1]) for n in range(1, count + 1)]
    finally:
        client.quit()


def test_smtplib_in_poplib_out_byte_identical(mail_server: ReferenceMailServer) -> None:
    mail_server.add_user("alice", PASSWORD)
    with smtplib.SMTP(mail_server.host, mail_server.smtp_port, timeout=10) as client:
        client.sendmail("sender@client.test", ["alice@example.test"], MESSAGE)
    (retrieved,) = retrieve_all(mail_server.host, mail_server.pop3_port, "alice", PASSWORD)
    assert strip_trace_headers(retrieved) == MESSAGE
    assert mail_server.messages("alice") == [retrieved]


def test_the_fixture_takes_any_domain_and_auth_without_tls(
    mail_server: ReferenceMailServer,
) -> None:
    mail_server.add_user("alice", PASSWORD)
    mail_server.add_user("bob", "bobpw")
    with smtplib.SMTP(mail_server.host, mail_server.smtp_port, timeout=10) as client:
        client.login("bob", "bobpw")
        refused = client.sendmail("bob@x.test", ["alice@anywhere.test"], b"Subject: a\r\n\r\nb\r\n")
        assert refused == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("bob@x.test", ["nobody@anywhere.test"], b"x\r\n")
    (stored,) = mail_server.messages("alice")
    assert b"with ESMTPA id" in stored


def test_the_fixture_is_empty_for_each_test(mail_server: ReferenceMailServer) -> None:
    assert mail_server.users.names() == []
    assert list(mail_server.root.iterdir()) == []


def test_messages_added_directly_and_by_smtp_share_the_maildrop(
    mail_server: ReferenceMailServer,
) -> None:
    mail_server.add_user("alice", PASSWORD)
    mail_server.add_message("alice", b"Subject: direct\r\n\r\nx\r\n")
    with smtplib.SMTP(mail_server.host, mail_server.smtp_port, timeout=10) as client:
        client.sendmail("s@client.test", ["alice@example.test"], MESSAGE)
    retrieved = retrieve_all(mail_server.host, mail_server.pop3_port, "alice", PASSWORD)
    assert len(retrieved) == 2
    assert MESSAGE in [strip_trace_headers(m) for m in retrieved if m.startswith(b"Return-Path")]


@pytest.mark.skipif(shutil.which("swaks") is None, reason="apt-get install swaks")
def test_swaks_in_poplib_out_byte_identical(
    mail_server: ReferenceMailServer, tmp_path: Path
) -> None:
    mail_server.add_user("alice", PASSWORD)
    body = tmp_path / "message.eml"
    body.write_bytes(MESSAGE)
    result = subprocess.run(
        [
            "swaks",
            "--silent",
            "1",
            "--server",
            f"{mail_server.host}:{mail_server.smtp_port}",
            "--from",
            "sender@client.test",
            "--to",
            "alice@example.test",
            "--pipeline",
            "--data",
            str(body),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (retrieved,) = retrieve_all(mail_server.host, mail_server.pop3_port, "alice", PASSWORD)
    # swaks ends the data with CRLF . CRLF after the file's own last CRLF.
    assert strip_trace_headers(retrieved) == MESSAGE + b"\r\n"


class CombinedProcess:
    """``python -m reference_server --listen ... --smtp-listen ...``."""

    def __init__(self, *arguments: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reference_server", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)},
        )
        assert self.process.stdout is not None
        pop3_line = self.process.stdout.readline().decode()
        smtp_line = self.process.stdout.readline().decode()
        assert pop3_line.startswith("mailspec-reference-server listening on "), (
            pop3_line,
            self.process.stderr.read().decode() if self.process.stderr else "",
        )
        assert smtp_line.startswith("mailspec-reference-smtp-server listening on "), smtp_line
        self.host, _, pop3_port = pop3_line.split()[-1].rpartition(":")
        self.pop3_port = int(pop3_port)
        self.smtp_port = int(smtp_line.split()[-1].rpartition(":")[2])

    def stop(self) -> int:
        self.process.terminate()
        self.process.communicate(timeout=10)
        return self.process.returncode


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_one_process_serves_pop3_and_smtp_on_one_store(tmp_path: Path, kind: str) -> None:
    users = tmp_path / "users"
    users.write_text(f"alice:{PASSWORD}\n")
    (tmp_path / "store").mkdir()
    server = CombinedProcess(
        "--listen",
        "127.0.0.1:0",
        "--smtp-listen",
        "127.0.0.1:0",
        "--smtp-domain",
        "mail.example.test",
        "--store",
        f"{kind}:{tmp_path}/store/{{user}}",
        "--users",
        str(users),
    )
    try:
        with smtplib.SMTP(server.host, server.smtp_port, timeout=10) as client:
            client.sendmail("sender@client.test", ["alice@mail.example.test"], MESSAGE)
            client.sendmail("other@client.test", ["alice@mail.example.test"], MESSAGE)
        retrieved = retrieve_all(server.host, server.pop3_port, "alice", PASSWORD)
    finally:
        assert server.stop() == 0
    assert [strip_trace_headers(m) for m in retrieved] == [MESSAGE, MESSAGE]
    assert retrieved[1].startswith(b"Return-Path: <other@client.test>\r\n")


def test_smtp_listen_address_errors_are_one_line(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("alice:pw\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reference_server",
            "--listen",
            "127.0.0.1:0",
            "--smtp-listen",
            "bogus",
            "--store",
            f"maildir:{tmp_path}/{{user}}",
            "--users",
            str(users),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)},
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "reference_server: error: bad --listen 'bogus': expected HOST:PORT, e.g. 127.0.0.1:1110"
    ]


def test_mailspec_serve_passes_smtp_listen_through() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conformance", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)},
        check=False,
    )
    assert result.returncode == 0 and "--smtp-listen" in result.stdout
