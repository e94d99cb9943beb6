"""Real POP3 clients over STLS and pop3s, with SASL: fetchmail, mpop, getmail6.

Each client verifies the server certificate against the trustme CA (never
"no verify"), logs in by the method named, and must deliver the stored
messages byte for byte.  Skipped with a reason when a binary is absent.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from pop3_testlib import write_maildir
from test_refserver_interop import (
    DELIVER_SCRIPT,
    EXPECTED,
    MESSAGES,
    PASSWORD,
    delivered_files,
    private_file,
    remaining,
    require,
    run_client,
)

from reference_server import UserDirectory, start_server
from reference_server.pop3.server import ServerHandle
from reference_server.tls import server_context


@pytest.fixture
def tls_mailbox(tmp_path: Path) -> Iterator[tuple[ServerHandle, Path, Path]]:
    """A server with STLS, a pop3s port and --require-tls; yields (handle, maildir, CA file)."""
    ca = trustme.CA()
    # fetchmail 6.4 wants the name in the subject CN too, not only in the SAN.
    certificate = ca.issue_cert("localhost", "127.0.0.1", common_name="localhost")
    ca_file = tmp_path / "ca.pem"
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    maildir = write_maildir(tmp_path / "store", "alice", MESSAGES)
    with start_server(
        store=f"maildir:{tmp_path}/store/{{user}}",
        users=UserDirectory({"alice": PASSWORD}),
        tls_context=server_context(cert_file, key_file),
        implicit_tls_port=0,
        require_tls=True,  # a client that forgot TLS would fail, not pass
    ) as handle:
        yield handle, maildir, ca_file


def mpop_run(
    handle: ServerHandle, tmp_path: Path, ca_file: Path, *, port: int, starttls: bool, auth: str
) -> Path:
    mpop = require("mpop")
    outbox = tmp_path / "mpop-out"
    write_maildir(tmp_path, "mpop-out", [])
    config = private_file(
        tmp_path / "mpoprc",
        f"""\
defaults
account default
host localhost
port {port}
user alice
password {PASSWORD}
auth {auth}
tls on
tls_starttls {"on" if starttls else "off"}
tls_trust_file {ca_file}
delivery maildir {outbox}
keep on
received_header off
uidls_file {tmp_path / "mpop-uidls"}
""",
    )
    run_client([mpop, "--quiet", f"--file={config}", "--all-accounts"], tmp_path)
    return outbox


@pytest.mark.interop
@pytest.mark.parametrize("auth", ["user", "plain", "login", "cram-md5", "scram-sha-256"])
def test_mpop_over_stls_with_each_login_method(
    tls_mailbox: tuple[ServerHandle, Path, Path], tmp_path: Path, auth: str
) -> None:
    handle, maildir, ca_file = tls_mailbox
    outbox = mpop_run(handle, tmp_path, ca_file, port=handle.port, starttls=True, auth=auth)
    assert sorted(delivered_files(outbox / "new")) == sorted(EXPECTED)
    assert remaining(maildir) == len(MESSAGES)


@pytest.mark.interop
def test_mpop_over_implicit_tls(
    tls_mailbox: tuple[ServerHandle, Path, Path], tmp_path: Path
) -> None:
    handle, _, ca_file = tls_mailbox
    assert handle.tls_port is not None
    outbox = mpop_run(handle, tmp_path, ca_file, port=handle.tls_port, starttls=False, auth="plain")
    assert sorted(delivered_files(outbox / "new")) == sorted(EXPECTED)


def fetchmail_run(
    handle: ServerHandle,
    tmp_path: Path,
    ca_file: Path,
    *,
    port: int,
    options: str,
    user_options: str = "",
) -> list[bytes]:
    fetchmail = require("fetchmail")
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
poll localhost service {port} protocol pop3 {options} no dns
  user "alice" there with password "{PASSWORD}" is "alice" here
  keep fetchall no rewrite {user_options} sslcertck sslcertfile "{ca_file}" sslproto 'TLS1.2+'
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
    return delivered_files(outbox)


@pytest.mark.interop
@pytest.mark.parametrize("auth", ["password", "cram-md5"])
def test_fetchmail_over_stls(
    tls_mailbox: tuple[ServerHandle, Path, Path], tmp_path: Path, auth: str
) -> None:
    handle, maildir, ca_file = tls_mailbox
    delivered = fetchmail_run(handle, tmp_path, ca_file, port=handle.port, options=f"auth {auth}")
    assert delivered == EXPECTED
    assert remaining(maildir) == len(MESSAGES)


@pytest.mark.interop
def test_fetchmail_over_implicit_tls(
    tls_mailbox: tuple[ServerHandle, Path, Path], tmp_path: Path
) -> None:
    handle, _, ca_file = tls_mailbox
    assert handle.tls_port is not None
    delivered = fetchmail_run(
        handle, tmp_path, ca_file, port=handle.tls_port, options="auth password", user_options="ssl"
    )
    assert delivered == EXPECTED


@pytest.mark.interop
def test_getmail_over_implicit_tls(
    tls_mailbox: tuple[ServerHandle, Path, Path], tmp_path: Path
) -> None:
    getmail = require("getmail")
    handle, maildir, ca_file = tls_mailbox
    outbox = tmp_path / "getmail-out"
    outbox.mkdir()
    deliver = tmp_path / "deliver.py"
    deliver.write_text(DELIVER_SCRIPT)
    rc = tmp_path / "getmailrc"
    rc.write_text(f"""\
[retriever]
type = SimplePOP3SSLRetriever
server = localhost
port = {handle.tls_port}
username = alice
password = {PASSWORD}
ca_certs = {ca_file}

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
    trace = b"Return-Path: <unknown>\n"
    delivered = delivered_files(outbox)
    assert [message.removeprefix(trace) for message in delivered] == EXPECTED
    assert remaining(maildir) == len(MESSAGES)
