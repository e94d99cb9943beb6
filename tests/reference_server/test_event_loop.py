"""The reference servers' `--event-loop`: uvloop where installed, asyncio
on request, and a named error when the loop asked for is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from pop3_testlib import PASSWORD, LineClient, ServerProcess

from reference_server import cli, event_loop
from reference_server.store.maildrop import MaildirStore

UVLOOP = importlib.util.find_spec("uvloop") is not None


def _without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        event_loop.importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "uvloop" else real(name, *rest),
    )


def test_auto_is_uvloop_where_installed_and_asyncio_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert event_loop.chosen_loop("asyncio") == "asyncio"
    assert event_loop.chosen_loop("auto") == ("uvloop" if UVLOOP else "asyncio")
    _without_uvloop(monkeypatch)
    assert event_loop.chosen_loop("auto") == "asyncio"


def test_uvloop_asked_for_but_missing_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch,
    store: MaildirStore,
    users_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _without_uvloop(monkeypatch)
    status = cli.main(["--store", store.spec, "--users", str(users_file), "--event-loop", "uvloop"])
    assert status == cli.EXIT_CONFIGURATION_ERROR
    error = capsys.readouterr().err.strip()
    assert error == (
        "reference_server: error: --event-loop uvloop: uvloop is not installed here "
        "(pip install uvloop, or --event-loop asyncio)"
    )


@pytest.mark.parametrize(
    "loop",
    ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(not UVLOOP, reason="no uvloop"))],
)
def test_the_server_answers_a_session_alike_on_either_loop(
    loop: str, store: MaildirStore, users_file: Path
) -> None:
    server = ServerProcess(
        "--listen", "127.0.0.1:0", "--store", store.spec, "--users", str(users_file),
        "--event-loop", loop, "--log-level", "INFO",
    )  # fmt: skip
    try:
        client = LineClient(server.host, server.port)
        assert client.greeting.startswith(b"+OK")
        assert client.command("USER alice").startswith(b"+OK")
        assert client.command(f"PASS {PASSWORD}").startswith(b"+OK alice has")
        assert client.command("STAT").startswith(b"+OK ")
        assert client.command("QUIT").startswith(b"+OK")
        client.close()
    finally:
        status, _, log = server.stop()
    assert status == 0
    assert f"event=event-loop name={loop}" in log
