"""`mailspec load`: correctness under load, on Locust (docs/load.md).

This process orchestrates; Locust (`python -m locust -f
conformance/load/locustfile.py`, its own process, gevent inside) generates the
load. Without --target the embedded reference server is started as its
own process (conformance/embedded.py) with load accounts msload1..N, each a
copy of the fixture's main messages. Before the run every account is
written (when a provisioner can write) or checked; after it every
maildrop is verified against the ledger the Locust coordinator kept:
nothing lost, nothing duplicated, nothing deleted came back.

Exit codes as `mailspec run`: 0 = sessions ran and nothing was found;
1 = protocol findings or a maildrop that does not verify; 3 = the run could
not judge (no session completed, errors only, Locust failed); 2 = usage.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.core.errors import ConfigError, MailspecError, TargetUnreachable
from conformance.load.mix import format_mix, parse_mix

if TYPE_CHECKING:  # imported where used: `mailspec --help` builds this parser
    from conformance.core.fixture import Account, FixtureMessage
    from conformance.embedded import EmbeddedServer
    from conformance.pop3.session import Pop3Session as Session

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
DEFAULT_USERS = 10
DEFAULT_SPAWN_RATE = 10.0
DEFAULT_DURATION = 20.0
DEFAULT_MASTER_PORT = 5557
STOP_TIMEOUT_SECONDS = 15  # a user finishes its session at the end, bounded
EXPECT_WORKERS_MAX_WAIT = 60  # seconds a master waits for its workers
LOCUST_GRACE_SECONDS = 120  # on top of duration + stop timeout + waiting for workers
VERIFY_TIMEOUT_SECONDS = 10.0
VERIFY_IN_USE_RETRIES = 40
PERCENTILE_KEYS = ("0.5", "0.95", "0.99")


class LoadUnavailable(MailspecError):
    exit_code = 2


# --------------------------------------------------------------------------
# Arguments (cli.py adds these to its `load` sub-parser)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def _mix_arg(text: str) -> dict[str, int]:
    try:
        return parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(p: argparse.ArgumentParser, target_type: Any) -> None:
    p.add_argument("--target", type=target_type, metavar="HOST:PORT")
    p.add_argument("--users", type=_positive_int, default=DEFAULT_USERS, metavar="N")
    p.add_argument("--spawn-rate", type=_positive_float, default=DEFAULT_SPAWN_RATE, metavar="R")
    p.add_argument(
        "--duration", type=_positive_float, default=DEFAULT_DURATION, metavar="S",
        help=f"seconds of load (default {DEFAULT_DURATION:.0f})",
    )  # fmt: skip
    p.add_argument(
        "--mix", type=_mix_arg, default=parse_mix(""), metavar="FLOW=W,...",
        help=f"flow weights (default {format_mix(parse_mix(''))})",
    )  # fmt: skip
    p.add_argument(
        "--accounts", type=_positive_int, metavar="N",
        help="load accounts msload1..N (default: users, rounded up per worker, plus one each)",
    )  # fmt: skip
    p.add_argument(
        "--provision", metavar="SPEC",
        help="how to write the load accounts of a --target (maildir:, mbox:, smtp:, command:); "
        "default none: they must already hold the fixture's main messages",
    )  # fmt: skip
    p.add_argument("--large", action="store_true", help="include the fixture's 1 MB message")
    p.add_argument("--timeout", type=_positive_float, default=10.0, metavar="S")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--headless", action="store_true", help="no web UI (the default)")
    mode.add_argument("--web", action="store_true", help="Locust's web UI on 127.0.0.1:8089")
    role = p.add_mutually_exclusive_group()
    role.add_argument("--master", action="store_true", help="coordinate --expect-workers workers")
    role.add_argument("--worker", action="store_true", help="take load from --master-host")
    p.add_argument("--expect-workers", type=_positive_int, default=1, metavar="N")
    p.add_argument("--master-host", metavar="HOST", help="the master's address (with --worker)")
    p.add_argument("--master-port", type=_positive_int, default=DEFAULT_MASTER_PORT, metavar="P")
    p.add_argument(
        "--master-bind", default="127.0.0.1", metavar="HOST",
        help="where a --master listens for workers (default loopback only)",
    )  # fmt: skip
    p.add_argument("--csv", metavar="PREFIX", help="Locust's CSV statistics, PREFIX_stats.csv ...")
    p.add_argument("--html", type=Path, metavar="FILE", help="Locust's HTML report")
    p.add_argument("-v", "--verbose", action="store_true", help="Locust's INFO log and live stats")


# --------------------------------------------------------------------------
# The run


@dataclass
class Verification:
    checked: int = 0
    problems: list[str] = field(default_factory=list)


def account_count(users: int, workers: int) -> int:
    return workers * math.ceil(users / workers) + workers


def locust_available() -> bool:
    return importlib.util.find_spec("locust") is not None


def cmd_load(args: argparse.Namespace) -> int:
    if not locust_available():
        raise LoadUnavailable(
            "load: Locust is not installed; install the extra: pip install 'mailspec[load]'"
        )
    if args.worker:
        if not args.master_host:
            raise ConfigError("--worker: --master-host HOST is required")
        return run_worker(args)
    if args.master_host:
        raise ConfigError("--master-host: only with --worker")
    if args.provision and args.target is None:
        raise ConfigError("--provision: only with --target (the embedded server is provisioned)")
    from conformance.core.config import RunConfig
    from conformance.core.fixture import load_fixture
    from conformance.embedded import EmbeddedServer
    from conformance.load.client import load_accounts, load_fixture_of

    fixture = load_fixture()
    workers = args.expect_workers if args.master else 1
    accounts = load_accounts(fixture, args.accounts or account_count(args.users, workers),
                             large=args.large)  # fmt: skip
    embedded: EmbeddedServer | None = None
    try:
        if args.target is None:
            embedded = EmbeddedServer(load_fixture_of(accounts), RunConfig())
            host, port = start_deaf_to_ctrl_c(embedded)
            assert embedded.provisioner is not None
            provision, exact = f"maildir:{embedded.provisioner.template}", True
        else:
            host, port, *tls = args.target  # cli's --target type: (host, port, TLS mode)
            if tls and tls[0] is not None:
                raise ConfigError("--target: mailspec load speaks plain POP3 only (no pop3s://)")
            provision = args.provision or "none"
            exact = prepare_target(host, port, accounts, provision)
        where = "embedded reference server" if embedded else f"{host}:{port}"
        print(
            f"mailspec load: {where}, {args.users} users, {len(accounts)} accounts, "
            f"{args.duration:g} s, mix {format_mix(args.mix)}",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="mailspec-load-") as tmp:
            report_path = Path(tmp) / "report.json"
            code = run_locust(args, host, port, len(accounts), provision, exact, report_path)
            if not report_path.exists():
                print(f"mailspec load: Locust ended (exit {code}) without a report",
                      file=sys.stderr)  # fmt: skip
                return 3
            report = json.loads(report_path.read_text())
        verification = verify_after(host, port, accounts, report["ledger"], exact=exact)
        return print_summary(report, verification, users=args.users)
    finally:
        if embedded is not None:
            embedded.stop()


def start_deaf_to_ctrl_c(embedded: EmbeddedServer) -> tuple[str, int]:
    """Start the embedded server with SIGINT blocked (the child inherits the
    mask): Ctrl-C ends a --web run, and the server must outlive it for the
    verification; it is stopped with SIGTERM afterwards."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return embedded.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def prepare_target(host: str, port: int, accounts: list[Account], provision: str) -> bool:
    """Write the load accounts when `provision` can write; otherwise check
    that each holds its messages (the operator provisioned them). Returns
    whether the store is byte-exact."""
    from conformance.provision import NoneProvisioner, make_provisioner

    try:
        provisioner = make_provisioner(provision, target=(host, port))
    except Exception as exc:
        raise ConfigError(f"--provision: {exc}") from None
    if not isinstance(provisioner, NoneProvisioner):
        for account in accounts:
            provisioner.reset(account)
        return provisioner.byte_exact
    exact = False  # someone else's delivery path may have added headers
    full = {a.user: {"remaining": [m.name for m in a.messages], "pending": []} for a in accounts}
    before = verify_after(host, port, accounts, full, exact=exact)
    if before.problems:
        raise TargetUnreachable(
            "the load accounts do not hold the fixture's messages before the run "
            f"({len(before.problems)} of {len(accounts)}): {before.problems[0]}"
        )
    return exact


def locust_command(
    args: argparse.Namespace,
    host: str,
    port: int,
    accounts: int,
    provision: str,
    exact: bool,
    report: Path,
) -> list[str]:
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
        "--host", f"pop3://{host}:{port}",
        "--users", str(args.users), "--spawn-rate", f"{args.spawn_rate:g}",
        "--stop-timeout", str(STOP_TIMEOUT_SECONDS),
        "--mailspec-accounts", str(accounts),
        "--mailspec-provision", provision,
        "--mailspec-exact", "yes" if exact else "no",
        "--mailspec-large", "yes" if args.large else "no",
        "--mailspec-mix", format_mix(args.mix),
        "--mailspec-timeout", f"{args.timeout:g}",
        "--mailspec-duration", f"{args.duration:g}",
        "--mailspec-report", str(report),
        "--loglevel", "INFO" if args.verbose else "WARNING",
    ]  # fmt: skip
    if args.web:
        command += ["--web-host", "127.0.0.1", "--autostart"]
    else:
        command += ["--headless"] + ([] if args.verbose else ["--only-summary"])
    if args.master:
        command += [
            "--master", "--expect-workers", str(args.expect_workers),
            "--expect-workers-max-wait", str(EXPECT_WORKERS_MAX_WAIT),
            "--master-bind-host", args.master_bind, "--master-bind-port", str(args.master_port),
        ]  # fmt: skip
    if args.csv:
        command += ["--csv", args.csv]
    if args.html:
        command += ["--html", str(args.html)]
    return command


def run_locust(
    args: argparse.Namespace,
    host: str,
    port: int,
    accounts: int,
    provision: str,
    exact: bool,
    report: Path,
) -> int:
    command = locust_command(args, host, port, accounts, provision, exact, report)
    bound = args.duration + STOP_TIMEOUT_SECONDS + LOCUST_GRACE_SECONDS
    if args.master:
        bound += EXPECT_WORKERS_MAX_WAIT
    if args.web:
        bound = None  # the operator ends a web session (Ctrl-C)
    return _run_bounded(command, bound)


def run_worker(args: argparse.Namespace) -> int:
    """A Locust worker: everything else (target, mix, accounts) comes from
    the master with each spawn."""
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
        "--master-host", args.master_host, "--master-port", str(args.master_port),
        "--loglevel", "INFO" if args.verbose else "WARNING",
    ]  # fmt: skip
    return _run_bounded(command, None)


def _run_bounded(command: list[str], seconds: float | None) -> int:
    process = subprocess.Popen(command)
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        print(f"mailspec load: Locust did not finish within {seconds:.0f} s; stopped it",
              file=sys.stderr)  # fmt: skip
        return 3
    except KeyboardInterrupt:  # Locust got the SIGINT too: it stops and writes its report
        try:
            return process.wait(STOP_TIMEOUT_SECONDS + 15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise KeyboardInterrupt from None


# --------------------------------------------------------------------------
# Verification of the maildrops after the run


def verify_after(
    host: str,
    port: int,
    accounts: list[Account],
    ledger: dict[str, Any],
    *,
    exact: bool,
) -> Verification:
    """Every account holds what the ledger says: the messages not deleted
    (a pending deletion, whose QUIT got no answer, may or may not be
    applied), each once, and no other."""
    result = Verification()
    for account in accounts:
        entry = ledger.get(account.user)
        remaining = [m.name for m in account.messages] if entry is None else entry["remaining"]
        pending = [] if entry is None else entry["pending"]
        problem = verify_account(host, port, account, remaining, pending, exact=exact)
        result.checked += 1
        if problem:
            result.problems.append(f"{account.user}: {problem}")
    return result


def verify_account(
    host: str,
    port: int,
    account: Account,
    remaining: list[str],
    pending: list[str],
    *,
    exact: bool,
) -> str | None:
    from conformance.core.driver import ConnectError
    from conformance.pop3.session import Pop3Session as Session

    try:
        session = Session.connect(
            "verify", host, port, _NoTranscript(), timeout=VERIFY_TIMEOUT_SECONDS
        )
    except ConnectError as exc:
        return f"cannot connect for verification: {exc}"
    try:
        return _verify_session(session, account, remaining, pending, exact=exact)
    finally:
        session.close()


class _NoTranscript:
    def record(self, *_: Any) -> None:
        return None

    def event(self, *_: Any) -> None:
        return None


def _verify_session(
    session: Session,
    account: Account,
    remaining: list[str],
    pending: list[str],
    *,
    exact: bool,
) -> str | None:
    from conformance.core.driver import Outcome, deadline_after

    def command(line: str, multiline: bool = False) -> Any:
        session.send(line.encode() + b"\r\n")
        return session.read_reply(multiline, deadline_after(VERIFY_TIMEOUT_SECONDS))

    def ok(reply: Any) -> bool:
        return reply.outcome is Outcome.COMPLETE and reply.status and reply.status.positive

    if not ok(session.read_reply(False, deadline_after(VERIFY_TIMEOUT_SECONDS))):
        return "no positive greeting"
    for _ in range(VERIFY_IN_USE_RETRIES):
        if not ok(command(f"USER {account.user}")):
            return "USER refused"
        reply = command(f"PASS {account.password}")
        if ok(reply):
            break
        if reply.status is None or b"[IN-USE]" not in reply.status.line:
            return "login refused"
        time.sleep(0.05)
    else:
        return "maildrop still locked after the run"
    listing = command("LIST", multiline=True)
    if not ok(listing):
        return "LIST refused"
    by_name = {m.name: m for m in account.messages}
    found: list[str] = []
    for number in range(1, len(listing.lines) + 1):
        reply = command(f"RETR {number}", multiline=True)
        if not ok(reply):
            return f"RETR {number} refused"
        if reply.findings or session.drain_unsolicited():
            return f"RETR {number} breaks the framing (RFC 1939 §3); not verified"
        found.append(_identify(reply.body, account.messages, exact=exact) or f"unknown#{number}")
    command("RSET")
    command("QUIT")
    counts = Counter(found)
    duplicated = sorted(n for n, c in counts.items() if c > 1)
    unknown = sorted(n for n in counts if n not in by_name)
    lower = Counter(n for n in remaining if n not in pending)
    upper = Counter(remaining)
    lost = sorted((lower - counts).elements())
    back = sorted(n for n in counts if n in by_name and not upper[n])
    problems = []
    if duplicated:
        problems.append(f"duplicated {', '.join(duplicated)}")
    if lost:
        problems.append(f"lost {', '.join(lost)}")
    if back:
        problems.append(f"deleted but still there: {', '.join(back)}")
    if unknown:
        problems.append(f"{len(unknown)} message(s) not from the fixture")
    return "; ".join(problems) or None


def _identify(body: bytes, messages: tuple[FixtureMessage, ...], *, exact: bool) -> str | None:
    from conformance.load.client import content_difference

    for message in messages:
        if content_difference(message.wire, body, byte_exact=exact) is None:
            return message.name
    return None


# --------------------------------------------------------------------------
# Summary


def print_summary(report: dict[str, Any], verification: Verification, *, users: int) -> int:
    from conformance.load.client import is_finding

    entries = report["entries"]
    seconds = report["seconds"] or 1e-9
    sessions = [e for e in entries if e["name"].startswith("session ")]
    commands = [e for e in entries if not e["name"].startswith("session ")]
    total_sessions = sum(e["requests"] for e in sessions)
    failed_sessions = sum(e["failures"] for e in sessions)
    out = print
    out("")
    out("mailspec load summary")
    workers = f", {report['workers']} workers" if report.get("workers") else ""
    out(f"  duration            {report['seconds']:.1f} s, {users} users{workers}")
    out(
        f"  sessions            {total_sessions} ({total_sessions / seconds:.1f}/s), "
        f"{failed_sessions} failed"
    )
    for e in sorted(sessions, key=lambda e: e["name"]):
        out(f"    {e['name'][8:]:<22}{e['requests']:>7}  failed {e['failures']}")
    out("  per command         requests  failed     p50 ms   p95 ms   p99 ms")
    for e in sorted(commands, key=lambda e: e["name"]):
        p = e["percentiles_ms"]
        out(
            f"    {e['name']:<16}{e['requests']:>10}{e['failures']:>8}"
            + "".join(f"{p[k]:>9.1f}" for k in PERCENTILE_KEYS)
        )
    findings: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for error in report["errors"]:
        if error["name"].startswith("session "):
            continue  # the command that failed carries it
        (findings if is_finding(error["error"]) else errors)[error["error"]] += error["occurrences"]
    out("  protocol findings under load" + ("" if findings else ": none"))
    for kind, count in findings.most_common():
        out(f"    {count:>6}  {kind}")
        for example in report["findings"].get(kind, []):
            out(f"            e.g. {example}")
    out("  errors by class" + ("" if errors else ": none"))
    for kind, count in errors.most_common():
        out(f"    {count:>6}  {kind}")
        for example in report["findings"].get(kind, []):
            out(f"            e.g. {example}")
    state = "every maildrop as expected" if not verification.problems else "PROBLEMS"
    out(f"  maildrops verified  {verification.checked} accounts: {state}")
    for problem in verification.problems[:10]:
        out(f"    {problem}")
    if findings or verification.problems:
        out("result: FAIL (the server broke the protocol or lost mail under load)")
        return 1
    if errors or total_sessions == 0 or failed_sessions:
        out("result: ERROR (the load could not be judged completely)")
        return 3
    out("result: PASS")
    return 0
