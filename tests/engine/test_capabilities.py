"""Capabilities are learned once per run: CAPA in both states, the APOP
timestamp, LAST, and TOP/UIDL probes when CAPA is refused."""

from __future__ import annotations

from pathlib import Path

from engine_fakes import config_for, run_text, scripted, small_fixture, steps

from conformance.core.results import Verdict
from conformance.pop3.engine import Runner

CAPA_AUTH = b"+OK\r\nUSER\r\nsasl PLAIN\r\nSTLS\r\n.\r\n"
CAPA_TRANS = b"+OK\r\nUSER\r\nTOP\r\nPIPELINING\r\n.\r\n"


def learn(replies: dict[str, bytes], greeting: bytes = b"+OK hi <9.9@x>\r\n") -> Runner:
    with scripted(replies, greeting=greeting) as server:
        with Runner(config_for(server, capabilities="auto"), fixture=small_fixture()) as runner:
            return runner


def test_capa_in_both_states_and_pseudo_capabilities() -> None:
    sent: list[bytes] = []
    with scripted({"CAPA": CAPA_AUTH, "LAST": b"+OK 0\r\n"}) as server:
        # second CAPA (after login) answers differently
        original = server._perform

        def perform(conn, reply):  # type: ignore[no-untyped-def]
            if reply is CAPA_AUTH and sent.count(b"CAPA") == 1:
                reply = CAPA_TRANS
            if reply is CAPA_AUTH:
                sent.append(b"CAPA")
            return original(conn, reply)

        server._perform = perform  # type: ignore[method-assign]
        with Runner(config_for(server, capabilities="auto"), fixture=small_fixture()) as runner:
            fingerprint = runner.fingerprint
    assert fingerprint.capa_authorization == ["USER", "sasl PLAIN", "STLS"]
    assert fingerprint.capa_transaction == ["USER", "TOP", "PIPELINING"]
    assert fingerprint.capabilities == [
        "APOP", "CAPA", "LAST", "PIPELINING", "SASL", "SASL-PLAIN", "STLS", "TOP", "USER",
    ]  # fmt: skip
    assert fingerprint.greeting == "+OK scripted POP3 ready <1.2@test>"


def test_without_capa_top_and_uidl_are_probed() -> None:
    runner = learn(
        {"CAPA": b"-ERR what\r\n", "LAST": b"-ERR no\r\n",
         "TOP 1 0": b"+OK\r\nSubject: one\r\n\r\n.\r\n", "UIDL 1": b"-ERR no\r\n"},
        greeting=b"+OK plain old server\r\n",
    )  # fmt: skip
    assert runner.fingerprint.capabilities == ["TOP", "USER"]
    assert runner.fingerprint.capa_authorization is None


def test_needs_skip_explains_a_failed_probe(tmp_path: Path) -> None:
    replies = {"CAPA": b"-ERR what\r\n", "UIDL 1": b"-ERR no\r\n"}
    with scripted(replies) as server:
        result = run_text(
            tmp_path, server, steps("open: a", "S: +OK"), extra="    needs: [UIDL]\n",
            capabilities="auto",
        )  # fmt: skip
    assert result.verdict is Verdict.SKIP
    assert result.message == "target lacks UIDL (no CAPA, and the probe did not find it)"
