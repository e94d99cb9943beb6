"""The accounts of a run between scenarios: when to re-provision, when to
verify, and whose fault a changed maildrop is.

Rules (verdict-principles, "How a verdict is pinned"):

* Before a scenario that logs in, each account it uses holds the fixture:
  re-provisioned if a scenario changed it (when the provisioner can), and
  identified by content (`verification.MaildropCheck.identify`) the first
  time and after every re-provisioning. A store that does not hold the
  fixture is an ERROR of set-up; a server that misreports what it holds is
  left to the scenarios that judge that.
* After a scenario that must not commit, its accounts are checked cheaply
  (UIDL and STAT as before). A change is a FAIL of *that* scenario
  (RFC 1939 §6: nothing is removed outside UPDATE; §7 UIDL: ids persist).
* Without a provisioner (`provision: none`) nothing can be restored: a
  scenario that commits SKIPs up front, and one that needs an account a
  faulty scenario changed SKIPs naming it — never an ERROR as collateral.
  So a black-box target gives the same verdicts on every run.
* An account whose login is refused during set-up although its content is
  known (an APOP-only account on a server whose APOP is broken) is not an
  ERROR: the scenarios run, the first `login` that fails is the FAIL of
  the login rule, and later scenarios that depend on that login SKIP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from conformance.core.errors import ProvisionError
from conformance.core.fixture import Account
from conformance.core.results import Failure
from conformance.core.scenario import CommandStep, LoginStep, PipelineStep, Scenario, SendStep
from conformance.core.transcript import Transcript
from conformance.pop3.verification import MaildropCheck, Methods, Signature, VerificationError
from conformance.provision import NoneProvisioner, Provisioner

if TYPE_CHECKING:
    from conformance.core.config import RunConfig

NEEDS_PROVISIONER = (
    "it commits changes to the maildrop and needs a provisioner to restore the account "
    "afterwards (provision: maildir:, mbox:, smtp: or command:); provision: none cannot"
)
#: Which rule a maildrop changed by a non-committing scenario breaks.
DELE_ONLY_MARKS = "POP3-1939-DELE-05"
NO_REMOVAL_WITHOUT_UPDATE = "POP3-1939-UPDATE-02"
UPDATE_REMOVES_ONLY_MARKED = "POP3-1939-UPDATE-04"
UIDS_PERSIST = "POP3-1939-UIDL-08"


@dataclass
class _AccountState:
    needs_reset: bool = True  # never provisioned in this run, or changed since
    written: bool = False  # a provisioner wrote the fixture since the last change
    changed_by: str | None = None  # the scenario that changed it last
    signature: Signature | None = None  # figures at the last verification
    logged_in: bool = False  # its credentials worked in this run
    login_refused: str | None = None  # set-up login refused although content is known
    login_judged_by: str | None = None  # the scenario whose login step failed on it


@dataclass
class Preparation:
    """What set-up concluded: run (both None), SKIP or ERROR with a reason."""

    skip: str | None = None
    error: str | None = None
    unreachable: bool = False


class Mailboxes:
    def __init__(
        self,
        host: str,
        port: int,
        config: RunConfig,
        provisioner: Provisioner,
        accounts: dict[str, Account],
    ) -> None:
        self.host, self.port, self.config = host, port, config
        self.provisioner = provisioner
        self.accounts = accounts
        self.methods = Methods()
        self.state = {role: _AccountState() for role in accounts}

    @property
    def can_restore(self) -> bool:
        return not isinstance(self.provisioner, NoneProvisioner)

    def reset(self, account: Account) -> None:
        """Write the fixture into the account (ProvisionError on failure)."""
        state = self.state[account.role]
        self.provisioner.reset(account)
        state.needs_reset = False
        state.signature = None
        state.written = self.can_restore

    def mark_logged_in(self, role: str) -> None:
        self.state[role].logged_in = True

    def establish(self, account: Account, transcript: Transcript, *, write: bool) -> str | None:
        """`mailspec provision` / `mailspec verify`: (write and) identify one
        account; what is wrong, or None when it holds the fixture."""
        state = self.state[account.role]
        if write:
            try:
                self.reset(account)
            except ProvisionError as exc:
                return str(exc)
        state.signature = None
        try:
            with self._check(account, transcript, f"verify-{account.role}") as check:
                check.identify(written=False)
                state.signature = check.signature()
        except VerificationError as exc:
            return str(exc)
        return None

    # -- before a scenario -------------------------------------------------------

    def prepare(self, scenario: Scenario, transcript: Transcript) -> Preparation:
        if not scenario.logs_in():
            return Preparation()  # sees no maildrop
        if scenario.commits and not self.can_restore:
            return Preparation(skip=NEEDS_PROVISIONER)
        for role in scenario.accounts_used():
            outcome = self._prepare_account(scenario, self.accounts[role], transcript)
            if outcome.skip or outcome.error:
                return outcome
        return Preparation()

    def _prepare_account(
        self, scenario: Scenario, account: Account, transcript: Transcript
    ) -> Preparation:
        state = self.state[account.role]
        if state.login_judged_by and _uses_login_step(scenario):
            return Preparation(
                skip=f"depends on logging in to account {account.role} ({account.user}), "
                f"which failed in {state.login_judged_by}"
            )
        if state.needs_reset:
            if self.can_restore:
                try:
                    self.reset(account)
                except ProvisionError as exc:
                    return Preparation(error=f"mailbox not ready: {exc}")
            elif state.changed_by:
                return Preparation(
                    skip=f"account {account.role} ({account.user}) was changed by "
                    f"{state.changed_by} and provision: none cannot restore it "
                    "(re-provision the target, e.g. with mailspec provision)"
                )
            else:
                state.needs_reset = False  # first use: nothing to restore, identify it
        if state.signature is None:
            return self._identify(account, transcript)
        return Preparation()

    def _identify(self, account: Account, transcript: Transcript) -> Preparation:
        state = self.state[account.role]
        try:
            with self._check(account, transcript, f"verify-{account.role}") as check:
                try:
                    check.identify(written=state.written)
                except VerificationError as exc:
                    if exc.kind != "unverifiable":
                        raise
                    # The server's replies broke off (a stall, a flood, a
                    # close): a defect the scenarios judge, not set-up's.
                    transcript.event(
                        "*", f"set-up: {exc}; the messages are not identified, the scenario runs"
                    )
                    state.signature = Signature()
                    return Preparation()
                state.signature = check.signature()
        except VerificationError as exc:
            return self._unverified(account, exc, transcript)
        state.logged_in = True
        return Preparation()

    def _check(self, account: Account, transcript: Transcript, name: str) -> MaildropCheck:
        return MaildropCheck(
            self.host, self.port, self.config, account, transcript, self.methods, name=name
        )

    def _unverified(
        self, account: Account, exc: VerificationError, transcript: Transcript
    ) -> Preparation:
        state = self.state[account.role]
        if exc.kind == "unreachable":
            return Preparation(error=f"mailbox not ready: {exc}", unreachable=True)
        if exc.kind == "content":
            state.needs_reset = True
            return Preparation(
                error=f"mailbox not ready: the store does not hold the fixture: {exc}"
                + self._blame(account)
            )
        if exc.kind == "login":
            if state.logged_in or state.written or account.login == "apop":
                # the credentials are right (they worked, or we wrote the
                # account, or the probe's USER/PASS login worked and this
                # one uses APOP): the scenario's own login will judge it
                state.login_refused = str(exc)
                transcript.event("*", f"set-up: {exc}; the scenario runs and judges the login")
                return Preparation()
            return Preparation(
                error=f"mailbox not ready: {exc}; check accounts.{account.role} in the "
                "target config"
            )
        # unverifiable (login broke off): the scenario judges what the server does
        transcript.event("*", f"set-up: {exc}; the scenario runs and judges the server")
        return Preparation()

    def _blame(self, account: Account) -> str:
        state = self.state[account.role]
        hint = f"; last changed by {state.changed_by}" if state.changed_by else ""
        if not self.can_restore:
            hint += " (provision: none cannot restore it; re-provision the target)"
        return hint

    # -- after a scenario --------------------------------------------------------

    def after(
        self, scenario: Scenario, failures: list[Failure], transcript: Transcript
    ) -> Failure | None:
        """Bookkeeping after `scenario` ran; the failure of a maildrop it
        changed without committing, if it did."""
        if not scenario.logs_in():
            return None
        found: Failure | None = None
        for role in scenario.accounts_used():
            state = self.state[role]
            if state.login_refused and any(f.kind == "login" for f in failures):
                state.login_judged_by = scenario.id
            if scenario.commits:
                state.needs_reset, state.changed_by, state.signature = True, scenario.id, None
                state.written = False
                continue
            change = self._changed(self.accounts[role], transcript)
            if change is None:
                continue
            before = state.signature
            if change[0] == "content" and before is not None:
                # Same messages, other unique-ids: the ids are unstable (a
                # UIDL-08 finding for the uidl scenarios), not this scenario's
                # doing. Judge later scenarios by the count alone.
                transcript.event(
                    "*",
                    f"account {role}: unique-ids differ from set-up's; UIDL is not used to "
                    "re-check maildrops in this run (the uidl scenarios judge it)",
                )
                self.methods.drop("uidl", "unique-ids change between sessions")
                for other in self.state.values():
                    if other.signature is not None:
                        other.signature = Signature(stat=other.signature.stat)
                continue
            state.needs_reset, state.changed_by, state.signature = True, scenario.id, None
            state.written = False
            found = found or _changed_failure(scenario, self.accounts[role], change)
        return found

    def differs(self, account: Account, transcript: Transcript) -> str | None:
        """For the `mailbox_same` oracle: what changed, or None; raises
        VerificationError when it cannot tell (an oracle that cannot look
        must not pass)."""
        before = self.state[account.role].signature
        if before is None or before.empty:
            raise VerificationError(
                f"set-up recorded no UIDL or STAT figures for account {account.role}",
                kind="unverifiable",
            )
        change = self._changed(account, transcript, strict=True)
        return "; ".join(change[1]) if change else None

    def _changed(
        self, account: Account, transcript: Transcript, *, strict: bool = False
    ) -> tuple[str, list[str]] | None:
        before = self.state[account.role].signature
        if before is None or before.empty:
            return None
        try:
            with self._check(account, transcript, f"verify-{account.role}-after") as check:
                later = check.signature()
        except VerificationError as exc:
            if strict:
                raise
            transcript.event("*", f"could not re-check account {account.role}: {exc}")
            return None
        if strict and later.empty:
            raise VerificationError(
                f"UIDL and STAT gave no figures for account {account.role}", kind="unverifiable"
            )
        diffs = before.differences(later)
        if not diffs:
            return None
        return ("count" if before.count != later.count else "content"), diffs


def _uses_login_step(scenario: Scenario) -> bool:
    return any(isinstance(step, LoginStep) for step in scenario.steps)


def _sends(scenario: Scenario, verb: str) -> bool:
    for step in scenario.steps:
        if isinstance(step, CommandStep | SendStep):
            templates = [step.template]
        elif isinstance(step, PipelineStep):
            templates = list(step.templates)
        else:
            continue
        for template in templates:
            literal = "".join(part for part in template if isinstance(part, str))
            if literal.lstrip().upper().startswith(verb):
                return True
    return False


def _changed_failure(
    scenario: Scenario, account: Account, change: tuple[str, list[str]]
) -> Failure:
    what, diffs = change
    if what == "content":
        requirement = UIDS_PERSIST
    elif _sends(scenario, "DELE"):
        requirement = DELE_ONLY_MARKS
    elif _sends(scenario, "QUIT"):
        requirement = UPDATE_REMOVES_ONLY_MARKED
    else:
        requirement = NO_REMOVAL_WITHOUT_UPDATE
    return Failure(
        step=None,
        step_text="",
        expected=(
            f"account {account.role} ({account.user}) unchanged after a scenario that "
            "commits nothing (no deletion outside UPDATE, unique-ids kept)"
        ),
        actual="; ".join(diffs) + " (checked in a new session after the scenario)",
        requirement=requirement,
        level="MUST",
        kind="maildrop",
    )
