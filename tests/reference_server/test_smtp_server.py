"""The SMTP server over real sockets: Python's smtplib (plain, STARTTLS,
smtps, AUTH, SMTPUTF8), BDAT and STARTTLS injection over a raw socket,
swaks from Debian, 421 on timeout and shutdown, the command line, and
crash safety under kill -9."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme
from pop3_testlib import REPOSITORY_ROOT
from smtp_testlib import DOMAIN, PASSWORD, stored_messages, strip_trace_headers

from reference_server.pop3.protocol import UserDirectory
from reference_server.smtp.server import SmtpServerHandle, start_smtp_server

READY_PREFIX = "mailspec-reference-smtp-server listening on "


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "maildrops"
    path.mkdir()
    return path


@pytest.fixture
def server(root: Path, server_context: ssl.SSLContext) -> Iterator[SmtpServerHandle]:
    users = UserDirectory({"alice": PASSWORD, "bob": "bobpw"})
    with start_smtp_server(
        store=f"maildir:{root}/{{user}}",
        users=users,
        domain=DOMAIN,
        tls_context=server_context,
        smtps_port=0,
    ) as handle:
        yield handle


MESSAGE = (
    b"From: sender@client.test\r\nTo: alice@example.test\r\nSubject: hello\r\n\r\n"
    b"line one\r\n.starts with a dot\r\n\r\nlast line\r\n"
)


def test_smtplib_sendmail_is_stored_byte_identical(server: SmtpServerHandle, root: Path) -> None:
    with smtplib.SMTP(server.host, server.port, local_hostname="client.test", timeout=10) as c:
        refused = c.sendmail("sender@client.test", [f"alice@{DOMAIN}", f"bob@{DOMAIN}"], MESSAGE)
        assert refused == {}
        assert c.noop()[0] == 250
    for user in ("alice", "bob"):
        (stored,) = stored_messages(root, user)
        assert strip_trace_headers(stored) == MESSAGE


def test_maildir_names_sort_in_delivery_order_within_one_second(tmp_path: Path) -> None:
    """The maildrop numbers messages in file-name order: a delivery at
    .099999 s must sort before the next one at .100000 s of the same second
    (unpadded microseconds swapped them; seen as a flaky POP3 order)."""
    from reference_server.smtp.delivery import Deliverer
    from reference_server.store.maildrop import store_from_spec

    deliverer = Deliverer(store_from_spec(f"maildir:{tmp_path}/{{user}}"))
    instants = [1_733_000_000.099999, 1_733_000_000.1, 1_733_000_000.999999, 1_733_000_001.0]
    names = [deliverer.unique_name(now) for now in instants]
    assert names == sorted(names)
    many = [deliverer.unique_name(1_733_000_002.5) for _ in range(12)]  # counter 9 -> 10 -> ...
    assert many == sorted(many)


def test_smtplib_sees_the_extensions(server: SmtpServerHandle) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo("client.test")
        for keyword in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "smtputf8"):
            assert client.has_extn(keyword), keyword
        assert client.has_extn("starttls") and client.has_extn("chunking")
        assert not client.has_extn("auth")  # not before TLS
        code, _ = client.docmd("HELP")
        assert code == 214


def test_smtplib_refusals(server: SmtpServerHandle) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("a@client.test", ["nobody@example.test"], b"x\r\n")
        client.rset()
        assert client.verify("alice")[0] == 252
        assert client.docmd("FOO")[0] == 500


def test_starttls_then_auth_and_send(
    server: SmtpServerHandle, client_context: ssl.SSLContext, root: Path
) -> None:
    with smtplib.SMTP(server.host, server.port, local_hostname="client.test", timeout=10) as c:
        c.starttls(context=client_context)
        c.ehlo("client.test")
        assert not c.has_extn("starttls") and "PLAIN" in c.esmtp_features["auth"]
        c.login("alice", PASSWORD)
        c.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
    (stored,) = stored_messages(root, "bob")
    assert b"with ESMTPSA id" in stored and strip_trace_headers(stored) == MESSAGE


def test_auth_login_over_tls_and_bad_password(
    server: SmtpServerHandle, client_context: ssl.SSLContext
) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.starttls(context=client_context)
        client.ehlo("client.test")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("alice", "wrong")
        client.user, client.password = "alice", PASSWORD
        assert client.auth("LOGIN", client.auth_login)[0] == 235


def test_smtps_implicit_tls(
    server: SmtpServerHandle, client_context: ssl.SSLContext, root: Path
) -> None:
    assert server.smtps_port
    with smtplib.SMTP_SSL(
        server.host, server.smtps_port, context=client_context, timeout=10
    ) as client:
        client.ehlo("client.test")
        assert not client.has_extn("starttls")
        client.login("bob", "bobpw")
        client.sendmail("bob@example.test", ["alice@example.test"], MESSAGE)
    assert b"with ESMTPSA id" in stored_messages(root, "alice")[0]


def test_smtputf8_with_smtplib(server: SmtpServerHandle, root: Path) -> None:
    message = EmailMessage()
    message["From"] = "jörg@client.test"
    message["To"] = "alice@example.test"
    message["Subject"] = "grüße"
    message.set_content("ünïcödé body\n")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.send_message(message)  # smtplib adds SMTPUTF8 and BODY=8BITMIME itself
    (stored,) = stored_messages(root, "alice")
    assert b"with UTF8SMTP id" in stored
    assert "grüße".encode() in stored and "ünïcödé".encode() in stored


class RawClient:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> bytes:
        lines = b""
        while True:
            line = self.file.readline(1024)
            assert line, "connection closed"
            lines += line
            if line[3:4] != b"-":
                return lines

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_bdat_over_a_raw_socket(server: SmtpServerHandle, root: Path) -> None:
    client = RawClient(server.host, server.port)
    client.send(b"EHLO client.test\r\n")
    client.reply()
    client.send(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<alice@example.test>\r\n")
    assert client.reply().startswith(b"250 ") and client.reply().startswith(b"250 ")
    first, second = MESSAGE[:20], MESSAGE[20:]
    client.send(b"BDAT %d\r\n" % len(first) + first)
    assert client.reply().startswith(b"250 ")
    client.send(b"BDAT %d LAST\r\n" % len(second) + second)
    assert client.reply().startswith(b"250 ")
    client.send(b"QUIT\r\n")
    assert client.reply().startswith(b"221 ")
    client.close()
    assert strip_trace_headers(stored_messages(root, "alice")[0]) == MESSAGE


def test_starttls_injection_is_never_answered_inside_tls(
    server: SmtpServerHandle, client_context: ssl.SSLContext
) -> None:
    """CVE-2011-0411 family: plaintext after STARTTLS must not be run."""
    sock = socket.create_connection((server.host, server.port), timeout=10)
    file = sock.makefile("rb")
    file.readline()
    sock.sendall(b"EHLO client.test\r\n")
    while file.readline()[3:4] == b"-":
        pass
    sock.sendall(b"STARTTLS\r\nNOOP\r\nRSET\r\n")
    assert file.readline().startswith(b"220 ")
    tls = client_context.wrap_socket(sock, server_hostname="localhost")
    tls.sendall(b"NOOP\r\n")
    tls_file = tls.makefile("rb")
    assert tls_file.readline().startswith(b"250 2.0.0 OK")
    tls.sendall(b"QUIT\r\n")
    assert tls_file.readline().startswith(b"221 ")  # exactly one reply per command
    tls.close()


def test_421_before_the_timeout_close(root: Path) -> None:
    with start_smtp_server(
        store=f"maildir:{root}/{{user}}", users={}, command_timeout_seconds=0.5
    ) as handle:
        client = RawClient(handle.host, handle.port)
        started = time.monotonic()
        assert client.reply().startswith(b"421 4.4.2 example.test ")
        assert time.monotonic() - started >= 0.4
        assert client.file.read() == b""  # then closed
        client.close()


def test_421_to_open_sessions_at_shutdown(root: Path) -> None:
    handle = start_smtp_server(store=f"maildir:{root}/{{user}}", users={})
    client = RawClient(handle.host, handle.port)
    handle.close()
    assert client.reply().startswith(b"421 4.3.2 ")
    client.close()


# --- swaks (Debian's swaks package) --------------------------------------------


def swaks(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["swaks", "--silent", "1", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


needs_swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="apt-get install swaks")


@needs_swaks
def test_swaks_pipelined_submission(server: SmtpServerHandle, root: Path) -> None:
    result = swaks(
        "--server",
        f"{server.host}:{server.port}",
        "--from",
        "sender@client.test",
        "--to",
        "alice@example.test,bob@example.test",
        "--helo",
        "client.test",
        "--pipeline",
        "--data",
        "Subject: from swaks\n\nbody line\n.dot line",  # swaks adds the last CRLF
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (stored,) = stored_messages(root, "alice")
    assert strip_trace_headers(stored) == b"Subject: from swaks\r\n\r\nbody line\r\n.dot line\r\n"
    assert len(stored_messages(root, "bob")) == 1


@needs_swaks
def test_swaks_starttls_and_auth(server: SmtpServerHandle, root: Path) -> None:
    result = swaks(
        "--server",
        f"{server.host}:{server.port}",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "-tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        PASSWORD,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"with ESMTPSA id" in stored_messages(root, "bob")[0]


@needs_swaks
def test_swaks_sees_a_refused_recipient(server: SmtpServerHandle) -> None:
    result = swaks(
        "--server", f"{server.host}:{server.port}", "--from", "a@b.test", "--to", "x@example.test"
    )
    assert result.returncode == 24, result.stdout  # swaks: RCPT phase error


# --- The command line ----------------------------------------------------------


class SmtpProcess:
    def __init__(self, *arguments: str) -> None:
        environment = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reference_server.smtp", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
        )
        assert self.process.stdout is not None
        self.ready_line = self.process.stdout.readline().decode()
        assert self.ready_line.startswith(READY_PREFIX), (
            self.ready_line,
            self.process.stderr.read().decode() if self.process.stderr else "",
        )
        host, _, port = self.ready_line[len(READY_PREFIX) :].strip().rpartition(":")
        self.host, self.port = host, int(port)

    def stop(self, stop_signal: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(stop_signal)
        self.process.communicate(timeout=10)
        return self.process.returncode


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users"
    path.write_text(f"alice:{PASSWORD}\n")
    return path


def test_cli_prints_the_ready_line_and_delivers(root: Path, users_file: Path) -> None:
    process = SmtpProcess(
        "--listen",
        "127.0.0.1:0",
        "--store",
        f"maildir:{root}/{{user}}",
        "--users",
        str(users_file),
        "--domain",
        "mx.example.test",
    )
    try:
        with smtplib.SMTP(process.host, process.port, timeout=10) as client:
            client.sendmail("a@client.test", ["alice@mx.example.test"], MESSAGE)
    finally:
        assert process.stop() == 0
    assert strip_trace_headers(stored_messages(root, "alice")[0]) == MESSAGE


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--listen", "nowhere"], "bad --listen"),
        (["--store", "bogus:/x"], "bad store spec"),
        (["--tls-key", "/nonexistent"], "--tls-key needs --tls-cert"),
        (["--smtps-listen", "127.0.0.1:0"], "--smtps-listen needs --tls-cert"),
        (["--max-message-size", "100"], "--max-message-size must be at least 65536"),
        (["--users", "/nonexistent/users"], "does not exist"),
    ],
)
def test_cli_configuration_errors_are_one_line(
    root: Path, users_file: Path, arguments: list[str], message: str
) -> None:
    defaults = {
        "--listen": "127.0.0.1:0",
        "--store": f"maildir:{root}/{{user}}",
        "--users": str(users_file),
    }
    for flag, value in zip(arguments[::2], arguments[1::2], strict=True):
        defaults[flag] = value
    argv = [part for pair in defaults.items() for part in pair]
    result = subprocess.run(
        [sys.executable, "-m", "reference_server.smtp", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)},
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("reference_server.smtp: error: ") and message in result.stderr


def test_cli_starttls_and_smtps_with_trustme_certificates(
    root: Path, users_file: Path, authority: trustme.CA, client_context: ssl.SSLContext
) -> None:
    certificate = authority.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file = root.parent / "cert.pem", root.parent / "key.pem"
    certificate.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    process = SmtpProcess(
        "--listen",
        "127.0.0.1:0",
        "--smtps-listen",
        "127.0.0.1:0",
        "--store",
        f"maildir:{root}/{{user}}",
        "--users",
        str(users_file),
        "--tls-cert",
        str(cert_file),
        "--tls-key",
        str(key_file),
    )
    try:
        assert process.process.stdout is not None
        smtps_line = process.process.stdout.readline().decode()
        assert smtps_line.startswith(READY_PREFIX) and smtps_line.rstrip().endswith("(smtps)")
        smtps_port = int(smtps_line[len(READY_PREFIX) :].split()[0].rpartition(":")[2])
        with smtplib.SMTP(process.host, process.port, timeout=10) as client:
            client.starttls(context=client_context)
            client.login("alice", PASSWORD)
        with smtplib.SMTP_SSL(
            process.host, smtps_port, context=client_context, timeout=10
        ) as client:
            client.login("alice", PASSWORD)
    finally:
        assert process.stop() == 0


def test_kill_9_mid_data_leaves_no_partial_message(root: Path, users_file: Path) -> None:
    process = SmtpProcess(
        "--listen",
        "127.0.0.1:0",
        "--store",
        f"maildir:{root}/{{user}}",
        "--users",
        str(users_file),
    )
    client = RawClient(process.host, process.port)
    client.send(
        b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
    )
    client.reply()
    replies = [client.reply() for _ in range(3)]
    assert replies[-1].startswith(b"354 ")
    client.send(b"Subject: half\r\n\r\n" + b"partial line\r\n" * 5000)
    time.sleep(0.3)  # the server has read (part of) the text
    process.stop(signal.SIGKILL)
    client.close()
    new = root / "alice" / "new"
    assert not new.exists() or list(new.iterdir()) == []
    # A restarted server on the same store delivers normally.
    again = SmtpProcess(
        "--listen", "127.0.0.1:0", "--store", f"maildir:{root}/{{user}}", "--users", str(users_file)
    )
    try:
        with smtplib.SMTP(again.host, again.port, timeout=10) as smtp_client:
            smtp_client.sendmail("a@client.test", ["alice@example.test"], MESSAGE)
    finally:
        again.stop()
    assert [strip_trace_headers(m) for m in stored_messages(root, "alice")] == [MESSAGE]
