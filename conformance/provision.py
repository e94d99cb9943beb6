"""Provisioners: how a target's mailboxes get the fixture's content.

POP3 cannot create mail, so before a scenario runs the suite must know what
each maildrop holds. A provisioner writes an account's fixture messages into
the target's store (or checks that someone else did). The engine calls
`reset(account)` before the first scenario that uses an account and again
after a scenario that committed changes to it; it then verifies the maildrop
over POP3 (STAT/LIST/UIDL) before the scenario starts.

`byte_exact` says whether the server will hold exactly the fixture's bytes
(written by us) or whether a delivery path may add headers, in which case
scenarios compare bodies and relations instead of whole messages.
"""

from __future__ import annotations

import abc
import os
import shutil
from pathlib import Path

from conformance.errors import ProvisionError
from conformance.fixture import Account, write_maildir

__all__ = [
    "MaildirProvisioner",
    "NoneProvisioner",
    "ProvisionError",
    "Provisioner",
    "make_provisioner",
]


class Provisioner(abc.ABC):
    name: str = "abstract"
    byte_exact: bool = True

    @abc.abstractmethod
    def reset(self, account: Account) -> None:
        """Make the account's maildrop hold exactly the fixture's messages."""

    def describe(self) -> str:
        return self.name


class NoneProvisioner(Provisioner):
    """The target is provisioned by its operator; the suite only verifies."""

    name = "none"
    byte_exact = False

    def reset(self, account: Account) -> None:
        return None


class MaildirProvisioner(Provisioner):
    """Writes Maildirs directly: `maildir:/srv/mail/{user}/Maildir`."""

    name = "maildir"

    def __init__(
        self, template: str, *, uid: int | None = None, gid: int | None = None, mode: int = 0o700
    ) -> None:
        if "{user}" not in template:
            raise ProvisionError(f"maildir template {template!r} must contain {{user}}")
        self.template = template
        self.uid, self.gid, self.mode = uid, gid, mode

    def path_for(self, account: Account) -> Path:
        return Path(self.template.format(user=account.user))

    def reset(self, account: Account) -> None:
        root = self.path_for(account)
        try:
            write_maildir(root, account.messages)
            if self.uid is not None or self.gid is not None:
                for dirpath, _dirs, files in os.walk(root):
                    shutil.chown(dirpath, self.uid, self.gid)  # type: ignore[arg-type]
                    for f in files:
                        shutil.chown(os.path.join(dirpath, f), self.uid, self.gid)  # type: ignore[arg-type]
            for dirpath, _dirs, _files in os.walk(root):
                os.chmod(dirpath, self.mode)
        except OSError as exc:
            raise ProvisionError(f"cannot write Maildir {root}: {exc.strerror}") from None

    def describe(self) -> str:
        return f"maildir:{self.template}"


def make_provisioner(spec: str) -> Provisioner:
    """Build a provisioner from its config/CLI spelling (`none`,
    `maildir:TEMPLATE`). `reference` is handled by the embedded server, which
    owns its store."""
    kind, _, arg = spec.partition(":")
    if kind == "none" and not arg:
        return NoneProvisioner()
    if kind == "maildir" and arg:
        return MaildirProvisioner(arg)
    raise ProvisionError(
        f"unknown provisioner {spec!r}: expected none or maildir:TEMPLATE (TEMPLATE has {{user}})"
    )
