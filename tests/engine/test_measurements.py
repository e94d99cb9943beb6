"""INFO measurements (conformance.pop3.measurements): each against servers
that behave differently, proving the value measured is the server's real
one; bounded in time against servers that stall; and a measurement that
cannot be made says why instead of giving a number."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from engine_fakes import CLOSE, STALL, Reply, ScriptedServer, scripted, small_fixture

from conformance.core.config import RunConfig
from conformance.core.results import Measurement, MeasurementOutcome
from conformance.pop3.measurements import (
    BAD_COMMAND_LIMIT,
    BARE_LF,
    CONNECTIONS,
    FAILED_LOGIN_DELAY,
    LINE_REFUSAL,
    LONGEST_LINE,
    MAX_BAD_COMMANDS,
    MAX_CONNECTIONS,
    MAX_LINE_OCTETS,
    MEASUREMENT_IDS,
    measure,
    padded_line,
    skipped,
)
from reference_server.pop3.protocol import (
    MAX_COMMAND_LINE_OCTETS,
    LoginMethod,
    SessionConfig,
    UserDirectory,
)
from reference_server.pop3.server import Pop3Server, ServerHandle, ServerSettings
from reference_server.store.maildrop import MaildirStore

MAIN = small_fixture().account("main")


@contextmanager
def reference(*, per_address_cap: int = 0, **session: object) -> Iterator[ServerHandle]:
    """Our reference server in this process, with SessionConfig overrides
    (and its per-address connection cap, 0: none)."""
    users = UserDirectory()
    for account in small_fixture().accounts.values():
        users.set(account.user, account.password, LoginMethod.PASS)
    with tempfile.TemporaryDirectory(prefix="mailspec-measure-") as root:
        store = MaildirStore(str(Path(root) / "{user}"))
        settings = ServerSettings(
            session_config=SessionConfig(**session),  # type: ignore[arg-type]
            max_connections_per_address=per_address_cap,
        )
        handle = ServerHandle(Pop3Server(store, users, settings=settings), "127.0.0.1", 0)
        try:
            yield handle
        finally:
            handle.close()


def config(port: int, **overrides: object) -> RunConfig:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "read_timeout": 2.0,
        "auth_timeout": 3.0,
    }
    values.update(overrides)
    return RunConfig(**values)  # type: ignore[arg-type]


def measured(port: int, **overrides: object) -> dict[str, Measurement]:
    found = measure("127.0.0.1", port, config(port, **overrides), MAIN)
    assert [m.id for m in found] == list(MEASUREMENT_IDS)
    return {m.id: m for m in found}


# -- info.longest-command-line and info.line-length-refusal --------------------


def test_padded_line_has_exactly_the_octets_asked_for() -> None:
    for octets in (64, 255, 256, 65536):
        line = padded_line(octets)
        assert len(line) == octets and line.startswith(b"NOOP ") and line.endswith(b"X\r\n")


def test_the_reference_server_refuses_from_256_octets_and_answers_every_length() -> None:
    # RFC 2449 §4: 255 octets with CRLF; above, the reference answers -ERR and goes on
    with reference() as server:
        found = measured(server.port)
    refusal, longest = found[LINE_REFUSAL], found[LONGEST_LINE]
    assert refusal.outcome is MeasurementOutcome.MEASURED
    assert refusal.value == MAX_COMMAND_LINE_OCTETS + 1
    assert "too long" in refusal.note
    assert longest.outcome is MeasurementOutcome.AT_LEAST and longest.value == MAX_LINE_OCTETS
    assert longest.bounds == {"min": 64, "max": MAX_LINE_OCTETS}


def closes_above(limit: int) -> object:
    """A server that answers lines up to `limit` octets and closes on longer ones."""

    def rule(raw: bytes, state: dict[str, int]) -> Reply | None:
        if len(raw) > limit:
            return CLOSE
        return b"+OK\r\n" if raw.startswith(b"NOOP") else None

    return rule


@pytest.mark.parametrize("limit", [100, 1000, 8191])
def test_a_server_that_closes_above_l_octets_measures_l(limit: int) -> None:
    with scripted(rule=closes_above(limit)) as server:
        found = measured(server.port)
    assert found[LONGEST_LINE].outcome is MeasurementOutcome.MEASURED
    assert found[LONGEST_LINE].value == limit
    assert f"{limit + 1} octets: connection closed" in found[LONGEST_LINE].note
    # the reply changed (to no reply at all) at the next octet
    assert found[LINE_REFUSAL].value == limit + 1


def test_a_server_that_answers_long_lines_but_closes_after_them_did_not_answer() -> None:
    # "answered" includes a usable connection: QUIT after the line gets a status line
    def rule(raw: bytes, state: dict[str, int]) -> Reply | None:
        if raw.startswith(b"QUIT") and state.get("long"):
            return CLOSE
        if len(raw) > 300:
            state["long"] = 1
            return b"-ERR line too long\r\n"
        return b"+OK\r\n" if raw.startswith(b"NOOP") else None

    with scripted(rule=rule) as server:
        found = measured(server.port)
    assert found[LONGEST_LINE].value == 300
    assert "then QUIT: connection closed" in found[LONGEST_LINE].note


def test_an_echo_of_the_padding_is_not_a_change_of_reply() -> None:
    def rule(raw: bytes, state: dict[str, int]) -> Reply | None:
        if raw.startswith(b"NOOP "):
            return b"-ERR no arguments: " + raw.split(b" ", 1)[1][:40].rstrip() + b"\r\n"
        return None

    with scripted(rule=rule) as server:
        found = measured(server.port)
    assert found[LINE_REFUSAL].outcome is MeasurementOutcome.AT_LEAST
    assert found[LONGEST_LINE].outcome is MeasurementOutcome.AT_LEAST


def test_a_server_that_never_answers_64_octets_is_below_the_bound() -> None:
    with scripted(rule=closes_above(50)) as server:
        found = measured(server.port)
    assert found[LONGEST_LINE].outcome is MeasurementOutcome.BELOW
    assert found[LONGEST_LINE].value == 64
    assert found[LINE_REFUSAL].outcome is MeasurementOutcome.NOT_MEASURED
    assert found[LINE_REFUSAL].value is None and found[LINE_REFUSAL].note


def test_a_server_that_stalls_on_long_lines_stops_at_the_time_budget() -> None:
    def rule(raw: bytes, state: dict[str, int]) -> Reply | None:
        if len(raw) > 500:
            return STALL
        return b"+OK\r\n" if raw.startswith(b"NOOP") else None

    with scripted(rule=rule) as server:
        started = time.monotonic()
        found = measured(server.port, read_timeout=0.3)
        took = time.monotonic() - started
    longest = found[LONGEST_LINE]
    # never a guess: at least what was answered, and the note says the search stopped
    assert longest.outcome is MeasurementOutcome.AT_LEAST and 64 <= longest.value <= 500
    assert "time budget" in longest.note
    assert took < 8.0  # the line budget (3 read timeouts) plus one deadline per step


# -- info.bad-command-limit ------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 3, 7])
def test_the_reference_bad_command_limit_is_measured(limit: int) -> None:
    with reference(bad_command_limit=limit) as server:
        found = measured(server.port)
    assert found[BAD_COMMAND_LIMIT].outcome is MeasurementOutcome.MEASURED
    assert found[BAD_COMMAND_LIMIT].value == limit


def test_no_bad_command_limit_is_none_up_to_the_bound() -> None:
    with reference(bad_command_limit=0) as server:
        found = measured(server.port)
    limit = found[BAD_COMMAND_LIMIT]
    assert limit.outcome is MeasurementOutcome.AT_LEAST and limit.value == MAX_BAD_COMMANDS
    assert "or more" in limit.summary()


@pytest.mark.parametrize("answered", [0, 4, 12])
def test_a_server_that_closes_after_k_bad_commands_without_a_reply_measures_k(
    answered: int,
) -> None:
    def rule(raw: bytes, state: dict[str, int]) -> Reply | None:
        if raw.startswith(b"XQZV"):
            state["bad"] = state.get("bad", 0) + 1
            return CLOSE if state["bad"] > answered else b"-ERR what?\r\n"
        return None

    with scripted(rule=rule) as server:
        found = measured(server.port)
    assert found[BAD_COMMAND_LIMIT].value == answered


def test_an_unknown_command_answered_ok_is_not_measured() -> None:
    with scripted(default=b"+OK whatever\r\n") as server:
        found = measured(server.port)
    limit = found[BAD_COMMAND_LIMIT]
    assert limit.outcome is MeasurementOutcome.NOT_MEASURED and limit.value is None
    assert "XQZV was answered" in limit.note


def test_silence_to_an_unknown_command_is_not_a_number() -> None:
    with scripted({"XQZV": STALL}) as server:
        started = time.monotonic()
        found = measured(server.port, read_timeout=0.3)
    assert found[BAD_COMMAND_LIMIT].outcome is MeasurementOutcome.NOT_MEASURED
    assert "no reply before the deadline" in found[BAD_COMMAND_LIMIT].note
    assert time.monotonic() - started < 8.0


# -- info.failed-login-delay ----------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 0.4])
def test_the_reference_failed_login_delay_is_measured(delay: float) -> None:
    with reference(failed_login_delay_seconds=delay) as server:
        found = measured(server.port)
    measured_delay = found[FAILED_LOGIN_DELAY]
    assert measured_delay.outcome is MeasurementOutcome.MEASURED
    assert len(measured_delay.samples) == 3
    assert measured_delay.value is not None
    assert delay <= measured_delay.value < delay + 0.25
    assert measured_delay.note.startswith("samples ")
    assert measured_delay.bounds == {"min": 0, "max": 3.0}  # the auth timeout


def test_a_delay_beyond_the_auth_timeout_is_at_least_the_timeout_after_one_sample() -> None:
    with reference(failed_login_delay_seconds=5.0) as server:
        started = time.monotonic()
        found = measured(server.port, auth_timeout=0.5)
        took = time.monotonic() - started
    delay = found[FAILED_LOGIN_DELAY]
    assert delay.outcome is MeasurementOutcome.AT_LEAST and delay.value == 0.5
    assert delay.samples == [] and "auth timeout" in delay.note
    assert took < 3.0  # one sample, not three


def test_a_wrong_password_accepted_is_not_measured() -> None:
    with scripted({"PASS": b"+OK welcome\r\n"}) as server:
        found = measured(server.port)
    assert found[FAILED_LOGIN_DELAY].outcome is MeasurementOutcome.NOT_MEASURED
    assert found[FAILED_LOGIN_DELAY].note == "the wrong password was accepted"


def test_a_refused_user_is_not_measured() -> None:
    with scripted({f"USER {MAIN.user}": b"-ERR no such user\r\n"}) as server:
        found = measured(server.port)
    delay = found[FAILED_LOGIN_DELAY]
    assert delay.value is None and "USER alice answered" in delay.note


# -- info.bare-lf-line-end (security catalogue R08) -------------------------------


def crlf_only(raw: bytes, state: dict[str, int]) -> bytes | None:
    """Wire behaviour of a server that ends commands at CRLF only: the part
    before a bare LF gets no reply; the line it belongs to, one -ERR."""
    if not raw.endswith(b"\r\n"):
        state["pending"] = 1
        return b""
    if state.pop("pending", 0):
        return b"-ERR unknown command\r\n"
    return None


def test_a_server_that_ends_commands_at_a_bare_lf_runs_two_commands() -> None:
    with reference() as server:  # the reference server is lenient here (docs)
        found = measured(server.port)[BARE_LF]
    assert found.outcome is MeasurementOutcome.MEASURED and found.value == 2
    assert "a bare LF ended 'NOOP'" in found.note and "STAT ran ('+OK N N')" in found.note


def test_a_server_that_ends_commands_at_crlf_only_runs_one() -> None:
    with scripted(rule=crlf_only) as server:
        found = measured(server.port)[BARE_LF]
        assert b"NOOP" in server.received and b"STAT" in server.received
    assert found.outcome is MeasurementOutcome.MEASURED and found.value == 1
    assert found.note == "'NOOP<LF>STAT' was one line, answered '-ERR unknown command'"


def test_the_bare_lf_measurement_needs_a_login_and_says_so() -> None:
    with scripted({f"PASS {MAIN.password}": b"-ERR [AUTH] no\r\n"}) as server:
        found = measured(server.port)[BARE_LF]
    assert found.value is None
    assert found.note == "the login (PASS) was answered '-ERR [AUTH] no'"


def test_silence_after_the_bare_lf_is_bounded_and_not_a_number() -> None:
    with scripted({"STAT": STALL}) as server:
        started = time.monotonic()
        found = measured(server.port, read_timeout=0.5)[BARE_LF]
    assert found.value is None and "reply 2 to" in found.note
    assert time.monotonic() - started < 15


# -- info.connections-per-address (security catalogue C03) --------------------------


@pytest.mark.parametrize("cap", [1, 3])
def test_the_reference_per_address_cap_is_measured(cap: int) -> None:
    with reference(per_address_cap=cap) as server:
        found = measured(server.port)[CONNECTIONS]
    assert found.outcome is MeasurementOutcome.MEASURED and found.value == cap
    assert f"connection {cap + 1}:" in found.note and "too many connections" in found.note
    assert found.note.endswith("a new connection after closing them all was greeted")


def test_no_per_address_cap_is_at_least_the_bound() -> None:
    with reference() as server:
        found = measured(server.port)[CONNECTIONS]
    assert found.outcome is MeasurementOutcome.AT_LEAST and found.value == MAX_CONNECTIONS


# -- whole runs ------------------------------------------------------------------


def test_an_unreachable_target_is_not_measured_and_says_why() -> None:
    server = ScriptedServer()  # bound, never accepting: then closed
    port = server.port
    server.stop()
    found = measured(port, read_timeout=0.5)
    assert all(m.outcome is MeasurementOutcome.NOT_MEASURED for m in found.values())
    assert all("fresh connection failed" in m.note for m in found.values())


def test_skipped_lists_every_measurement_with_the_reason() -> None:
    found = skipped("--no-measure")
    assert [m.id for m in found] == list(MEASUREMENT_IDS)
    assert all(m.value is None and m.summary() == "not measured: --no-measure" for m in found)


def test_each_line_length_and_each_login_gets_a_fresh_connection() -> None:
    with scripted(rule=closes_above(1000)) as server:
        measured(server.port)
        lines = [line for line in server.received if line.startswith(b"NOOP ")]
        assert len(lines) == len(set(map(len, lines))) >= 10  # each length once
        # one per line length, one for the unknown commands, one per wrong
        # password, one for the bare LF, the held ones and the one after them
        assert server.connections == len(lines) + 1 + 3 + 1 + MAX_CONNECTIONS + 1
