"""Command-line errors name the flag, exit 2, and never print a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--target", "foo"], "argument --target: expected HOST:PORT, got 'foo'"),
        (["run", "--timeout", "soon"], "argument --timeout: expected a number of seconds"),
        (["run", "--timeout", "0"], "argument --timeout: must be positive"),
        (["run", "--provision", "ftp:x"], "argument --provision: unknown provisioner 'ftp:x'"),
        (["run", "--scenarios", "/no/such/dir"], "argument --scenarios: no such file or directory"),
        (["run", "--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_flags(cli, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(*args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_bad_flag_message_names_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from conformance.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--target", "foo"])
    err = capsys.readouterr().err
    assert "--target: expected HOST:PORT, got 'foo'" in err
    assert "Traceback" not in err


def test_config_error_exit_2_no_traceback(cli, tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text("target: nowhere\n", encoding="utf-8")
    result = cli("run", "--config", str(bad))
    assert result.code == 2
    assert f"{bad}:1: target: expected HOST:PORT" in result.err
    assert "Traceback" not in result.err


def test_provision_reference_with_target_is_a_usage_error(cli) -> None:
    result = cli("run", "--target", "127.0.0.1:9", "--provision", "reference")
    assert result.code == 2
    assert "--provision: 'reference' means the embedded server" in result.err


def test_matrix_is_wired(cli) -> None:
    import importlib.util

    if importlib.util.find_spec("conformance.reports.matrix") is None:
        result = cli("matrix", "x.json")
        assert result.code == 2 and "matrix: not available" in result.err
    else:
        with pytest.raises(SystemExit) as exc:
            cli("matrix", "--help")
        assert exc.value.code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--tls", "ssl"], "argument --tls: invalid choice: 'ssl'"),
        (["run", "--tls-ca", "/no/such/ca.pem"], "argument --tls-ca: no such file"),
        (["run", "--target", "imap://h"], "argument --target: unknown scheme 'imap'"),
        (["run", "--target", "pop3s://h:99999"], "argument --target: port must be 1-65535"),
    ],
)
def test_bad_tls_flags(
    cli, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(*args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "address", "mode"),
    [
        (["--target", "pop3s://mail.example.test"], ("mail.example.test", 995), "implicit"),
        (["--target", "pop3s://[::1]:1995"], ("::1", 1995), "implicit"),
        (["--target", "pop3://mail.example.test"], ("mail.example.test", 110), "plain"),
        (["--target", "pop3://h:1110", "--tls", "stls"], ("h", 1110), "stls"),
        (["--target", "h:110"], ("h", 110), "plain"),
        (["--tls", "implicit"], (None, 110), "implicit"),
    ],
)
def test_target_urls_and_tls_flags_build_the_config(
    args: list[str], address: tuple[str | None, int], mode: str, tmp_path: Path
) -> None:
    from conformance.cli import build_config, build_parser

    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cfg = build_config(build_parser().parse_args(["run", *args, "--tls-ca", str(ca)]))
    assert (cfg.host, cfg.port) == address
    assert cfg.tls == mode
    assert cfg.tls_ca == str(ca) and cfg.tls_verify is True
    no_verify = build_config(build_parser().parse_args(["run", *args, "--tls-no-verify"]))
    assert no_verify.tls_verify is False
