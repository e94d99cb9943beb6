"""The SMTP engine's verdict rules, each shown failing on a scripted server
that breaks it: the seed's "220 to everything" server, code sets (MUST for
a positive code, SHOULD for an unlisted refusal), one reply per command,
bare codes, silence, closes, `non_strict`, `end_if`, and the `S:` syntax
errors a scenario author gets."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conformance.core.config import RunConfig
from conformance.core.errors import ScenarioError, TargetUnreachable
from conformance.core.results import ScenarioResult, Verdict
from conformance.protocols import load_protocol_scenarios, run_suite

#: command line -> reply bytes (None: stay silent; a tuple: written one
#: part at a time, PAUSE seconds apart, as a slow server's separate writes)
Script = Callable[[bytes], bytes | tuple[bytes, ...] | None]
CLOSE = b"<close>"  # a script's answer that closes the connection instead
PAUSE = 0.5


def conformant(line: bytes) -> bytes | None:
    verb = line.split(b" ", 1)[0].upper()
    return {
        b"EHLO": b"250-fake.test hello\r\n250 8BITMIME\r\n",
        b"HELO": b"250 fake.test\r\n",
        b"MAIL": b"250 ok\r\n",
        b"RCPT": b"250 ok\r\n",
        b"DATA": b"354 go ahead\r\n",
        b"NOOP": b"250 ok\r\n",
        b"RSET": b"250 ok\r\n",
        b"QUIT": b"221 fake.test bye\r\n",
        b"HELP": b"214 help\r\n",
    }.get(verb, b"500 unknown\r\n")


def answering(prefix: bytes, answer: bytes | None) -> Script:
    """The conformant script, except that commands starting with `prefix`
    get `answer`."""

    def script(line: bytes) -> bytes | None:
        return answer if line.startswith(prefix) else conformant(line)

    return script


@contextmanager
def scripted(
    script: Script,
    greeting: bytes = b"220 fake.test ready\r\n",
    tls: ssl.SSLContext | None = None,
) -> Iterator[int]:
    """A loopback server answering each command line with `script`; the
    mail data after 354 is read up to CRLF.CRLF and answered 250. With
    `tls`, STARTTLS is answered 220 and the server's handshake follows."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.sendall(greeting)
            buffer, in_data = b"", False
            while not stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                while True:
                    if in_data:
                        end = buffer.find(b"\r\n.\r\n")
                        if end < 0:
                            break
                        buffer, in_data = buffer[end + 5 :], False
                        conn.sendall(b"250 queued\r\n")
                        continue
                    line, sep, rest = buffer.partition(b"\r\n")
                    if not sep:
                        break
                    buffer = rest
                    if tls is not None and line.upper() == b"STARTTLS":
                        conn.sendall(b"220 go ahead\r\n")
                        try:
                            conn = tls.wrap_socket(conn, server_side=True)
                        except (OSError, ssl.SSLError):
                            return
                        buffer = b""
                        continue
                    answer = script(line)
                    if answer == CLOSE:
                        return
                    if isinstance(answer, tuple):
                        for part in answer:
                            conn.sendall(part)
                            time.sleep(PAUSE)
                        continue
                    if answer:
                        conn.sendall(answer)
                    if answer and answer.startswith(b"354"):
                        in_data = True
                        buffer = b"\r\n" + buffer  # the data may end at once
                    if line.upper() == b"QUIT":
                        return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


def run_text(tmp_path: Path, port: int, steps: str, **scenario: str) -> ScenarioResult:
    header = {
        "id": "t.case",
        "title": "case",
        "requirements": "[SMTP-5321-MAIL-01, SMTP-5321-QUIT-01]",
        "level": "MUST",
        **scenario,
    }
    text = "protocol: smtp\nsection: test\nscenarios:\n  - " + "\n    ".join(
        f"{k}: {v}" for k, v in header.items()
    )
    text += "\n    steps:\n" + "".join(f"      {line}\n" for line in steps.strip().splitlines())
    path = tmp_path / "case.yaml"
    path.write_text(text, encoding="utf-8")
    scenarios = load_protocol_scenarios([path], "smtp")
    config = RunConfig(host="127.0.0.1", port=port, protocol="smtp", smtp_delivery="none")
    config.read_timeout = 0.5
    return run_suite(scenarios, config).results[0]


TRANSACTION = """
- open
- S: 220
- C: "EHLO {client}"
- S: 250
- C: "MAIL FROM:<{sender}>"
- S: 250
  requirement: SMTP-5321-MAIL-01
- C: QUIT
- S: 221
"""


def test_a_conformant_server_passes(tmp_path: Path) -> None:
    with scripted(conformant) as port:
        result = run_text(tmp_path, port, TRANSACTION)
    assert result.verdict is Verdict.PASS, result.message


def test_the_seed_server_answering_220_to_mail_fails_on_the_mail_requirement(
    tmp_path: Path,
) -> None:
    with scripted(
        lambda line: b"250 ok\r\n" if line.startswith(b"EHLO") else b"220 ok\r\n"
    ) as port:
        result = run_text(tmp_path, port, TRANSACTION)
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].requirement == "SMTP-5321-MAIL-01"
    assert "220 ok" in result.failures[0].actual


def test_a_positive_code_outside_the_commands_set_fails_even_where_the_step_allows_it(
    tmp_path: Path,
) -> None:
    steps = TRANSACTION.replace("- S: 250\n  requirement: SMTP-5321-MAIL-01", "- S: 2xx")
    script = answering(b"MAIL", b"220 ok\r\n")
    with scripted(script) as port:
        result = run_text(tmp_path, port, steps)
    assert result.verdict is Verdict.FAIL
    assert [(f.kind, f.requirement, f.level) for f in result.failures] == [
        ("code-set", "SMTP-5321-MAIL-01", "MUST")
    ]


def test_an_unlisted_refusal_code_is_a_should_of_the_code_table(tmp_path: Path) -> None:
    steps = TRANSACTION.replace("- S: 250\n  requirement: SMTP-5321-MAIL-01", "- S: 5xx")
    script = answering(b"MAIL", b"554 no\r\n")
    with scripted(script) as port:
        result = run_text(tmp_path, port, steps)
    assert result.verdict is Verdict.WARN
    assert result.failures[0].requirement == "SMTP-5321-REPLY-05"


def test_two_replies_to_one_command_are_a_framing_failure(tmp_path: Path) -> None:
    script = answering(b"MAIL", b"250 ok\r\n250 again\r\n")
    with scripted(script) as port:
        result = run_text(tmp_path, port, TRANSACTION)
    assert result.verdict is Verdict.FAIL
    assert any(f.requirement == "SMTP-5321-SEQ-03" for f in result.failures)


SMUGGLED = """
- open
- S: 220
- C: "EHLO {client}"
- S: 250
- send: "RSET\\r\\n"
- S: 250
  requirement: SMTP-5321-LINE-01
- idle: IDLE
  requirement: SMTP-5321-LINE-01
- C: NOOP
- S: 250
  requirement: SMTP-5321-LINE-01
"""
#: the answer to raw bytes that smuggled two more commands: three replies,
#: written one by one (the last one's code is outside NOOP's set)
SPLIT_REPLIES = (b"250 first\r\n", b"250 smuggled\r\n", b"354 smuggled data\r\n")


def _smuggled(tmp_path: Path, idle: float) -> ScenarioResult:
    with scripted(answering(b"RSET", SPLIT_REPLIES)) as port:
        return run_text(
            tmp_path,
            port,
            SMUGGLED.replace("IDLE", str(idle)),
            level="SHOULD",
            requirements="[SMTP-5321-LINE-01]",
        )


def test_an_idle_keeps_every_reply_written_during_it_not_only_the_first_segment(
    tmp_path: Path,
) -> None:
    # both smuggled replies arrive 0.5 s apart inside a 2 s idle: the idle
    # sees both, whatever the segments, and the NOOP reads its own 250
    result = _smuggled(tmp_path, 2.0)
    assert result.verdict is Verdict.WARN, result.failures
    idle = next(f for f in result.failures if f.step_text.startswith("idle"))
    assert "250 smuggled" in idle.actual and "354 smuggled data" in idle.actual
    assert {(f.requirement, f.level) for f in result.failures} == {("SMTP-5321-LINE-01", "SHOULD")}


def test_a_late_reply_after_raw_bytes_is_judged_by_the_step_not_the_commands_code_set(
    tmp_path: Path,
) -> None:
    # the idle (0.75 s) is over between the second smuggled reply (0.5 s)
    # and the last (1 s): the NOOP's read gets 354, which answers a smuggled
    # command, not NOOP: a finding of the step's requirement at the
    # scenario's level, not a MUST failure of NOOP's code set
    result = _smuggled(tmp_path, 0.75)
    assert result.verdict is Verdict.WARN, result.failures
    assert {(f.requirement, f.level) for f in result.failures} == {("SMTP-5321-LINE-01", "SHOULD")}
    assert any("354 smuggled data" in f.actual for f in result.failures)


def test_a_bare_code_is_a_should(tmp_path: Path) -> None:
    script = answering(b"MAIL", b"250\r\n")
    with scripted(script) as port:
        result = run_text(tmp_path, port, TRANSACTION)
    assert result.verdict is Verdict.WARN
    assert result.failures[0].requirement == "SMTP-5321-REPLY-03"


def test_silence_is_a_must_failure_naming_the_command(tmp_path: Path) -> None:
    script = answering(b"MAIL", None)
    with scripted(script) as port:
        result = run_text(tmp_path, port, TRANSACTION)
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].kind == "timeout"
    assert "MAIL FROM:<" in result.failures[0].expected


def test_a_mixed_code_multiline_reply_is_a_framing_failure(tmp_path: Path) -> None:
    script = answering(b"EHLO", b"250-fake.test\r\n251 8BITMIME\r\n")
    with scripted(script) as port:
        result = run_text(tmp_path, port, TRANSACTION)
    assert result.verdict is Verdict.FAIL
    assert result.failures[0].kind == "framing"


def test_a_non_strict_code_warns(tmp_path: Path) -> None:
    steps = TRANSACTION.replace(
        "- S: 250\n  requirement: SMTP-5321-MAIL-01", "- S: 503\n  non_strict: [250]"
    )
    with scripted(conformant) as port:
        result = run_text(tmp_path, port, steps)
    assert result.verdict is Verdict.WARN
    assert result.failures[0].kind == "non-strict"


def test_end_if_ends_the_scenario_on_what_it_saw(tmp_path: Path) -> None:
    steps = """
- open
- S: 220
- C: "MAIL FROM:<{sender}>"
- S: [250, 503]
  save_code: mail
- end_if: "mail == 503"
  reason: refused
- C: "RCPT TO:<{rcpt}>"
- S: 250
"""

    def script(line: bytes) -> bytes | None:
        if line.startswith(b"MAIL"):
            return b"503 say hello\r\n"
        return b"550 no\r\n" if line.startswith(b"RCPT") else conformant(line)

    with scripted(script) as port:
        result = run_text(tmp_path, port, steps)
    assert result.verdict is Verdict.PASS, result.message


def test_a_closed_connection_instead_of_a_reply_fails_unless_or_close(tmp_path: Path) -> None:
    script = answering(b"MAIL", CLOSE)
    with scripted(script) as port:
        closes = run_text(tmp_path, port, TRANSACTION)
        allowed = run_text(
            tmp_path, port, TRANSACTION.replace("requirement: SMTP-5321-MAIL-01", "or_close: true")
        )
    assert closes.verdict is Verdict.FAIL
    assert closes.failures[0].kind == "closed"
    assert allowed.verdict is Verdict.PASS, allowed.message


STARTTLS_THEN_NOOP = """
- open:
  plaintext: true
- S: 220
- C: "EHLO {client}"
- S: 250
- C: STARTTLS
- S: 220
- starttls
- C: "EHLO {client}"
- S: 250
- C: QUIT
- S: 221
"""


def _tls_run(tmp_path: Path, port: int, ca_file: str | None) -> ScenarioResult:
    path = tmp_path / "tls.yaml"
    body = "".join(f"      {line}\n" for line in STARTTLS_THEN_NOOP.strip().splitlines())
    path.write_text(
        "protocol: smtp\nsection: test\nscenarios:\n  - id: t.tls\n    title: tls\n"
        "    requirements: [SMTP-3207-TLS-02]\n    level: MUST\n    steps:\n" + body,
        encoding="utf-8",
    )
    config = RunConfig(host="127.0.0.1", port=port, protocol="smtp", smtp_delivery="none")
    config.read_timeout = 2.0
    config.tls_ca = ca_file
    return run_suite(load_protocol_scenarios([path], "smtp"), config).results[0]


def _server_context(tmp_path: Path) -> tuple[ssl.SSLContext, str]:
    import trustme

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, str(ca_file)


def test_starttls_that_works_passes(tmp_path: Path) -> None:
    context, ca_file = _server_context(tmp_path)
    with scripted(conformant, tls=context) as port:
        result = _tls_run(tmp_path, port, ca_file)
    assert result.verdict is Verdict.PASS, result.message


def test_a_handshake_the_server_aborts_with_an_alert_is_an_error_not_a_fail(
    tmp_path: Path,
) -> None:
    # smtp-notes §7 item 32: the deployment's TLS set-up (here: no cipher in
    # common, so the server answers the ClientHello with a handshake_failure
    # alert), not the protocol
    context, ca_file = _server_context(tmp_path)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("AES128-SHA")  # RSA key exchange: the client offers none
    with scripted(conformant, tls=context) as port:
        result = _tls_run(tmp_path, port, ca_file)
    assert result.verdict is Verdict.ERROR, result.message
    assert "TLS could not be set up after the 220" in result.message
    assert "ALERT" in result.message.upper()


def test_a_certificate_the_run_does_not_trust_is_an_error_naming_tls_ca(tmp_path: Path) -> None:
    context, _ = _server_context(tmp_path)
    with scripted(conformant, tls=context) as port:
        result = _tls_run(tmp_path, port, None)  # the trustme CA is not trusted
    assert result.verdict is Verdict.ERROR, result.message
    assert "certificate not accepted" in result.message and "--tls-ca" in result.message


def test_plaintext_instead_of_the_handshake_stays_a_fail(tmp_path: Path) -> None:
    # STARTTLS answered 220, then the server goes on in plaintext: a finding
    script = answering(b"STARTTLS", b"220 go ahead\r\n250 still plaintext\r\n")
    with scripted(script) as port:
        result = _tls_run(tmp_path, port, None)
    assert result.verdict is Verdict.FAIL, result.message


def test_a_554_greeting_is_probed_as_a_refused_session_and_judged(tmp_path: Path) -> None:
    """RFC 5321 §3.1: the probe records no extensions; 503 is then in every
    command's code set, and a scenario expecting 220 fails on the greeting."""

    def refusing(line: bytes) -> bytes | None:
        return b"221 fake.test bye\r\n" if line.startswith(b"QUIT") else b"503 5.5.1 refused\r\n"

    steps = '- open\n- S: 554\n- C: "EHLO {client}"\n- S: 503\n- C: QUIT\n- S: 221\n'
    greeting = b"554 fake.test no service\r\n"
    with scripted(refusing, greeting=greeting) as port:
        refused = run_text(tmp_path, port, steps)
        accepted = run_text(tmp_path, port, TRANSACTION)
    assert refused.verdict is Verdict.PASS, refused.message
    assert accepted.verdict is Verdict.FAIL and "554" in accepted.failures[0].actual


def test_slow_smtp_scenarios_skip_unless_asked(tmp_path: Path) -> None:
    with scripted(conformant) as port:
        result = run_text(tmp_path, port, TRANSACTION, slow="true")
    assert result.verdict is Verdict.SKIP and "--slow" in result.message


def test_a_server_that_never_greets_cannot_be_probed(tmp_path: Path) -> None:
    with scripted(conformant, greeting=b"") as port, pytest.raises(TargetUnreachable):
        run_text(tmp_path, port, TRANSACTION)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("- S: 2x5", "is not a reply code"),
        ("- S: []", "empty list of codes"),
        ("- S: 250\n  text: '('", "bad regular expression"),
        ("- data: hello", "takes a list of message lines"),
        ("- delivered: {to: nobody}", "unknown account role"),
        ("- delivered: {trace_matches: ['(']}", "trace_matches: bad regex"),
        ("- delivered: {trace_lacks: 'x'}", "trace_lacks is a list of regexes"),
        ("- login", "unknown step 'login'"),
    ],
)
def test_a_malformed_smtp_step_names_file_line_and_problem(
    tmp_path: Path, step: str, message: str
) -> None:
    with pytest.raises(ScenarioError, match=message) as caught:
        run_text(tmp_path, 1, "- open\n" + step)
    assert "case.yaml:" in str(caught.value)
