"""`verify_listing`: does a maildrop's STAT/LIST/UIDL match the fixture?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from conformance.core.fixture import Account
from conformance.provision.base import MAX_ADDED_OCTETS

# --------------------------------------------------------------------------
# Verification


def verify_listing(
    account: Account,
    stat: tuple[int, int] | None,
    list_sizes: Sequence[int] | Sequence[tuple[int, int]] | Mapping[int, int] | None,
    byte_exact: bool,
    uidl: Sequence[str] | Sequence[tuple[int, str]] | Mapping[int, str] | None = None,
) -> list[str]:
    """Compare what the server lists before a scenario with what the fixture
    put in `account`. Returns the differences (empty: the maildrop is as
    expected). Pure: no I/O.

    `stat` is STAT's (count, size); `list_sizes` is LIST's sizes in message
    order (or (msg, size) pairs, or {msg: size}); `uidl` optionally UIDL's
    ids. With `byte_exact`, each size must be one the fixture message may
    be reported as (with or without the CRLF added to a message lacking a
    final newline). Otherwise a size may exceed the fixture's by the trace
    headers a delivery path adds (up to MAX_ADDED_OCTETS) but never be
    smaller than its body: that still catches a wrong order or a wrong box.

    Only the mailbox's content is checked, never the server's arithmetic
    (STAT's total against LIST's sum is a conformance question for the
    scenarios)."""
    diffs: list[str] = []
    want = account.count
    who = f"account {account.role} ({account.user})"
    if stat is not None:
        count, size = stat
        if count != want:
            diffs.append(f"{who}: STAT count is {count}, the fixture has {want} messages")
        elif byte_exact:
            lo = sum(min(m.accepted_octets) for m in account.messages)
            hi = sum(max(m.accepted_octets) for m in account.messages)
            if not lo <= size <= hi:
                expect = str(lo) if lo == hi else f"{lo}..{hi}"
                diffs.append(f"{who}: STAT size is {size} octets, the fixture's is {expect}")
    if list_sizes is not None:
        sizes = _numbered(list_sizes)
        numbers = sorted(sizes)
        if numbers != list(range(1, len(numbers) + 1)):
            diffs.append(f"{who}: LIST numbers are {numbers}, expected 1..{len(numbers)}")
        if len(sizes) != want:
            diffs.append(f"{who}: LIST has {len(sizes)} lines, the fixture has {want} messages")
        for n, message in enumerate(account.messages, start=1):
            if n not in sizes:
                continue
            got = int(sizes[n])  # type: ignore[call-overload]
            if byte_exact:
                if got not in message.accepted_octets:
                    accepted = " or ".join(str(v) for v in sorted(message.accepted_octets))
                    diffs.append(
                        f"{who}: message {n} is {got} octets, fixture message {message.name} "
                        f"is {accepted}"
                    )
            elif not len(message.body) <= got <= message.octets + MAX_ADDED_OCTETS:
                diffs.append(
                    f"{who}: message {n} is {got} octets, fixture message {message.name} is "
                    f"{message.octets} (+ at most {MAX_ADDED_OCTETS} of added headers): "
                    "wrong message order or wrong maildrop?"
                )
    if uidl is not None:
        ids = _numbered(uidl)
        if len(ids) != want:
            diffs.append(f"{who}: UIDL has {len(ids)} lines, the fixture has {want} messages")
    return diffs


def _numbered(values: object) -> dict[int, object]:
    if isinstance(values, Mapping):
        return {int(k): v for k, v in values.items()}
    out: dict[int, object] = {}
    item: object
    for i, item in enumerate(values, start=1):  # type: ignore[arg-type]
        if isinstance(item, tuple):
            out[int(item[0])] = item[1]
        else:
            out[i] = item
    return out
