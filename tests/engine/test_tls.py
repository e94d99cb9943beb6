"""TLS in the driver: implicit TLS, the run's STLS before every login, the
`starttls` step, certificate verification errors, and the TLS facts in the
target fingerprint. Against a stdlib-ssl scripted server with trustme
certificates."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from engine_fakes import config_for, run_text, scripted, small_fixture, steps
from tls_fakes import certificates, tls_scripted

from conformance.core.errors import ConfigError, TargetUnreachable
from conformance.core.results import Verdict
from conformance.pop3.capabilities import learn_fingerprint

LOGIN_STAT = steps(
    "open: a", "S: +OK", "login", "C: STAT", "S: +OK 2 {size:int}", "C: QUIT", "S: +OK"
)


def test_implicit_tls_runs_a_scenario_and_fingerprints_the_certificate(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    with tls_scripted(certs.server, implicit=True) as server:
        config = config_for(server, tls="implicit", tls_ca=str(certs.ca_file), capabilities="auto")
        result = run_text(tmp_path, server, LOGIN_STAT, tls="implicit", tls_ca=str(certs.ca_file))
        fingerprint = learn_fingerprint(
            "127.0.0.1", server.port, config, small_fixture().account("main"), embedded=False
        )
    assert result.verdict is Verdict.PASS, result.message
    assert all(in_tls for in_tls, _ in server.tls_lines)
    assert fingerprint.tls_version in ("TLSv1.2", "TLSv1.3")
    assert fingerprint.tls_cipher
    assert fingerprint.certificate_issuer and "organizationName" in fingerprint.certificate_issuer
    assert fingerprint.certificate_not_after and fingerprint.certificate_not_after.startswith(
        "3000-01-01"
    )
    assert fingerprint.certificate_verified is True
    assert fingerprint.plaintext_login_offered is None  # no plaintext session to ask


def test_stls_mode_logs_in_only_inside_tls(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    with tls_scripted(certs.server) as server:
        result = run_text(tmp_path, server, LOGIN_STAT, tls="stls", tls_ca=str(certs.ca_file))
    assert result.verdict is Verdict.PASS, result.message
    lines = server.tls_lines
    plaintext = {line for tls, line in lines if not tls}
    assert plaintext <= {b"CAPA", b"STLS"}  # the probe reads the plaintext CAPA once
    assert [line for _, line in lines].count(b"STLS") == server.connections
    assert (True, b"PASS alice-secret") in lines


def test_stls_mode_probe_records_the_plaintext_capa_and_login_offer(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    with tls_scripted(certs.server) as server:
        config = config_for(server, tls="stls", tls_ca=str(certs.ca_file), capabilities="auto")
        fingerprint = learn_fingerprint(
            "127.0.0.1", server.port, config, small_fixture().account("main"), embedded=False
        )
    assert fingerprint.capa_plaintext == ["USER", "TOP", "UIDL", "STLS"]
    assert fingerprint.plaintext_login_offered is True
    assert "STLS" in fingerprint.capabilities
    assert fingerprint.tls_version


def test_stls_refused_is_a_one_line_unreachable_error(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    with scripted({"STLS": b"-ERR not here\r\n"}) as plain:
        config = config_for(plain, tls="stls", tls_ca=str(certs.ca_file), capabilities="auto")
        with pytest.raises(TargetUnreachable, match=r"--tls stls: STLS answered .-ERR not here"):
            learn_fingerprint(
                "127.0.0.1", plain.port, config, small_fixture().account("main"), embedded=False
            )


@pytest.mark.parametrize(
    ("names", "expiry", "why"),
    [
        (("127.0.0.1",), None, None),  # unknown CA: the CA file is not given
        (("mail.example.test",), None, r"name mismatch"),
        (
            ("127.0.0.1",),
            datetime.datetime(2020, 1, 2, tzinfo=datetime.UTC),
            r"the server certificate has expired",
        ),
    ],
    ids=["unknown-ca", "name-mismatch", "expired"],
)
def test_certificate_problems_are_named(
    tmp_path: Path, names: tuple[str, ...], expiry: datetime.datetime | None, why: str | None
) -> None:
    certs = certificates(tmp_path, *names, not_after=expiry)
    with tls_scripted(certs.server, implicit=True) as server:
        ca = None if why is None else str(certs.ca_file)
        config = config_for(server, tls="implicit", tls_ca=ca, capabilities="auto")
        with pytest.raises(TargetUnreachable) as caught:
            learn_fingerprint(
                "127.0.0.1", server.port, config, small_fixture().account("main"), embedded=False
            )
    message = str(caught.value)
    assert "\n" not in message
    assert "certificate not accepted" in message
    assert (why and why in message) or (why is None and "unknown CA" in message), message


def test_no_verify_accepts_an_unknown_ca_and_says_so(tmp_path: Path) -> None:
    certs = certificates(tmp_path, "mail.example.test")
    with tls_scripted(certs.server, implicit=True) as server:
        config = config_for(server, tls="implicit", tls_verify=False, capabilities="auto")
        fingerprint = learn_fingerprint(
            "127.0.0.1", server.port, config, small_fixture().account("main"), embedded=False
        )
    assert fingerprint.certificate_verified is False
    assert fingerprint.tls_version


def test_implicit_tls_against_a_plaintext_server_names_the_cause(tmp_path: Path) -> None:
    with scripted() as plain:
        config = config_for(plain, tls="implicit", tls_verify=False, capabilities="auto")
        with pytest.raises(TargetUnreachable, match=r"implicit TLS with 127\.0\.0\.1:\d+ failed"):
            learn_fingerprint(
                "127.0.0.1", plain.port, config, small_fixture().account("main"), embedded=False
            )


def test_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    with scripted() as plain:
        config = config_for(plain, tls="implicit", tls_ca=str(bogus), capabilities="auto")
        with pytest.raises(ConfigError, match=r"tls: cannot load the CA file .*ca\.pem"):
            learn_fingerprint(
                "127.0.0.1", plain.port, config, small_fixture().account("main"), embedded=False
            )


INJECTION = steps(
    "open: a",
    "  plaintext: true",
    "S: +OK",
    "pipeline: [STLS, CAPA]",
    "S: +OK",
    "starttls: 1",
    "C: NOOP",
    "S: -ERR",
    "  or_close: true",
)


def test_starttls_step_passes_when_pipelined_plaintext_is_discarded(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    with tls_scripted(certs.server, {"NOOP": b"-ERR not in this state\r\n"}) as server:
        result = run_text(tmp_path, server, INJECTION, tls="stls", tls_ca=str(certs.ca_file))
    assert result.verdict is Verdict.PASS, result.message
    assert (True, b"NOOP") in server.tls_lines


def test_starttls_step_fails_a_server_that_answers_the_injection_inside_tls(
    tmp_path: Path,
) -> None:
    certs = certificates(tmp_path)
    with tls_scripted(
        certs.server, {"NOOP": b"-ERR not in this state\r\n"}, keep_pipelined=True
    ) as server:
        result = run_text(tmp_path, server, INJECTION, tls="plain", tls_ca=str(certs.ca_file))
    assert result.verdict is Verdict.FAIL
    assert "step 5 (starttls: 1)" in result.message
    assert "a reply to plaintext sent before the handshake" in result.message


def test_starttls_step_fails_plaintext_sent_after_the_ok(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    with tls_scripted(certs.server, after_ok=b"+OK extra\r\n") as server:
        body = steps("open: a", "  plaintext: true", "S: +OK", "C: STLS", "S: +OK", "starttls")
        result = run_text(tmp_path, server, body, tls_ca=str(certs.ca_file))
    assert result.verdict is Verdict.FAIL
    assert "nothing in plaintext after +OK to STLS" in result.message


def test_starttls_step_a_handshake_aborted_with_an_alert_is_an_error(tmp_path: Path) -> None:
    # the deployment's TLS set-up (no cipher in common: a handshake_failure
    # alert), not the protocol: the suite cannot judge the rest (ERROR)
    certs = certificates(tmp_path)
    certs.server.maximum_version = ssl.TLSVersion.TLSv1_2
    certs.server.set_ciphers("AES128-SHA")  # RSA key exchange: our client offers none
    with tls_scripted(certs.server) as server:
        body = steps("open: a", "  plaintext: true", "S: +OK", "C: STLS", "S: +OK", "starttls")
        result = run_text(tmp_path, server, body, tls_ca=str(certs.ca_file))
    assert result.verdict is Verdict.ERROR, result.message
    assert "TLS could not be set up after the +OK to STLS" in result.message


def test_plaintext_session_skips_under_implicit_tls(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    with tls_scripted(certs.server, implicit=True) as server:
        body = steps("open: a", "  plaintext: true", "S: +OK")
        result = run_text(tmp_path, server, body, tls="implicit", tls_ca=str(certs.ca_file))
    assert result.verdict is Verdict.SKIP
    assert "implicit TLS" in result.message


def test_the_client_context_tells_a_missing_close_notify_from_a_clean_close() -> None:
    """Debian's Python turns on OP_IGNORE_UNEXPECTED_EOF by default; with it,
    an abrupt TCP close under TLS would look like close_notify."""
    import ssl

    from conformance.core.tls import TlsSettings, client_context

    context = client_context(TlsSettings(verify=False))
    assert not context.options & getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)


class HandshakeStaller:
    """A server whose TLS handshake never comes: under implicit TLS it
    accepts and sends nothing; with STLS it greets, answers STLS '+OK' and
    then sends nothing. Holds every connection until stopped."""

    def __init__(self, *, implicit: bool) -> None:
        self.implicit = implicit
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(conn)
            if not self.implicit:
                threading.Thread(target=self._greet_then_stall, args=(conn,), daemon=True).start()

    def _greet_then_stall(self, conn: socket.socket) -> None:
        try:
            conn.sendall(b"+OK ready\r\n")
            received = b""
            while b"STLS\r\n" not in received:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                received += chunk
            conn.sendall(b"+OK begin TLS\r\n")  # ... and never a ServerHello
        except OSError:
            return

    def __enter__(self) -> HandshakeStaller:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for sock in [self._listener, *self._held]:
            sock.close()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            "implicit",
            "implicit TLS with 127.0.0.1:{port} failed: no TLS handshake within 0.5 s (the TCP "
            "connection opened: is this port serving implicit TLS (pop3s)?)",
        ),
        ("stls", "127.0.0.1:{port}: --tls stls: no TLS handshake within 0.5 s"),
    ],
)
def test_a_tls_handshake_that_stalls_ends_at_the_deadline_naming_it(
    tmp_path: Path, mode: str, expected: str
) -> None:
    certs = certificates(tmp_path)
    with HandshakeStaller(implicit=mode == "implicit") as server:
        started = time.monotonic()
        with pytest.raises(TargetUnreachable) as raised:
            run_text(
                tmp_path,
                server,  # type: ignore[arg-type]
                LOGIN_STAT,
                tls=mode,
                tls_ca=str(certs.ca_file),
                read_timeout=0.5,
                auth_timeout=0.5,
            )
        took = time.monotonic() - started
    assert str(raised.value) == expected.format(port=server.port)
    assert took < 5, took  # the read deadline, not a hang
