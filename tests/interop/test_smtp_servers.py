"""Real SMTP servers (Postfix, Exim, OpenSMTPD from unpacked Debian .debs,
aiosmtpd): each starts on 127.0.0.1, takes a message from smtplib, stores
it in the recipient's Maildir byte for byte behind its trace fields,
refuses unknown users and relaying, advertises the EHLO keywords measured
here (docs/interop-smtp.md), and stops leaving no process and nothing
outside its temporary directory. A server that cannot run here is a skip
naming the reason."""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import time
from pathlib import Path

import pytest

from interop.smtp_servers import (
    SMTP_SERVERS,
    STAT_SESSION,
    DeliveryMismatch,
    ServerUnavailable,
    SmtpServer,
    _read_reply,
    cache_root,
    live_processes_where,
    split_delivered,
)

pytestmark = pytest.mark.interop

#: a deliverable message: the header fields the MTAs would otherwise add
#: (Date, Message-ID) are present, lines start with dots (smtplib stuffs
#: them on the wire, RFC 5321 section 4.5.2; the server must unstuff), one
#: line is a lone dot, one ends in spaces
MESSAGE = (
    b"From: Sender <sender@example.org>\r\n"
    b"To: Alice <alice@example.test>\r\n"
    b"Subject: interop delivery check\r\n"
    b"Date: Wed, 02 Dec 2026 00:00:00 +0000\r\n"
    b"Message-ID: <interop-1@example.org>\r\n"
    b"\r\n"
    b".leading dot\r\n"
    b"..two dots\r\n"
    b".\r\n"
    b"trailing spaces   \r\n"
    b"last line\r\n"
)

#: EHLO keywords (and parameters) each server advertised here with the
#: configuration interop/smtp_servers.py writes (Debian 12 packages)
EXPECTED_EHLO = {
    "postfix": {
        "PIPELINING": "",
        "SIZE": "10240000",
        "VRFY": "",
        "ETRN": "",
        "STARTTLS": "",
        "ENHANCEDSTATUSCODES": "",
        "8BITMIME": "",
        "DSN": "",
        "SMTPUTF8": "",
        "CHUNKING": "",
    },
    "exim": {
        "SIZE": "52428800",
        "8BITMIME": "",
        "PIPELINING": "",
        "PIPECONNECT": "",
        "CHUNKING": "",
        "STARTTLS": "",
        "SMTPUTF8": "",
        "HELP": "",
    },
    "opensmtpd": {
        "8BITMIME": "",
        "ENHANCEDSTATUSCODES": "",
        "SIZE": "36700160",
        "DSN": "",
        "STARTTLS": "",
        "HELP": "",
    },
    "aiosmtpd": {"SIZE": "33554432", "8BITMIME": "", "HELP": ""},
}

#: what EHLO adds inside TLS (RFC 4954 AUTH), and whether a handshake
#: completes at all: Debian 12's OpenSMTPD 6.8.0p2 with OpenSSL 3 answers
#: STARTTLS 220 and then fails every handshake (OpenSMTPD issues #1171 and
#: #1239: its privilege-separated key finds no private key)
EXPECTED_INSIDE_TLS = {
    "postfix": {},
    "exim": {"AUTH": "PLAIN LOGIN"},
    "opensmtpd": None,
    "aiosmtpd": None,
}

#: trace fields each server prepends on delivery, in order
EXPECTED_TRACE = {
    "postfix": ["Return-Path", "X-Original-To", "Delivered-To", "Received"],
    "exim": ["Return-path", "Envelope-to", "Delivery-date", "Received"],
    "opensmtpd": ["Return-Path", "Delivered-To", "Received"],
    "aiosmtpd": ["Return-Path", "Received"],
}

#: how long delivery after the 250 to DATA may take (the MTAs queue first)
DELIVERY_WAIT = 10.0


@pytest.fixture(scope="module", params=sorted(SMTP_SERVERS))
def server(request):
    cls = SMTP_SERVERS[request.param]
    instance = cls()
    try:
        instance.start()
    except ServerUnavailable as exc:
        instance.stop()
        pytest.skip(f"{request.param} unavailable: {exc}")
    yield instance
    instance.stop()


def wait_for_messages(server: SmtpServer, user: str, count: int) -> list[bytes]:
    deadline = time.monotonic() + DELIVERY_WAIT
    while True:
        found = server.messages(user)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_server_advertises_the_measured_ehlo_keywords(server: SmtpServer):
    assert server.greeting.startswith(server.hostname)
    assert server.ehlo_lines[0].startswith(server.hostname)
    assert server.ehlo_keywords == EXPECTED_EHLO[server.name], server.ehlo_lines
    # the start-up probe agrees with smtplib's reading of a fresh EHLO
    with smtplib.SMTP(*server.address, timeout=10) as client:
        code, _ = client.ehlo("client.example.test")
        assert code == 250
        assert set(client.esmtp_features) == {k.lower() for k in server.ehlo_keywords}


def test_starttls_verifies_against_the_harness_ca_and_auth_works_inside(server: SmtpServer):
    if not server.tls:
        assert "STARTTLS" not in server.ehlo_keywords
        return
    context = ssl.create_default_context(cafile=str(server.ca_path))
    expected = EXPECTED_INSIDE_TLS[server.name]
    with smtplib.SMTP(*server.address, timeout=10) as client:
        assert client.ehlo("client.example.test")[0] == 250
        client._host = server.hostname  # verify the name the certificate is for
        if expected is None:
            with pytest.raises(ssl.SSLError, match="INTERNAL_ERROR"):
                client.starttls(context=context)
            return
        assert client.starttls(context=context)[0] == 220
        assert client.ehlo("client.example.test")[0] == 250
        inside = {k.upper(): v for k, v in client.esmtp_features.items()}
        outside = {k for k in server.ehlo_keywords if k != "STARTTLS"}
        assert set(inside) - outside == set(expected), inside
        for keyword, params in expected.items():
            assert inside[keyword].strip() == params
        if server.auth_password:
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("alice", "wrong-password")
            assert client.login("alice", server.auth_password)[0] == 235


def test_without_tls_no_certificate_and_no_starttls():
    cls = SMTP_SERVERS["exim"]
    instance = cls(tls=False)
    try:
        instance.start()
    except ServerUnavailable as exc:
        instance.stop()
        pytest.skip(f"exim unavailable: {exc}")
    try:
        assert "STARTTLS" not in instance.ehlo_keywords
        assert not instance.ca_path.exists()
        assert instance.auth_password is None
    finally:
        instance.stop()


def test_smtplib_message_is_stored_as_sent_behind_trace_fields(server: SmtpServer):
    before = len(server.messages("bob"))
    with smtplib.SMTP(*server.address, timeout=10) as client:
        assert client.ehlo("client.example.test")[0] == 250
        assert client.mail("sender@example.org")[0] == 250
        assert client.rcpt("bob@example.test")[0] == 250
        code, text = client.data(MESSAGE)
        assert code == 250, text
        assert client.quit()[0] == 221
    stored = wait_for_messages(server, "bob", before + 1)
    assert len(stored) == before + 1, f"nothing delivered; log:\n{server.log_tail()}"
    names = split_delivered(stored[-1], MESSAGE, server.stored_line_end)
    assert names == EXPECTED_TRACE[server.name]
    assert b"\n.leading dot" in stored[-1] and b"\n..two dots" in stored[-1]


def test_unknown_user_and_relaying_are_refused(server: SmtpServer):
    with smtplib.SMTP(*server.address, timeout=10) as client:
        client.ehlo("client.example.test")
        assert client.mail("sender@example.org")[0] == 250
        code, _ = client.rcpt("nosuchuser@example.test")
        assert 550 <= code <= 559
        code, _ = client.rcpt("someone@elsewhere.example")
        assert 550 <= code <= 559
        client.rset()


def test_postmaster_is_accepted_and_reaches_the_first_user(server: SmtpServer):
    before = len(server.messages("alice"))
    with smtplib.SMTP(*server.address, timeout=10) as client:
        refused = client.sendmail("sender@example.org", ["Postmaster@example.test"], MESSAGE)
        assert refused == {}
    assert len(wait_for_messages(server, "alice", before + 1)) == before + 1


def test_pypi_aiosmtpd_delivers_the_same_way():
    """AiosmtpdServer(debian=False): the running interpreter's aiosmtpd
    (the venv's PyPI release), for machines without python3-aiosmtpd."""
    server = SMTP_SERVERS["aiosmtpd"](debian=False)  # type: ignore[call-arg]
    try:
        server.start()
    except ServerUnavailable as exc:
        server.stop()
        pytest.skip(f"PyPI aiosmtpd unavailable: {exc}")
    try:
        assert "PyPI" in server.version()
        assert server.ehlo_keywords == EXPECTED_EHLO["aiosmtpd"]
        with smtplib.SMTP(*server.address, timeout=10) as client:
            assert client.sendmail("sender@example.org", ["bob@example.test"], MESSAGE) == {}
        stored = wait_for_messages(server, "bob", 1)
        assert split_delivered(stored[0], MESSAGE, server.stored_line_end) == [
            "Return-Path",
            "Received",
        ]
    finally:
        server.stop()


def test_stop_ends_every_process_and_leaves_nothing_outside_the_temp_dir():
    passwd = Path("/etc/passwd").read_bytes()
    group = Path("/etc/group").read_bytes()
    compiled_in = [
        "/var/spool/smtpd",
        "/var/lib/opensmtpd",
        "/run/smtpd.sock",
        "/var/spool/exim4",
        "/var/spool/postfix",
        "/etc/postfix/main.cf",
        "/usr/libexec/opensmtpd",
    ]
    already = {p for p in compiled_in if os.path.lexists(p)}
    ran = []
    for name, cls in sorted(SMTP_SERVERS.items()):
        instance = cls()
        try:
            instance.start()
        except ServerUnavailable:
            instance.stop()
            continue
        pid, workdir = instance.pid, instance.workdir
        assert pid is not None
        instance.stop()
        ran.append(name)
        assert not workdir.exists()
        assert not _session_members(pid), f"{name}: processes left in its session"
    if not ran:
        pytest.skip("no SMTP server could run here")
    assert Path("/etc/passwd").read_bytes() == passwd
    assert Path("/etc/group").read_bytes() == group
    assert {p for p in compiled_in if os.path.lexists(p)} == already


def _session_members(sid: int) -> list[int]:
    return live_processes_where(STAT_SESSION, sid)


# --- the parts that need no server -----------------------------------------


def test_split_delivered_accepts_trace_fields_and_names_them():
    stored = b"Return-Path: <a@b>\nReceived: from x\n\tby y; date\n" + MESSAGE.replace(
        b"\r\n", b"\n"
    )
    assert split_delivered(stored, MESSAGE, b"\n") == ["Return-Path", "Received"]
    assert split_delivered(MESSAGE, MESSAGE) == []


@pytest.mark.parametrize(
    "stored, reason",
    [
        # dot-stuffing not undone on the first body line
        (
            b"Received: x\r\n" + MESSAGE.replace(b"\r\n.leading", b"\r\n..leading"),
            "does not end",
        ),
        # a non-trace field prepended (aiosmtpd's Mailbox adds X-Peer)
        (b"X-Peer: 127.0.0.1\r\n" + MESSAGE, "not a trace field"),
        # the message cut short
        (b"Received: x\r\n" + MESSAGE[:-3], "does not end"),
        # prepended text that is not a header field
        (b"garbage\r\n" + MESSAGE, "not a header field"),
    ],
)
def test_split_delivered_rejects_a_changed_message(stored: bytes, reason: str):
    with pytest.raises(DeliveryMismatch, match=reason):
        split_delivered(stored, MESSAGE)


def test_split_delivered_rejects_mixed_line_ends():
    stored = b"Received: x\r\n" + MESSAGE.replace(b"\r\n", b"\n")
    with pytest.raises(DeliveryMismatch, match="mixes CRLF"):
        split_delivered(stored, MESSAGE, b"\n")


def _reply_from(data: bytes, step: int) -> tuple[int, list[str], bytes]:
    left, right = socket.socketpair()
    with left, right:
        right.settimeout(2)
        for i in range(0, len(data), step):
            left.sendall(data[i : i + step])
        left.shutdown(socket.SHUT_WR)
        buffer = bytearray()
        code, lines = _read_reply(right, buffer)
        return code, lines, bytes(buffer)


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_reply_reader_takes_a_multiline_reply_whole_or_byte_by_byte(step: int):
    data = b"250-mx.example.test\r\n250-SIZE 100\r\n250 HELP\r\nGARBAGE after"
    code, lines, rest = _reply_from(data, step)
    assert (code, lines) == (250, ["mx.example.test", "SIZE 100", "HELP"])
    assert rest == b"GARBAGE after"  # left for the next read, not swallowed


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"250-one\r\n", "closed mid-reply"),
        (b"hello\r\n", "not an SMTP reply line"),
        (b"250-" + b"x" * 70000, "longer than"),  # one endless line
        (b"250-x\r\n" * 12000, "longer than"),  # endless continuation lines
    ],
)
def test_reply_reader_refuses_a_cut_or_malformed_reply(data: bytes, reason: str):
    with pytest.raises(RuntimeError, match=reason):
        _reply_from(data, 1000)


def test_cache_under_an_unsearchable_directory_is_unavailable_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o700)
    monkeypatch.setenv("MAILSPEC_MTA_CACHE", str(locked / "mta"))
    with pytest.raises(ServerUnavailable, match="MAILSPEC_MTA_CACHE"):
        cache_root()
