"""make_provisioner spellings, and verify_listing catching a maildrop that
is not what the fixture says."""

from __future__ import annotations

from dataclasses import replace

import pytest

from conformance.core.errors import ProvisionError
from conformance.core.fixture import Fixture
from conformance.provision import (
    CommandProvisioner,
    MaildirProvisioner,
    MboxProvisioner,
    SmtpProvisioner,
    make_provisioner,
    parse_owner,
    verify_listing,
)


@pytest.mark.parametrize(
    ("spec", "cls", "described"),
    [
        ("maildir:/srv/{user}/Maildir", MaildirProvisioner, "maildir:/srv/{user}/Maildir"),
        ("mbox:/var/mail/{user}", MboxProvisioner, "mbox:/var/mail/{user}"),
        (
            "mbox,mode=0660,owner=0,group=8:/var/mail/{user}",
            MboxProvisioner,
            "mbox,owner=0,group=8,mode=0660:/var/mail/{user}",
        ),
        ("smtp:127.0.0.1:2525", SmtpProvisioner, "smtp:127.0.0.1:2525"),
        ("smtp,rcpt={user}@example.org:[::1]:25", SmtpProvisioner, "smtp:::1:25"),
        (
            "command:'/usr/lib/dovecot/dovecot-lda' -d",
            CommandProvisioner,
            "command:'/usr/lib/dovecot/dovecot-lda' -d",
        ),
        ("command,exact:./put.sh", CommandProvisioner, "command,exact:./put.sh"),
    ],
)
def test_spellings(spec, cls, described):
    prov = make_provisioner(spec)
    assert type(prov) is cls
    assert prov.describe() == described


def test_smtp_options_reach_the_provisioner():
    prov = make_provisioner("smtp,rcpt={user}@example.org,timeout=7:mx.test:25", target=("h", 1))
    assert isinstance(prov, SmtpProvisioner)
    assert (prov.host, prov.port, prov.rcpt, prov.timeout, prov.target) == (
        "mx.test",
        25,
        "{user}@example.org",
        7.0,
        ("h", 1),
    )


def test_command_is_split_like_a_shell():
    prov = make_provisioner("command:'/opt/my tools/put' --box \"a b\"")
    assert isinstance(prov, CommandProvisioner)
    assert prov.argv == ["/opt/my tools/put", "--box", "a b"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus:/x/{user}", "unknown provisioner"),
        ("maildir", "needs an argument"),
        ("maildir:/x/Maildir", "must contain {user}"),
        ("mbox,colour=red:/x/{user}", "unknown option 'colour'"),
        ("mbox,eol=cr:/x/{user}", "eol='cr'"),
        ("mbox,mode=rw:/x/{user}", "octal"),
        ("mbox,owner=no-such-user-here:/x/{user}", "no such user"),
        ("smtp:localhost", "expected smtp:HOST:PORT"),
        ("smtp:localhost:99999", "expected smtp:HOST:PORT"),
        ("smtp,timeout=soon:h:25", "timeout must be seconds"),
        ("command:'unbalanced", "No closing quotation"),
        ("none:x", "takes no argument"),
    ],
)
def test_bad_spellings_say_what_is_wrong(spec, message):
    with pytest.raises(ProvisionError, match=message.replace("{", r"\{").replace("}", r"\}")):
        make_provisioner(spec)


def test_parse_owner():
    assert parse_owner(None) == (None, None)
    assert parse_owner("0") == (0, None)
    assert parse_owner("root") == (0, 0)
    assert parse_owner(":0") == (None, 0)
    assert parse_owner("8:8") == (8, 8)
    assert parse_owner((1, 2)) == (1, 2)
    assert (
        make_provisioner("mbox,owner=root:/x/{user}").describe() == "mbox,owner=0,group=0:/x/{user}"
    )
    assert make_provisioner("mbox,group=8:/x/{user}").describe() == "mbox,group=8:/x/{user}"


# ----------------------------------------------------------------- verify


def exact_listing(account):
    sizes = [m.octets for m in account.messages]
    return (len(sizes), sum(sizes)), sizes


def test_verify_accepts_the_fixture_as_written(fixture: Fixture):
    for account in fixture.accounts.values():
        stat, sizes = exact_listing(account)
        assert verify_listing(account, stat, sizes, byte_exact=True) == []
        pairs = list(enumerate(sizes, start=1))
        assert verify_listing(account, stat, pairs, True, uidl=[f"u{n}" for n, _ in pairs]) == []
        assert verify_listing(account, stat, dict(pairs), byte_exact=False) == []


def test_verify_accepts_both_sizes_of_a_message_without_final_newline(fixture: Fixture):
    account = fixture.account("main")
    stat, sizes = exact_listing(account)
    n = next(i for i, m in enumerate(account.messages) if not m.raw.endswith(b"\n"))
    sizes[n] -= 2  # a server that does not count the CRLF it appends
    assert verify_listing(account, (stat[0], sum(sizes)), sizes, byte_exact=True) == []


def test_verify_catches_a_missing_message(fixture: Fixture):
    account = fixture.account("main")
    _, sizes = exact_listing(account)
    del sizes[1]
    diffs = verify_listing(account, (len(sizes), sum(sizes)), sizes, byte_exact=True)
    fixture_has = f"the fixture has {account.count} messages"
    assert f"account main (msmain): STAT count is {account.count - 1}, {fixture_has}" in diffs
    assert f"account main (msmain): LIST has {account.count - 1} lines, {fixture_has}" in diffs
    assert any("message 2 is 319 octets" in d and "02-dot-lines.eml" in d for d in diffs)


def test_verify_catches_wrong_order_even_when_not_byte_exact(fixture: Fixture):
    account = fixture.account("main")
    _, sizes = exact_listing(account)
    sizes[5], sizes[6] = sizes[6], sizes[5]  # the large message came first
    stat = (len(sizes), sum(sizes))
    assert any(
        "message 6 is 1100005 octets" in d for d in verify_listing(account, stat, sizes, True)
    )
    loose = verify_listing(account, stat, sizes, byte_exact=False)
    assert any("wrong message order" in d for d in loose), loose


def test_verify_allows_added_headers_only_when_not_byte_exact(fixture: Fixture):
    account = fixture.account("spare1")
    sizes = [m.octets + 180 for m in account.messages]  # Received: + Return-Path:
    stat = (len(sizes), sum(sizes))
    assert verify_listing(account, stat, sizes, byte_exact=False) == []
    strict = verify_listing(account, stat, sizes, byte_exact=True)
    assert "account spare1 (msspare1): STAT size is 2244 octets, the fixture's is 1704" in strict
    assert len(strict) == 4


def test_verify_catches_leftovers_in_the_empty_box_and_uidl_count(fixture: Fixture):
    empty = fixture.account("empty")
    diffs = verify_listing(empty, (1, 254), [254], byte_exact=False, uidl=["a", "b"])
    assert diffs == [
        "account empty (msempty): STAT count is 1, the fixture has 0 messages",
        "account empty (msempty): LIST has 1 lines, the fixture has 0 messages",
        "account empty (msempty): UIDL has 2 lines, the fixture has 0 messages",
    ]


def test_verify_catches_bad_numbering(fixture: Fixture):
    account = replace(fixture.account("spare2"))
    sizes = [(1, 254), (3, 307), (4, 1143)]
    diffs = verify_listing(account, None, sizes, byte_exact=True)
    assert diffs[0] == "account spare2 (msspare2): LIST numbers are [1, 3, 4], expected 1..3"


def test_verify_does_not_judge_the_servers_arithmetic(fixture: Fixture):
    """STAT's total against LIST's sum is a scenario's question (a FAIL),
    not a provisioning ERROR: only the count is compared when not exact."""
    account = fixture.account("spare1")
    _, sizes = exact_listing(account)
    assert verify_listing(account, (3, 1), sizes, byte_exact=False) == []
