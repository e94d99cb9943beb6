"""Runs the scenario corpus against a (possibly faulty) reference server
started in-process, with the fixture written by MaildirProvisioner into the
same Maildir root the server reads. Results are cached per fault for the
whole pytest session (the "every scenario seen failing" test reuses them)."""

from __future__ import annotations

import asyncio
import fnmatch
import ssl
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import trustme
from faults import FAULTS, Fault, NoLockStore

from conformance.core.config import RunConfig
from conformance.core.fixture import load_fixture
from conformance.core.results import ScenarioResult, Verdict
from conformance.core.scenario import Scenario, load_scenarios
from conformance.pop3.engine import Runner
from reference_server.pop3.protocol import LoginMethod, SessionConfig, UserDirectory
from reference_server.pop3.server import Pop3Server, ServerHandle, ServerSettings
from reference_server.store.maildrop import MaildirStore

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios"
READ_TIMEOUT = 3.0


@cache
def corpus() -> tuple[Scenario, ...]:
    return tuple(load_scenarios([SCENARIO_DIR / "pop3"]))


def select(patterns: list[str]) -> list[Scenario]:
    return [s for s in corpus() if any(fnmatch.fnmatch(s.id, p) for p in patterns)]


class FarewellServer(Pop3Server):
    """Sends '-ERR' before closing on autologout (fault for TIMER-05)."""

    async def _converse(self, session, reader, writer):  # type: ignore[override]
        writer.write(session.greeting())
        await writer.drain()
        autologout = self.settings.autologout_seconds
        while not session.closed:
            try:
                async with asyncio.timeout(autologout):
                    data = await reader.read(65536)
            except TimeoutError:
                writer.write(b"-ERR autologout\r\n")
                await writer.drain()
                session.autologout()
                return
            if not data:
                return
            replies = session.receive_data(data)
            if replies:
                writer.write(replies)
                await writer.drain()


@cache
def certificates() -> tuple[ssl.SSLContext, str]:
    """One CA for the whole test session: the server's context, the CA file."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = Path(tempfile.mkdtemp(prefix="mailspec-corpus-ca-")) / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    return context, str(ca_file)


def start(fault: Fault | None, root: Path, *, implicit_tls: bool = False) -> ServerHandle:
    fault = fault or Fault("reference", "", [], [])  # APOP on, the apop role an APOP user
    users = UserDirectory()
    for account in load_fixture().accounts.values():
        method = LoginMethod.APOP if account.login == "apop" else LoginMethod.PASS
        users.set(account.user, account.password, method)
    template = str(root / "{user}")
    store = NoLockStore(template) if not fault.store_lock else MaildirStore(template)
    if fault.maildrop is not None:
        store_class = type("FaultStore", (MaildirStore,), {"maildrop_class": fault.maildrop})
        store = store_class(template)
    settings = ServerSettings(
        autologout_seconds=fault.autologout,
        session_config=SessionConfig(
            enable_apop=fault.apop,
            enable_last=True,
            login_delay_seconds=int(fault.extra.get("login_delay", 0)),  # type: ignore[call-overload]
            expire_days=fault.extra.get("expire_days"),  # type: ignore[arg-type]
            require_tls=bool(fault.extra.get("require_tls", False)),
        ),
        tls_context=certificates()[0],  # STLS offered: the stls scenarios run
    )
    server_class: type[Pop3Server] = Pop3Server
    if fault.extra.get("farewell"):
        server_class = FarewellServer
    elif isinstance(fault.extra.get("server"), type):
        server_class = fault.extra["server"]  # type: ignore[assignment]
    server = server_class(store, users, session_class=fault.session, settings=settings)
    return ServerHandle(server, "127.0.0.1", 0, implicit_tls_port=0 if implicit_tls else None)


def run_against(
    fault: Fault | None,
    scenarios: list[Scenario],
    *,
    slow: bool = False,
    tls: str = "plain",
    measure: bool = False,
) -> dict[str, ScenarioResult]:
    """Verdicts of `scenarios` against `fault` (None: the reference); the
    INFO measurements only with `measure` (tests/corpus/test_measurements.py
    shows they change no verdict)."""
    with tempfile.TemporaryDirectory(prefix="mailspec-corpus-") as tmp:
        root = Path(tmp)
        handle = start(fault, root, implicit_tls=tls == "implicit")
        try:
            exact = fault.exact if fault else True
            config = RunConfig(
                host=handle.host,
                port=handle.tls_port if tls == "implicit" else handle.port,  # type: ignore[arg-type]
                tls=tls,  # type: ignore[arg-type]
                tls_ca=certificates()[1],
                provision=f"maildir,exact={'yes' if exact else 'no'}:{root}/{{user}}",
                read_timeout=READ_TIMEOUT,
                auth_timeout=READ_TIMEOUT,
                slow=slow or bool(fault and fault.slow),
                # the operator's statement of the target's timer (`timeout: autologout`)
                autologout=max(1, round(fault.autologout)) if fault else 600,
                measure=measure,
            )
            with Runner(config) as runner:
                return {s.id: runner.run(s) for s in scenarios}
        finally:
            handle.close()


def caught(result: ScenarioResult) -> bool:
    return result.verdict in (Verdict.FAIL, Verdict.WARN)


@cache
def fault_results() -> dict[str, dict[str, ScenarioResult]]:
    def one(fault: Fault) -> tuple[str, dict[str, ScenarioResult]]:
        try:
            tls = str(fault.extra.get("tls", "plain"))
            return fault.name, run_against(fault, select(fault.select), tls=tls)
        except Exception as exc:  # the run could not start: recorded as no results
            return fault.name, {"__error__": exc}  # type: ignore[dict-item]

    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(pool.map(one, FAULTS))
