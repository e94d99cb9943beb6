"""A scripted POP3 server that speaks TLS (stdlib ssl, trustme certificates):
implicit TLS on connect, or STLS on request, with switches for the bugs the
STLS scenarios look for (answering plaintext pipelined after STLS inside
TLS, plaintext after +OK)."""

from __future__ import annotations

import datetime
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from engine_fakes import ScriptedServer, correct_replies, small_fixture


@dataclass
class Certificates:
    ca: trustme.CA
    ca_file: Path
    server: ssl.SSLContext


def certificates(
    tmp_path: Path, *names: str, not_after: datetime.datetime | None = None
) -> Certificates:
    ca = trustme.CA()
    leaf = ca.issue_cert(*(names or ("127.0.0.1",)), not_after=not_after)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(server)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Certificates(ca, ca_file, server)


@dataclass
class TlsScriptedServer(ScriptedServer):
    """`implicit`: handshake on accept. Otherwise STLS answers +OK and the
    handshake follows. `keep_pipelined`: the injection bug (lines that came
    with STLS are executed inside TLS). `after_ok`: plaintext sent after
    STLS's +OK. `tls_lines` records each line with whether TLS was on."""

    context: ssl.SSLContext | None = None
    implicit: bool = False
    keep_pipelined: bool = False
    after_ok: bytes = b""
    tls_lines: list[tuple[bool, bytes]] = field(default_factory=list)

    def _serve(self, conn: socket.socket) -> None:  # type: ignore[override]
        assert self.context is not None
        sock: socket.socket = conn
        try:
            if self.implicit:
                sock = self.context.wrap_socket(conn, server_side=True)
            if not self._perform(sock, self.greeting):
                return
            buffer = b""
            while not self._stopping.is_set():
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    line = line.rstrip(b"\r")
                    in_tls = isinstance(sock, ssl.SSLSocket)
                    self.tls_lines.append((in_tls, line))
                    text = line.decode("latin-1")
                    if text.upper() == "STLS" and not in_tls:
                        sock.sendall(b"+OK begin TLS\r\n" + self.after_ok)
                        sock = self.context.wrap_socket(sock, server_side=True)
                        if not self.keep_pipelined:
                            buffer = b""
                        continue
                    reply = self.replies.get(text)
                    if reply is None:
                        verb = text.split(" ")[0].upper() if text else ""
                        reply = self.replies.get(verb, self.default)
                    if not self._perform(sock, reply):
                        return
                    if text.upper() == "QUIT":
                        sock.close()
                        return
        except (OSError, ssl.SSLError):
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass


@contextmanager
def tls_scripted(
    context: ssl.SSLContext, replies: dict[str, object] | None = None, **kwargs: object
) -> Iterator[TlsScriptedServer]:
    base = correct_replies(small_fixture())
    base["CAPA"] = b"+OK\r\nUSER\r\nTOP\r\nUIDL\r\nSTLS\r\n.\r\n"
    base.update(replies or {})  # type: ignore[arg-type]
    server = TlsScriptedServer(replies=base, context=context, **kwargs)  # type: ignore[arg-type]
    with server:
        yield server
