"""Provisioners: how a target's mailboxes get the fixture's content.

POP3 cannot create mail, so before a scenario runs the suite must know what
each maildrop holds. A provisioner writes an account's fixture messages into
the target's store (or checks that someone else did). The engine calls
`reset(account)` before the first scenario that uses an account and again
after a scenario that committed changes to it; it then verifies the maildrop
over POP3 (STAT/LIST/UIDL) before the scenario starts, with
`verify_listing()` below: a difference is an ERROR of that scenario (the
mailbox is not what the suite assumes), never a FAIL of the server.

`byte_exact` says whether the server will hold exactly the fixture's bytes
(written by us) or whether a delivery path may add headers, in which case
scenarios compare bodies and relations instead of whole messages.

Spellings (config `provision:` / CLI `--provision`), built by
`make_provisioner(spec)`::

    none                                  the operator provisioned; verify only
    maildir:/srv/mail/{user}/Maildir      write Maildirs directly (byte-exact)
    mbox:/var/mail/{user}                 write mboxrd files directly (byte-exact)
    smtp:HOST:PORT                        deliver over SMTP, wait for POP3 STAT
    command:'deliver-script --flag'       run SCRIPT MESSAGE-FILE USER per message

Options go between the kind and the colon, comma-separated (`exact=no` on
maildir/mbox declares a server that rewrites stored messages, e.g. adds
X-UIDL headers, so scenarios compare bodies; `eol=lf` writes LF line ends):
`mbox,owner=mail,group=mail,mode=0660:/var/mail/{user}` (owner alone takes
that user's primary group),
`smtp,rcpt={user}@example.org,timeout=60:127.0.0.1:25`, `command,exact:./put.sh`.
`make_provisioner(spec, owner=..., mode=..., target=(host, port))` takes the
same settings as keywords (the spec's options win).
"""

from __future__ import annotations

from conformance.core.errors import ProvisionError
from conformance.provision.base import NoneProvisioner, Provisioner, parse_owner
from conformance.provision.delivery import CommandProvisioner, SmtpProvisioner
from conformance.provision.files import MaildirProvisioner, MboxProvisioner, mboxrd_entry
from conformance.provision.listing import verify_listing
from conformance.provision.spec import make_provisioner

__all__ = [
    "CommandProvisioner",
    "MaildirProvisioner",
    "MboxProvisioner",
    "NoneProvisioner",
    "ProvisionError",
    "Provisioner",
    "SmtpProvisioner",
    "make_provisioner",
    "mboxrd_entry",
    "parse_owner",
    "verify_listing",
]
