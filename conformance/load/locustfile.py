"""The Locust side of `mailspec load` (docs/load.md): `python -m locust -f
THIS_FILE`, started by conformance/load/runner.py, never imported by the suite.

One `Pop3User` owns one load account for its life (accounts are split
between workers by worker index, so no two sessions share a maildrop). Each
task is one POP3 session of a flow drawn by the configured weights
(conformance/load/client.py). Every command is a Locust request named after
the command (per-command percentiles); a problem is a failure whose text is
its class. The coordinating process (master, or the only process) keeps a
ledger of every account's expected maildrop, fed by the users' messages,
and writes it with the statistics to the report file that load.py reads.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust import User, between, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from conformance.core.fixture import Fixture, load_fixture
from conformance.load.client import (
    AccountState,
    Client,
    FlowContext,
    LoadError,
    load_accounts,
    run_flow,
)
from conformance.load.mix import parse_mix
from conformance.provision import NoneProvisioner, Provisioner, make_provisioner

LEDGER_MESSAGE = "mailspec_ledger"
FINDING_MESSAGE = "mailspec_finding"
STOP_MESSAGE = "mailspec_stop"  # master -> workers: finish your sessions
STOPPED_MESSAGE = "mailspec_stopped"  # worker -> master: done, stats and ledger sent
STOP_GRACE_SECONDS = 15.0  # on top of --stop-timeout, for the workers to report
MAX_EXAMPLES_PER_KIND = 3
PERCENTILES = (0.5, 0.95, 0.99)
THINK_SECONDS = (0.0, 0.1)  # between two sessions of one user


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    group = parser  # include_in_web_ui is an option of the parser itself
    group.add_argument("--mailspec-accounts", type=int, default=1, include_in_web_ui=False)
    group.add_argument("--mailspec-provision", default="none", include_in_web_ui=False)
    group.add_argument("--mailspec-exact", default="yes", include_in_web_ui=False)
    group.add_argument("--mailspec-fixture", default="", include_in_web_ui=False)
    group.add_argument("--mailspec-large", default="no", include_in_web_ui=False)
    group.add_argument("--mailspec-mix", default="", include_in_web_ui=False)
    group.add_argument("--mailspec-timeout", type=float, default=10.0, include_in_web_ui=False)
    group.add_argument("--mailspec-duration", type=float, default=0.0, include_in_web_ui=False)
    group.add_argument("--mailspec-report", default="", include_in_web_ui=False)


@dataclass
class ProcessState:
    """What one Locust process knows: its slice of the accounts, the mix;
    the coordinator also the ledger and the examples of each finding."""

    fixture: Fixture | None = None
    free: list[AccountState] = field(default_factory=list)
    provisioner: Provisioner = field(default_factory=NoneProvisioner)
    mix: dict[str, int] = field(default_factory=dict)
    examples: dict[str, int] = field(default_factory=dict)
    ledger: dict[str, dict[str, Any]] = field(default_factory=dict)
    findings: dict[str, list[str]] = field(default_factory=dict)
    started: float = 0.0
    stopped: float = 0.0
    stopped_workers: set[str] = field(default_factory=set)


Process = ProcessState()


def _options(environment: Environment) -> Any:
    assert environment.parsed_options is not None
    return environment.parsed_options


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message(STOP_MESSAGE, _on_stop, concurrent=True)
    elif runner is not None:
        runner.register_message(LEDGER_MESSAGE, _on_ledger)
        runner.register_message(FINDING_MESSAGE, _on_finding)
        runner.register_message(STOPPED_MESSAGE, _on_stopped)


def _on_stop(environment: Environment, msg: Any, **_: Any) -> None:
    """Worker: stop the users (each finishes its session, bounded by
    --stop-timeout), send the last statistics, then say so. Locust's own
    stop would drop this worker from the master until its stop timeout
    passed, and the quit that ends the run would not reach it."""
    runner = environment.runner
    assert isinstance(runner, WorkerRunner)
    runner.stop()
    runner._send_stats()  # the figures of the sessions finished while stopping
    runner.send_message(STOPPED_MESSAGE, {"index": runner.worker_index})


def _on_stopped(environment: Environment, msg: Any, **_: Any) -> None:
    Process.stopped_workers.add(msg.node_id)


def _on_ledger(environment: Environment, msg: Any, **_: Any) -> None:
    Process.ledger[msg.data["user"]] = msg.data


def _on_finding(environment: Environment, msg: Any, **_: Any) -> None:
    examples = Process.findings.setdefault(msg.data["kind"], [])
    if len(examples) < MAX_EXAMPLES_PER_KIND and msg.data["detail"] not in examples:
        examples.append(msg.data["detail"])


@events.test_start.add_listener
def _test_start(environment: Environment, **_: Any) -> None:
    """Every process: its account slice. The coordinator: the duration timer."""
    options = _options(environment)
    runner = environment.runner
    Process.mix = parse_mix(options.mailspec_mix)
    Process.fixture = load_fixture(options.mailspec_fixture or None)
    accounts = load_accounts(
        Process.fixture, options.mailspec_accounts, large=options.mailspec_large == "yes"
    )
    workers, index = 1, 0
    if isinstance(runner, WorkerRunner):
        workers, index = max(1, int(options.expect_workers or 1)), max(0, runner.worker_index)
    Process.free = [AccountState(a) for n, a in enumerate(accounts) if n % workers == index]
    Process.examples = {}
    if options.mailspec_provision and options.mailspec_provision != "none":
        target = _target(environment)
        Process.provisioner = make_provisioner(options.mailspec_provision, target=target)
    if not isinstance(runner, WorkerRunner):
        Process.started = time.time()
        if options.mailspec_duration > 0:
            gevent.spawn_later(options.mailspec_duration, _finish, environment)


def _finish(environment: Environment) -> None:
    """End of the run: stop the users (they finish their session, bounded by
    --stop-timeout), then quit when headless."""
    runner = environment.runner
    assert runner is not None
    Process.stopped = time.time()
    if isinstance(runner, MasterRunner):
        clients = {client.id for client in runner.clients.all}
        for client in clients:
            runner.send_message(STOP_MESSAGE, client_id=client)
        give_up = time.monotonic() + environment.stop_timeout + STOP_GRACE_SECONDS
        while not clients <= Process.stopped_workers and time.monotonic() < give_up:
            gevent.sleep(0.1)
    runner.stop()
    if _options(environment).headless:
        runner.quit()


def _target(environment: Environment) -> tuple[str, int]:
    host = (environment.host or "").removeprefix("pop3://").rstrip("/")
    name, _, port = host.rpartition(":")
    return name.strip("[]"), int(port)


@events.quitting.add_listener
def _quitting(environment: Environment, **_: Any) -> None:
    options = _options(environment)
    if isinstance(environment.runner, WorkerRunner) or not options.mailspec_report:
        return
    environment.process_exit_code = 0  # load.py judges the run
    Path(options.mailspec_report).write_text(json.dumps(report(environment), indent=1))


def report(environment: Environment) -> dict[str, Any]:
    stats = environment.stats
    entries = []
    for entry in stats.entries.values():
        entries.append(
            {
                "name": entry.name,
                "type": entry.method,
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                "average_ms": entry.avg_response_time,
                "percentiles_ms": {
                    str(p): entry.get_response_time_percentile(p) if entry.num_requests else 0
                    for p in PERCENTILES
                },
            }
        )
    errors = [
        {"name": e.name, "error": str(e.error), "occurrences": e.occurrences}
        for e in stats.errors.values()
    ]
    stopped = Process.stopped or time.time()
    workers = 0
    if isinstance(environment.runner, MasterRunner):
        workers = environment.runner.worker_index_max
    return {
        "seconds": max(0.0, stopped - Process.started) if Process.started else 0.0,
        "workers": workers,
        "entries": entries,
        "errors": errors,
        "findings": Process.findings,
        "ledger": Process.ledger,
    }


class Pop3User(User):
    """A POP3 mail client, one session per task."""

    wait_time = between(*THINK_SECONDS)
    host = "pop3://127.0.0.1:110"

    def on_start(self) -> None:
        self.state: AccountState | None = Process.free.pop() if Process.free else None
        self.rng = random.Random()

    def on_stop(self) -> None:
        if self.state is not None:
            Process.free.append(self.state)
            self.state = None

    @task
    def session(self) -> None:
        options = _options(self.environment)
        if self.state is None:
            self._record("session", 0.0, 0, LoadError("no free load account", ""))
            self.stop()
            return
        flows, weights = zip(*Process.mix.items(), strict=True)
        flow = self.rng.choices(flows, weights)[0]
        host, port = _target(self.environment)
        client = Client(
            host,
            port,
            self._record,
            timeout=options.mailspec_timeout,
            byte_exact=options.mailspec_exact == "yes",
        )
        context = FlowContext(client, self.state, self._ledger, self.rng, gevent.sleep)
        started = time.perf_counter()
        problem = run_flow(flow, context)
        self._record(f"session {flow}", time.perf_counter() - started, 0, problem)
        self._refill_if_empty()

    def _refill_if_empty(self) -> None:
        state = self.state
        if state is None or state.remaining or state.pending:
            return
        if isinstance(Process.provisioner, NoneProvisioner):
            return
        started = time.perf_counter()
        try:
            Process.provisioner.reset(state.account)
        except Exception as exc:  # a store that cannot be written: an error of the run
            self._record("provision", time.perf_counter() - started, 0, LoadError(
                "provision failed", f"{state.account.user}: {exc}"
            ))  # fmt: skip
            return
        state.refill()
        self._ledger(state)

    def _ledger(self, state: AccountState) -> None:
        runner = self.environment.runner
        if runner is not None:
            runner.send_message(LEDGER_MESSAGE, state.ledger())

    def _record(self, name: str, seconds: float, octets: int, error: LoadError | None) -> None:
        self.environment.events.request.fire(
            request_type="POP3",
            name=name,
            response_time=seconds * 1000.0,
            response_length=octets,
            exception=error,
            context={},
        )
        if error is not None and error.detail:
            seen = Process.examples.get(error.kind, 0)
            if seen < MAX_EXAMPLES_PER_KIND and self.environment.runner is not None:
                Process.examples[error.kind] = seen + 1
                self.environment.runner.send_message(
                    FINDING_MESSAGE, {"kind": error.kind, "detail": error.detail}
                )
