"""Delivery inspection: what an SMTP scenario left in a recipient's maildrop.

The suite reads the target's store the way a POP3 server would: a Maildir
(`new/` and `cur/`) found from a template with `{user}`. Before a scenario
runs, the names already there are remembered; afterwards only files that
appeared since then are the scenario's, so an operator's mailbox is never
emptied or rewritten. Delivery may lag the 250 (a queue): the inspector
polls until the expected count arrived or the wait is over.

Spellings (config `smtp: delivery:` / `--delivery`):

    maildir:/srv/mail/{user}/Maildir   inspect that Maildir
    maildir:/srv/catch-all             one Maildir for every recipient (a catch-all,
                                       e.g. aiosmtpd's Mailbox handler)
    none                               no inspection: `delivered:` steps SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from conformance.core.errors import ConfigError

USER_PLACEHOLDER = "{user}"
POLL_SECONDS = 0.05
#: The stored message keeps the client's bytes apart from the fields the
#: receiving and delivering servers prepend: the trace fields of RFC 5321
#: §4.4 and the delivery agents' own (Postfix: X-Original-To, Delivered-To;
#: Exim: Envelope-to, Delivery-date). They are skipped before comparing.
PREPENDED_FIELDS = (
    b"return-path:",
    b"received:",
    b"delivered-to:",
    b"x-original-to:",
    b"envelope-to:",
    b"delivery-date:",
)


@dataclass(frozen=True)
class StoredMessage:
    name: str
    data: bytes

    def trace_and_rest(self) -> tuple[list[bytes], bytes]:
        """The fields servers prepended on top (each with its folded lines)
        and the bytes after them: the message as the client sent it."""
        fields: list[bytes] = []
        rest = self.data
        while True:
            line_end = rest.find(b"\n")
            if line_end < 0 or not rest.lower().startswith(PREPENDED_FIELDS):
                return fields, rest
            end = line_end + 1
            while rest[end : end + 1] in (b" ", b"\t"):  # folded continuation
                next_end = rest.find(b"\n", end)
                end = len(rest) if next_end < 0 else next_end + 1
            fields.append(rest[:end])
            rest = rest[end:]


class MaildirInspector:
    """New messages in `template`'s Maildir (`{user}` replaced)."""

    def __init__(self, template: str) -> None:
        self.template = template  # without {user}: one catch-all Maildir

    def _dirs(self, user: str) -> list[Path]:
        root = Path(self.template.replace(USER_PLACEHOLDER, user))
        return [root / "new", root / "cur"]

    def names(self, user: str) -> set[str]:
        found: set[str] = set()
        for directory in self._dirs(user):
            try:
                found.update(p.name for p in directory.iterdir() if not p.name.startswith("."))
            except FileNotFoundError:
                continue
        return found

    def new_messages(
        self,
        user: str,
        before: set[str],
        *,
        want: int,
        wait: float,
    ) -> list[StoredMessage]:
        """Messages that appeared since `before`: waits up to `wait` seconds
        for `want` of them (with want 0 the whole wait, for stragglers)."""
        deadline = time.monotonic() + wait
        seen: dict[str, StoredMessage | None] = {}
        while True:
            for name in sorted(self.names(user) - before - seen.keys()):
                seen[name] = self._read(user, name)
            ours = [m for m in seen.values() if m is not None]
            if (want and len(ours) >= want) or time.monotonic() >= deadline:
                return ours
            time.sleep(POLL_SECONDS)

    def settle(self, users: set[str], *, quiet: float, limit: float) -> None:
        """Wait until no new message has appeared for `quiet` seconds in
        these users' maildrops (at most `limit` seconds in all)."""
        deadline = time.monotonic() + limit
        known = {user: self.names(user) for user in users}
        calm_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            now = {user: self.names(user) for user in users}
            if now != known:
                known, calm_since = now, time.monotonic()
            elif time.monotonic() - calm_since >= quiet:
                return

    def _read(self, user: str, name: str) -> StoredMessage | None:
        for directory in self._dirs(user):
            try:
                return StoredMessage(name, (directory / name).read_bytes())
            except FileNotFoundError:
                continue  # moved from new/ to cur/ meanwhile: the next directory
        return None


def make_inspector(spec: str) -> MaildirInspector | None:
    """None for `none`; ConfigError names a spelling it does not know."""
    if spec == "none":
        return None
    kind, _, rest = spec.partition(":")
    if kind == "maildir" and rest:
        return MaildirInspector(rest)
    raise ConfigError(
        f"delivery {spec!r}: expected maildir:/path/{USER_PLACEHOLDER}/Maildir, "
        "maildir:/path (one Maildir for all) or none"
    )
