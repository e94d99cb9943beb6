"""STLS, pop3s and SASL over real sockets: stdlib ssl, poplib, scramp, trustme."""

from __future__ import annotations

import asyncio
import base64
import poplib
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import scramp  # type: ignore[import-untyped]
import trustme
from pop3_testlib import (
    PASSWORD,
    REPOSITORY_ROOT,
    SAMPLE_MESSAGES,
    ServerProcess,
    write_maildir,
)

from reference_server import Pop3Server, Pop3Session, ServerSettings, UserDirectory, start_server
from reference_server.cli import IMPLICIT_TLS_READY_LINE_PREFIX
from reference_server.pop3.server import ServerHandle
from reference_server.store.maildrop import store_from_spec
from reference_server.tls import server_context

#: How long a test waits to be sure the server sends nothing unasked.
SILENCE_SECONDS = 0.5


@dataclass(frozen=True)
class TlsFiles:
    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    certificate = ca.issue_cert("localhost", "127.0.0.1")
    files = TlsFiles(ca, directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca_file))
    certificate.private_key_and_cert_chain_pem.write_to_path(str(files.cert_file))
    certificate.private_key_pem.write_to_path(str(files.key_file))
    return files


@pytest.fixture
def tls_server(tmp_path: Path, tls_files: TlsFiles) -> Iterator[Callable[..., ServerHandle]]:
    write_maildir(tmp_path / "store", "alice", SAMPLE_MESSAGES)
    handles: list[ServerHandle] = []

    def start(**options: object) -> ServerHandle:
        handle = start_server(
            store=f"maildir:{tmp_path}/store/{{user}}",
            users=UserDirectory({"alice": PASSWORD}),
            tls_context=server_context(tls_files.cert_file, tls_files.key_file),
            implicit_tls_port=0,
            **options,  # type: ignore[arg-type]
        )
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.close()


class RawTlsClient:
    """A socket that speaks plaintext, then STLS, then TLS, byte for byte."""

    def __init__(self, handle: ServerHandle, context: ssl.SSLContext) -> None:
        self.context = context
        self.sock: socket.socket = socket.create_connection(handle.address, timeout=10)
        self.buffer = b""
        self.greeting = self.line()

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line + b"\r\n"

    def upgrade(self) -> None:
        assert not self.buffer, self.buffer  # nothing may follow the +OK in plaintext
        self.sock = self.context.wrap_socket(self.sock, server_hostname="localhost")

    def silent(self) -> bool:
        """True when nothing arrives unasked within SILENCE_SECONDS."""
        if self.buffer:
            return False
        self.sock.settimeout(SILENCE_SECONDS)
        try:
            self.buffer += self.sock.recv(4096)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(10)
        return False

    def command(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def multiline(self) -> list[bytes]:
        lines = []
        while (line := self.line()) != b".\r\n":
            lines.append(line)
        return lines

    def close(self) -> None:
        self.sock.close()


class KeepsPlaintextAcrossStlsSession(Pop3Session):
    """Faulty on purpose: what came after STLS is executed once TLS is up."""

    kept = b""

    def handle_line(self, line: bytes) -> bytes:
        held = bytes(self._pending)
        reply = super().handle_line(line)
        if self.tls_pending:
            self.kept = held
        return reply

    def tls_started(self, *, version: str = "", cipher: str = "") -> None:
        super().tls_started(version=version, cipher=cipher)
        self.feed(self.kept)


def test_injection_check_catches_a_server_that_answers_inside_tls(
    tls_server: Callable[..., ServerHandle], tls_files: TlsFiles
) -> None:
    handle = tls_server(session_class=KeepsPlaintextAcrossStlsSession)
    client = RawTlsClient(handle, tls_files.client_context())
    client.sock.sendall(b"STLS\r\nCAPA\r\n")
    assert client.line().startswith(b"+OK")
    client.upgrade()
    assert not client.silent()  # the injected CAPA's listing arrives unasked
    assert client.line().startswith(b"+OK capability list follows")
    client.close()


def test_poplib_stls_then_login_and_retrieve(
    tls_server: Callable[..., ServerHandle], tls_files: TlsFiles
) -> None:
    handle = tls_server()
    client = poplib.POP3(handle.host, handle.port, timeout=10)
    assert "STLS" in client.capa()
    client.stls(context=tls_files.client_context())
    assert client.sock.version() in {"TLSv1.2", "TLSv1.3"}  # type: ignore[attr-defined]
    assert "STLS" not in client.capa()
    client.user("alice")
    client.pass_(PASSWORD)
    assert b"\r\n".join(client.retr(1)[1]) + b"\r\n" == SAMPLE_MESSAGES[0]
    client.quit()


def test_poplib_implicit_tls_listener(
    tls_server: Callable[..., ServerHandle], tls_files: TlsFiles
) -> None:
    handle = tls_server()
    assert handle.tls_port is not None and handle.tls_port != handle.port
    client = poplib.POP3_SSL(
        handle.host, handle.tls_port, context=tls_files.client_context(), timeout=10
    )
    assert client.getwelcome().startswith(b"+OK")
    assert "STLS" not in client.capa()
    client.user("alice")
    assert client.pass_(PASSWORD).startswith(b"+OK")
    assert client.stat()[0] == len(SAMPLE_MESSAGES)
    client.quit()


def test_injected_commands_after_stls_are_never_answered_inside_tls(
    tls_server: Callable[..., ServerHandle], tls_files: TlsFiles
) -> None:
    handle = tls_server()
    client = RawTlsClient(handle, tls_files.client_context())
    client.sock.sendall(b"STLS\r\nCAPA\r\n")  # one write: the injection
    assert client.line() == b"+OK begin TLS negotiation\r\n"
    client.upgrade()
    assert client.silent()  # nothing arrives inside TLS before the client speaks
    assert client.command("CAPA").startswith(b"+OK")
    assert b"STLS\r\n" not in b"".join(client.multiline())
    assert client.command("NOOP").startswith(b"-ERR")  # its own answer, AUTHORIZATION
    client.close()


def test_user_and_pass_injected_after_stls_do_not_log_in(
    tls_server: Callable[..., ServerHandle], tls_files: TlsFiles
) -> None:
    handle = tls_server()
    client = RawTlsClient(handle, tls_files.client_context())
    client.sock.sendall(f"STLS\r\nUSER alice\r\nPASS {PASSWORD}\r\n".encode())
    assert client.line().startswith(b"+OK")
    client.upgrade()
    assert client.silent()
    assert client.command("STAT").startswith(b"-ERR")
    client.close()


def test_commands_split_across_two_writes_after_stls_are_not_answered(
    tls_server: Callable[..., ServerHandle], tls_files: TlsFiles
) -> None:
    handle = tls_server()
    client = RawTlsClient(handle, tls_files.client_context())
    client.sock.sendall(b"STLS\r\n")
    client.sock.sendall(b"CAPA\r\n")  # back to back, before reading the +OK
    assert client.line().startswith(b"+OK")
    try:
        client.upgrade()
    except (ssl.SSLError, ConnectionError):
        return  # the plaintext took the ClientHello's place: session ended
    assert client.silent()
    client.close()


class ScriptedTransport(asyncio.ReadTransport):
    def __init__(self) -> None:
        super().__init__()
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def is_reading(self) -> bool:
        return self.reading


class ScriptedWriter:
    """Stands in for the StreamWriter: records replies; while the reply to
    NOOP drains, more plaintext arrives in the stream buffer (a peer that
    wrote it right behind STLS); start_tls only records the upgrade."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.transport = ScriptedTransport()
        self.written: list[bytes] = []
        self.upgraded = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    async def drain(self) -> None:
        if self.written[-1].startswith(b"-ERR NOOP"):
            self.reader.feed_data(b"CAPA\r\n")  # after the read that held STLS
        await asyncio.sleep(0)

    async def start_tls(self, context: ssl.SSLContext, **options: object) -> None:
        self.upgraded = True
        self.reader.feed_eof()  # the peer then goes away

    def get_extra_info(self, name: str) -> None:
        return None


def test_plaintext_in_the_stream_buffer_when_stls_is_answered_is_dropped(
    store_spec: str, users: UserDirectory, tls_files: TlsFiles
) -> None:
    """The transport half of the injection defence, made deterministic: the
    CAPA reaches asyncio's buffer after the session already read STLS."""
    server = Pop3Server(
        store_from_spec(store_spec),
        users,
        settings=ServerSettings(
            tls_context=server_context(tls_files.cert_file, tls_files.key_file)
        ),
    )
    session = Pop3Session(server.store, users, server.settings.session_config)

    async def converse() -> ScriptedWriter:
        reader = asyncio.StreamReader()
        writer = ScriptedWriter(reader)
        reader.feed_data(b"NOOP\r\nSTLS\r\n")
        await asyncio.wait_for(
            server._converse(session, reader, writer),  # type: ignore[arg-type]
            timeout=10,
        )
        return writer

    writer = asyncio.run(converse())
    assert writer.upgraded and session.tls_active
    assert not writer.transport.is_reading()  # paused before the +OK went out
    assert writer.written[1:] == [
        b"-ERR NOOP is not allowed in this state\r\n",
        b"+OK begin TLS negotiation\r\n",
    ]  # and nothing for the CAPA, inside TLS or out


def test_plaintext_instead_of_a_client_hello_ends_the_session(
    tls_server: Callable[..., ServerHandle], tls_files: TlsFiles
) -> None:
    handle = tls_server()
    client = RawTlsClient(handle, tls_files.client_context())
    assert client.command("STLS").startswith(b"+OK")
    client.sock.sendall(b"CAPA\r\n")
    client.sock.settimeout(10)
    received = b""
    while chunk := client.sock.recv(4096):  # a TLS alert at most, then EOF
        received += chunk
    assert b"+OK" not in received and b"-ERR" not in received
    client.close()


def test_stls_twice_and_after_login_are_refused_on_the_wire(
    tls_server: Callable[..., ServerHandle], tls_files: TlsFiles
) -> None:
    handle = tls_server()
    client = RawTlsClient(handle, tls_files.client_context())
    assert client.command("STLS").startswith(b"+OK")
    client.upgrade()
    assert client.command("STLS").startswith(b"-ERR")
    assert client.command("USER alice").startswith(b"+OK")
    assert client.command(f"PASS {PASSWORD}").startswith(b"+OK")
    assert client.command("STLS").startswith(b"-ERR")
    client.close()


def test_tls_below_1_2_is_refused(
    tls_server: Callable[..., ServerHandle], tls_files: TlsFiles
) -> None:
    handle = tls_server()
    old = tls_files.client_context()
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # that is the point
            old.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    assert handle.tls_port is not None
    with socket.create_connection((handle.host, handle.tls_port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            old.wrap_socket(raw, server_hostname="localhost")


def test_require_tls_on_the_wire(
    tls_server: Callable[..., ServerHandle], tls_files: TlsFiles
) -> None:
    handle = tls_server(require_tls=True)
    client = poplib.POP3(handle.host, handle.port, timeout=10)
    capabilities = client.capa()
    assert "STLS" in capabilities and "USER" not in capabilities and "SASL" not in capabilities
    with pytest.raises(poplib.error_proto):
        client.user("alice")
    client.stls(context=tls_files.client_context())
    assert "USER" in client.capa()
    client.user("alice")
    assert client.pass_(PASSWORD).startswith(b"+OK")
    client.quit()


def test_scram_sha_256_over_implicit_tls(
    tls_server: Callable[..., ServerHandle], tls_files: TlsFiles
) -> None:
    handle = tls_server()
    assert handle.tls_port is not None
    client = poplib.POP3_SSL(
        handle.host, handle.tls_port, context=tls_files.client_context(), timeout=10
    )
    scram = scramp.ScramClient(["SCRAM-SHA-256"], "alice", PASSWORD)

    def exchange(line: str) -> bytes:
        client._putcmd(line)  # type: ignore[attr-defined]
        reply: bytes = client._getline()[0]  # type: ignore[attr-defined]
        return reply

    first = base64.b64encode(scram.get_client_first().encode()).decode()
    server_first = exchange(f"AUTH SCRAM-SHA-256 {first}")
    assert server_first.startswith(b"+ ")
    scram.set_server_first(base64.b64decode(server_first[2:]).decode())
    server_final = exchange(base64.b64encode(scram.get_client_final().encode()).decode())
    scram.set_server_final(base64.b64decode(server_final[2:]).decode())
    assert exchange("").startswith(b"+OK alice")
    assert client.stat()[0] == len(SAMPLE_MESSAGES)
    client.quit()


# --- The command line ---------------------------------------------------------


def test_cli_tls_flags_print_both_ready_lines_and_serve_both_listeners(
    server_process: Callable[..., ServerProcess],
    store_spec: str,
    users_file: Path,
    tls_files: TlsFiles,
) -> None:
    process = server_process(
        "--listen",
        "127.0.0.1:0",
        "--store",
        store_spec,
        "--users",
        str(users_file),
        "--tls-cert",
        str(tls_files.cert_file),
        "--tls-key",
        str(tls_files.key_file),
        "--implicit-tls-listen",
        "127.0.0.1:0",
        "--require-tls",
        "--sasl",
        "plain,scram-sha-256",
        "--login-delay",
        "30",
        "--expire",
        "31",
    )
    assert process.process.stdout is not None
    second = process.process.stdout.readline().decode()
    assert second.startswith(IMPLICIT_TLS_READY_LINE_PREFIX + " 127.0.0.1:"), second
    tls_port = int(second.rsplit(":", 1)[1])
    context = tls_files.client_context()
    plain = poplib.POP3(process.host, process.port, timeout=10)
    assert "USER" not in plain.capa()
    plain.stls(context=context)
    capabilities = plain.capa()
    assert capabilities["SASL"] == ["PLAIN", "SCRAM-SHA-256"]
    assert capabilities["LOGIN-DELAY"] == ["30"] and capabilities["EXPIRE"] == ["31"]
    plain.quit()
    secure = poplib.POP3_SSL(process.host, tls_port, context=context, timeout=10)
    secure.user("alice")
    assert secure.pass_(PASSWORD).startswith(b"+OK")
    secure.quit()
    again = poplib.POP3_SSL(process.host, tls_port, context=context, timeout=10)
    again.user("alice")
    with pytest.raises(poplib.error_proto, match=r"\[LOGIN-DELAY\]"):
        again.pass_(PASSWORD)
    again.quit()
    status, _, _ = process.stop()
    assert status == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--require-tls"], "--require-tls needs --tls-cert and --tls-key"),
        (["--implicit-tls-listen", "127.0.0.1:0"], "--implicit-tls-listen needs --tls-cert"),
        (["--tls-cert", "/nonexistent.pem"], "--tls-cert '/nonexistent.pem' does not exist"),
        (["--tls-key", "/k.pem"], "--tls-key needs --tls-cert"),
        (["--sasl", "PLAIN,BOGUS"], "unknown mechanism 'BOGUS'"),
        (["--expire", "soon"], "bad --expire 'soon'"),
        (["--login-delay", "-1"], "--login-delay must be 0 or a positive"),
        (["--implicit-tls-listen", "nowhere"], "bad --implicit-tls-listen 'nowhere'"),
    ],
)
def test_cli_tls_configuration_errors_are_one_line(
    store_spec: str, users_file: Path, arguments: list[str], message: str
) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "reference_server", "--listen", "127.0.0.1:0"),
            *("--store", store_spec, "--users", str(users_file), *arguments),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPOSITORY_ROOT,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reference_server: error: "), result.stderr
    assert message in lines[0]


def test_cli_bad_certificate_is_one_line(
    store_spec: str, users_file: Path, tls_files: TlsFiles, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "reference_server", "--store", store_spec),
            *("--users", str(users_file), "--tls-cert", str(junk), "--tls-key", str(junk)),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("reference_server: error: cannot use --tls-cert")


def test_mailspec_serve_help_names_mailspec_serve() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conformance", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: mailspec serve "), result.stdout


@pytest.mark.parametrize("implicit", [True, False], ids=["pop3s", "stls"])
def test_quit_inside_tls_ends_with_close_notify(
    tls_server: Callable[..., ServerHandle], tls_files: TlsFiles, implicit: bool
) -> None:
    handle = tls_server()
    context = tls_files.client_context()
    if implicit:
        assert handle.tls_port is not None
        raw = socket.create_connection((handle.host, handle.tls_port), timeout=10)
        client = context.wrap_socket(raw, server_hostname="localhost")
        assert client.recv(4096).startswith(b"+OK")
    else:
        raw = socket.create_connection(handle.address, timeout=10)
        assert raw.recv(4096).startswith(b"+OK")
        raw.sendall(b"STLS\r\n")
        assert raw.recv(4096).startswith(b"+OK")
        client = context.wrap_socket(raw, server_hostname="localhost")
    client.sendall(b"QUIT\r\n")
    assert client.recv(4096) == b"+OK bye\r\n"
    # RFC 8314 section 3.4: a TLS close_notify, so this is a clean EOF, not
    # ssl.SSLEOFError ("EOF occurred in violation of protocol").
    assert client.recv(4096) == b""
    client.close()


def test_negotiated_tls_is_logged_with_the_session(
    tls_server: Callable[..., ServerHandle],
    tls_files: TlsFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handle = tls_server()
    caplog.set_level("INFO", logger="reference_server")
    client = poplib.POP3(handle.host, handle.port, timeout=10)
    client.stls(context=tls_files.client_context())
    version = client.sock.version()  # type: ignore[attr-defined]
    client.quit()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "event=tls " not in caplog.text:
        time.sleep(0.05)
    assert f"event=tls version={version} cipher=" in caplog.text
