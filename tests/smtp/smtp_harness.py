"""Runs the SMTP corpus against a (possibly faulty) reference SMTP server
started in-process, with STARTTLS offered (a trustme certificate) and the
engine delivering its verdicts from the same Maildir root the server
writes. Results are cached per fault for the whole pytest session (the
"every scenario seen failing" test reuses them)."""

from __future__ import annotations

import fnmatch
import ssl
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import cache
from pathlib import Path

import trustme
from smtp_faults import FAULTS, Fault

import conformance.smtp.scenario  # noqa: F401  (registers the SMTP steps)
from conformance.core.config import RunConfig
from conformance.core.fixture import load_fixture
from conformance.core.results import ScenarioResult, Verdict
from conformance.core.scenario import Scenario, load_scenarios
from conformance.smtp.engine import SmtpRunner
from reference_server.smtp.protocol import SmtpConfig
from reference_server.smtp.server import SmtpServer, SmtpServerHandle, SmtpSettings
from reference_server.store.maildrop import MaildirStore
from reference_server.users import UserDirectory

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios" / "smtp"
DOMAIN = "example.test"
READ_TIMEOUT = 3.0


@cache
def corpus() -> tuple[Scenario, ...]:
    return tuple(load_scenarios([SCENARIO_DIR], "smtp"))


def quick_corpus() -> list[Scenario]:
    """The corpus without the slow tier (idles of minutes, `--slow`)."""
    return [s for s in corpus() if not s.slow]


def select(patterns: list[str]) -> list[Scenario]:
    return [s for s in corpus() if any(fnmatch.fnmatch(s.id, p) for p in patterns)]


@cache
def certificates() -> tuple[ssl.SSLContext, str]:
    """One CA for the whole test session: the server's context, the CA file."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = Path(tempfile.mkdtemp(prefix="mailspec-smtp-ca-")) / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    return context, str(ca_file)


def start(fault: Fault | None, root: Path, *, tls: bool = True) -> SmtpServerHandle:
    fault = fault or Fault("reference", "", {})
    users = UserDirectory({a.user: a.password for a in load_fixture().accounts.values()})
    config = replace(SmtpConfig(domain=DOMAIN), **fault.config)
    settings = SmtpSettings(
        config=config,
        tls_context=certificates()[0] if tls else None,
        command_timeout_seconds=fault.command_timeout,
    )
    server = fault.server(
        MaildirStore(str(root / "{user}")), users, session_class=fault.session, settings=settings
    )
    return SmtpServerHandle(server, "127.0.0.1", 0)


def run_against(
    fault: Fault | None, scenarios: list[Scenario], *, tls: str = "stls"
) -> dict[str, ScenarioResult]:
    """tls: stls (STARTTLS offered and probed: every scenario runs) or plain
    (no certificate: the STARTTLS/AUTH scenarios SKIP)."""
    with tempfile.TemporaryDirectory(prefix="mailspec-smtp-corpus-") as tmp:
        root = Path(tmp)
        handle = start(fault, root, tls=tls == "stls")
        try:
            config = RunConfig(
                host=handle.host,
                port=handle.port,
                protocol="smtp",
                tls=tls,  # type: ignore[arg-type]
                tls_ca=certificates()[1],
                smtp_domain=DOMAIN,
                smtp_delivery=f"maildir:{root}/{{user}}",
                smtp_delivery_wait=1.0,
                read_timeout=READ_TIMEOUT,
                auth_timeout=READ_TIMEOUT,
                # the slow tier: faults with a short command timer run it in
                # seconds; `timeout: autologout` waits for that timer
                slow=bool(fault and fault.slow),
                autologout=max(1, round(fault.command_timeout)) if fault else 300,
            )
            with SmtpRunner(config) as runner:
                return {s.id: runner.run(s) for s in scenarios}
        finally:
            handle.close()


def caught(result: ScenarioResult) -> bool:
    return result.verdict in (Verdict.FAIL, Verdict.WARN)


@cache
def fault_results() -> dict[str, dict[str, ScenarioResult]]:
    def one(fault: Fault) -> tuple[str, dict[str, ScenarioResult]]:
        scenarios = select(fault.select or list(fault.catches))
        for _attempt in (1, 2):  # a run that could not start (a busy machine) is retried once
            try:
                return fault.name, run_against(fault, scenarios, tls=fault.tls)
            except Exception as exc:  # recorded as no results, shown by the tests
                error = exc
        return fault.name, {"__error__": error}  # type: ignore[dict-item]

    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(pool.map(one, FAULTS))


__all__ = ["SmtpServer", "caught", "corpus", "fault_results", "run_against", "select"]
