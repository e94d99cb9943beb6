"""Target config file: loading, validation errors with file/line/field, flag overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.core.config import RunConfig, finalize, load_config, parse_target
from conformance.core.errors import ConfigError

GOOD = """\
# a real server
target: mail.example.org:1110
tls: plain
provision: maildir:/srv/mail/{user}/Maildir
autologout: 600
capabilities: [top, UIDL, user]
timeouts:
  read: 5
  auth: 45.5
  scenario: 90
accounts:
  main: {user: alice, password: "s3cret-main"}
  empty:
    user: bob
    password: s3cret-empty
  spare1: {user: carol, password: s3cret-spare}
"""


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "target.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_full_file_loads(tmp_path: Path) -> None:
    cfg = load_config(_file(tmp_path, GOOD))
    assert (cfg.host, cfg.port) == ("mail.example.org", 1110)
    assert cfg.provision == "maildir:/srv/mail/{user}/Maildir"
    assert cfg.autologout == 600
    assert cfg.capabilities == ["TOP", "UIDL", "USER"]
    assert (cfg.read_timeout, cfg.auth_timeout, cfg.scenario_timeout) == (5.0, 45.5, 90.0)
    assert cfg.accounts["empty"] == {"user": "bob", "password": "s3cret-empty"}


def test_redacted_hides_passwords(tmp_path: Path) -> None:
    red = load_config(_file(tmp_path, GOOD)).redacted()
    assert "s3cret" not in repr(red)
    assert red["accounts"]["main"] == {"user": "alice", "password": "***"}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("target: foo\n", r"target\.yaml:1: target: expected HOST:PORT, got 'foo'"),
        ("\n\ntls: starttls\n", r"target\.yaml:3: tls: expected one of plain, stls, implicit"),
        ("tls: {mode: wat}\n", r"target\.yaml:1: tls\.mode: expected one of plain"),
        ("tls:\n  verify: 1\n", r"target\.yaml:2: tls\.verify: expected true or false"),
        ("tls:\n  ca: nope.pem\n", r"target\.yaml:2: tls\.ca: no such file"),
        ("tls:\n  sni: x\n", r"target\.yaml:2: tls\.sni: unknown key"),
        ("target: imap://a\n", r"target\.yaml:1: target: unknown scheme 'imap'"),
        ("targte: a:1\n", r"target\.yaml:1: targte: unknown key"),
        (
            "accounts:\n  main:\n    user: a\n    password: 1234\n",
            r"target\.yaml:4: accounts\.main\.password: required non-empty string \(quote it\)",
        ),
        (
            "accounts:\n  boss: {user: a, password: b}\n",
            r"target\.yaml:2: accounts\.boss: unknown role",
        ),
        (
            "accounts:\n  main: {user: a, pass: b}\n",
            r"target\.yaml:2: accounts\.main\.pass: unknown key",
        ),
        ("timeouts:\n  read: -1\n", r"target\.yaml:2: timeouts\.read: must be positive"),
        ("timeouts:\n  raed: 1\n", r"target\.yaml:2: timeouts\.raed: unknown key"),
        ("autologout: soon\n", r"target\.yaml:1: autologout: expected a number of seconds"),
        ("capabilities: some\n", r"target\.yaml:1: capabilities: expected 'auto' or a list"),
        ("provision: ftp:x\n", r"target\.yaml:1: provision: unknown provisioner 'ftp:x'"),
        ("target: a:1\nprovision: reference\n", r"target\.yaml:2: provision: 'reference' means"),
        ("target: [a\n", r"target\.yaml:\d+: not valid YAML"),
        ("- a\n", r"target\.yaml:1: expected a mapping"),
    ],
)
def test_errors_name_file_line_field(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        load_config(_file(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read config file"):
        load_config(tmp_path / "nope.yaml")


def test_target_without_provision_defaults_to_none(tmp_path: Path) -> None:
    cfg = finalize(load_config(_file(tmp_path, "target: '[::1]:110'\n")))
    assert (cfg.host, cfg.port, cfg.provision) == ("::1", 110, "none")
    assert finalize(RunConfig()).provision == "reference"


@pytest.mark.parametrize("bad", ["foo", "host:", ":110", "h:99999", "h:1:2", ""])
def test_parse_target_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_target(bad)


def test_tls_mapping_in_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    path = tmp_path / "target.yaml"
    path.write_text(
        "target: pop3s://mail.example.test\n"
        "tls:\n  ca: ca.pem\n  verify: false\n  server_name: pop.example.test\n",
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert (cfg.host, cfg.port, cfg.tls) == ("mail.example.test", 995, "implicit")
    assert cfg.tls_ca == str(tmp_path / "ca.pem")
    assert cfg.tls_verify is False
    assert cfg.tls_server_name == "pop.example.test"
    plain = tmp_path / "plain.yaml"
    plain.write_text("tls: stls\n", encoding="utf-8")
    assert load_config(plain).tls == "stls"


def test_the_apop_role_is_configurable_with_its_login_method(tmp_path: Path) -> None:
    from conformance.core.fixture import load_fixture
    from conformance.core.pools import with_credentials

    text = "accounts:\n  apop: {user: dora, password: apop-secret, login: apop}\n"
    cfg = load_config(_file(tmp_path, text))
    assert cfg.accounts["apop"] == {"user": "dora", "password": "apop-secret", "login": "apop"}
    account = with_credentials(load_fixture(), cfg.accounts).account("apop")
    assert (account.user, account.password, account.login) == ("dora", "apop-secret", "apop")
    assert "apop-secret" not in str(cfg.redacted())


def test_an_unknown_login_method_names_the_field(tmp_path: Path) -> None:
    text = "accounts:\n  apop:\n    user: dora\n    password: x\n    login: kerberos\n"
    with pytest.raises(ConfigError, match=r"target.yaml:5: accounts.apop.login: expected pass"):
        load_config(_file(tmp_path, text))
