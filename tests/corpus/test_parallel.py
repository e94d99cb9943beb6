"""`--jobs`: scenarios run concurrently on disjoint account pools give the
verdicts of a serial run, against the reference and against faulty servers."""

from __future__ import annotations

import tempfile
from pathlib import Path

import harness
import pytest
from faults import FAULTS

from conformance.core.config import RunConfig
from conformance.core.fixture import load_fixture
from conformance.pop3.engine import run_suite
from reference_server.pop3.protocol import LoginMethod, Pop3Session, SessionConfig, UserDirectory
from reference_server.pop3.server import Pop3Server, ServerHandle, ServerSettings
from reference_server.store.maildrop import MaildirStore

POOLS = 4
# Not chosen: faults whose effect depends on other connections interleaving
# (apop-broken-login keys APOP on the latest greeting sent to anyone): under
# --jobs they really do fail more, which is a finding, not a suite difference.
CHOSEN = ["dele-immediate", "no-dot-stuffing", "octets-over-lf", "commit-on-drop", "uidl-unstable"]


def _pooled_server(fault_name: str | None, root: Path) -> ServerHandle:
    fault = next((f for f in FAULTS if f.name == fault_name), None)
    users = UserDirectory()
    for account in load_fixture().accounts.values():
        method = LoginMethod.APOP if account.login == "apop" else LoginMethod.PASS
        for n in range(1, POOLS + 1):
            users.set(f"{account.user}{n}", account.password, method)
    store_class = MaildirStore
    if fault is not None and fault.maildrop is not None:
        store_class = type("FaultStore", (MaildirStore,), {"maildrop_class": fault.maildrop})
    session = fault.session if fault is not None else Pop3Session
    server = Pop3Server(
        store_class(str(root / "{user}")),
        users,
        session_class=session,
        settings=ServerSettings(session_config=SessionConfig(enable_apop=True, enable_last=True)),
    )
    return ServerHandle(server, "127.0.0.1", 0)


def _verdicts(fault_name: str | None, jobs: int) -> dict[str, str]:
    fault = next((f for f in FAULTS if f.name == fault_name), None)
    scenarios = harness.select(fault.select) if fault else list(harness.corpus())
    with tempfile.TemporaryDirectory(prefix="mailspec-jobs-") as tmp:
        handle = _pooled_server(fault_name, Path(tmp))
        try:
            accounts = {
                role: {"user": f"{a.user}{{n}}", "password": a.password}
                for role, a in load_fixture().accounts.items()
            }
            config = RunConfig(
                host=handle.host,
                port=handle.port,
                provision=f"maildir:{tmp}/{{user}}",
                read_timeout=harness.READ_TIMEOUT,
                auth_timeout=harness.READ_TIMEOUT,
                accounts=accounts,
                pool=POOLS,
                autologout=600,
            )
            run = run_suite(scenarios, config, jobs=jobs)
        finally:
            handle.close()
    return {
        # verdict, and where it is pinned (values in messages may differ:
        # session counters, timestamps)
        r.scenario_id: f"{r.verdict} "
        + " ".join(f"step {f.step} {f.requirement}" for f in r.failures)
        for r in run.results
    }


@pytest.mark.parametrize("fault_name", [None, *CHOSEN], ids=["reference", *CHOSEN])
def test_parallel_verdicts_equal_serial_verdicts(fault_name: str | None) -> None:
    if fault_name is not None and not any(f.name == fault_name for f in FAULTS):
        pytest.fail(f"no fault named {fault_name}")
    serial = _verdicts(fault_name, 1)
    assert serial, "nothing ran"
    assert _verdicts(fault_name, POOLS) == serial
