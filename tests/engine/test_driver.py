"""Raw sessions: IPv4 and IPv6 through getaddrinfo, connect failures that
name the cause, and transcripts of the exact bytes both ways."""

from __future__ import annotations

import socket
import threading

import pytest

from conformance.core.driver import ConnectError, Outcome, deadline_after, open_connection
from conformance.core.results import Direction
from conformance.core.transcript import Transcript
from conformance.pop3.session import Pop3Session as Session


def one_shot_server(family: int, host: str, payload: bytes) -> tuple[int, threading.Thread]:
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.sendall(payload)
        conn.recv(100)
        conn.close()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize(
    ("family", "host"),
    [
        (socket.AF_INET, "127.0.0.1"),
        pytest.param(
            socket.AF_INET6, "::1",
            marks=pytest.mark.skipif(not ipv6_loopback_works(), reason="no IPv6 loopback"),
        ),
    ],
)  # fmt: skip
def test_session_reads_a_greeting_and_records_exact_bytes(family: int, host: str) -> None:
    port, thread = one_shot_server(family, host, b"+OK hi\r\n")
    transcript = Transcript()
    session = Session.connect("a", host, port, transcript, timeout=2)
    reply = session.read_reply(False, deadline_after(2))
    session.send(b"QUIT\r\n")
    session.close()
    thread.join(2)
    assert reply.outcome is Outcome.COMPLETE and reply.status is not None
    assert reply.status.raw == b"+OK hi\r\n"
    wire = [(e.direction, e.data) for e in transcript.entries if e.direction is not Direction.EVENT]
    assert wire == [(Direction.SERVER, b"+OK hi\r\n"), (Direction.CLIENT, b"QUIT\r\n")]
    times = [e.at for e in transcript.entries]
    assert times == sorted(times)


def test_refused_connection_names_the_address() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with pytest.raises(ConnectError, match=rf"cannot connect to 127\.0\.0\.1:{port}: .*refused"):
        open_connection("127.0.0.1", port, 2)


def test_unresolvable_host() -> None:
    with pytest.raises(ConnectError, match=r"cannot resolve 'no-such-host\.invalid'"):
        open_connection("no-such-host.invalid", 110, 2)
