"""Maildir and mbox maildrops: order, wire form, UIDs, locking, UPDATE."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pop3_testlib import write_maildir

from reference_server.store.maildrop import (
    MaildirStore,
    MaildropCorrupt,
    MaildropError,
    MaildropLocked,
    MaildropStore,
    MboxStore,
    StoredMessage,
    StoreSpecError,
    store_from_spec,
    to_wire_form,
)


def snapshot(store: MaildropStore, user: str) -> list[StoredMessage]:
    """Open, read and release a maildrop (never left locked)."""
    maildrop = store.open(user)
    try:
        return list(maildrop.messages)
    finally:
        maildrop.release()


def contents(store: MaildropStore, user: str) -> list[bytes]:
    return [message.content for message in snapshot(store, user)]


def uids(store: MaildropStore, user: str) -> list[str]:
    return [message.uid for message in snapshot(store, user)]


@pytest.mark.parametrize(
    ("stored", "wire"),
    [
        (b"a\nb\n", b"a\r\nb\r\n"),
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\nb", b"a\r\nb\r\n"),
        (b"a\r\nb\n", b"a\r\nb\r\n"),
        (b"", b""),
    ],
)
def test_wire_form_is_crlf_with_final_line_end(stored: bytes, wire: bytes) -> None:
    assert to_wire_form(stored) == wire


# --- Maildir ----------------------------------------------------------------------


def test_maildir_order_is_by_file_name_across_new_and_cur(tmp_path: Path) -> None:
    maildir = write_maildir(tmp_path, "u", [])
    (maildir / "new" / "300.c").write_bytes(b"third\n")
    (maildir / "cur" / "100.a:2,S").write_bytes(b"first\n")
    (maildir / "new" / "200.b").write_bytes(b"second\n")
    (maildir / "new" / ".hidden").write_bytes(b"ignored\n")
    (maildir / "tmp" / "050.in-delivery").write_bytes(b"ignored\n")
    store = MaildirStore(str(tmp_path / "{user}"))
    assert contents(store, "u") == [b"first\r\n", b"second\r\n", b"third\r\n"]
    assert uids(store, "u") == ["100.a", "200.b", "300.c"]


def test_maildir_uid_survives_move_from_new_to_cur_and_restart(tmp_path: Path) -> None:
    maildir = write_maildir(tmp_path, "u", [b"x\n", b"y\n"])
    store = MaildirStore(str(tmp_path / "{user}"))
    before = uids(store, "u")
    os.rename(maildir / "new" / "0001.test", maildir / "cur" / "0001.test:2,S")
    assert uids(MaildirStore(str(tmp_path / "{user}")), "u") == before


def test_maildir_unusable_names_get_hashed_uids(tmp_path: Path) -> None:
    maildir = write_maildir(tmp_path, "u", [])
    (maildir / "new" / ("n" * 80)).write_bytes(b"long\n")
    (maildir / "new" / "with space").write_bytes(b"space\n")
    (maildir / "new" / "caf\u00e9").write_bytes(b"8bit\n")
    found = uids(MaildirStore(str(tmp_path / "{user}")), "u")
    assert len(set(found)) == 3
    for uid in found:
        assert 1 <= len(uid) <= 70 and all(0x21 <= ord(c) <= 0x7E for c in uid)


def test_maildir_commit_unlinks_only_the_deleted(tmp_path: Path) -> None:
    maildir = write_maildir(tmp_path, "u", [b"1\n", b"2\n", b"3\n"])
    maildrop = MaildirStore(str(tmp_path / "{user}")).open("u")
    maildrop.commit([maildrop.messages[1]])
    maildrop.release()
    assert sorted(p.name for p in (maildir / "new").iterdir()) == ["0001.test", "0003.test"]


def test_maildir_commit_follows_a_message_moved_to_cur(tmp_path: Path) -> None:
    maildir = write_maildir(tmp_path, "u", [b"1\n"])
    maildrop = MaildirStore(str(tmp_path / "{user}")).open("u")
    os.rename(maildir / "new" / "0001.test", maildir / "cur" / "0001.test:2,S")
    maildrop.commit(maildrop.messages)
    maildrop.release()
    assert list((maildir / "cur").iterdir()) == []


def test_missing_maildir_is_an_empty_maildrop(tmp_path: Path) -> None:
    assert contents(MaildirStore(str(tmp_path / "{user}")), "newcomer") == []


@pytest.mark.parametrize("user", ["", ".", "..", "a/b", "a\x00"])
def test_user_names_cannot_escape_the_store(tmp_path: Path, user: str) -> None:
    with pytest.raises(MaildropError):
        MaildirStore(str(tmp_path / "{user}")).open(user)


# --- mbox -------------------------------------------------------------------------

MBOX = (
    b"From alice@example.org Mon Jan  1 00:00:00 2024\n"
    b"Subject: one\n\nbody one\n>From the start\n>>From deeper\nFrom inside not after blank\n"
    b"\n"
    b"From bob@example.org Mon Jan  1 00:00:01 2024\n"
    b"Subject: two\n\n.dot line\n"
    b"\n"
    b"From carol@example.org Mon Jan  1 00:00:02 2024\n"
    b"Subject: three\n\nno trailing blank"
)


@pytest.fixture
def mbox_store(tmp_path: Path) -> MboxStore:
    (tmp_path / "u").write_bytes(MBOX)
    return MboxStore(str(tmp_path / "{user}"))


def test_mboxrd_parsing_unquotes_and_drops_separator_lines(mbox_store: MboxStore) -> None:
    assert contents(mbox_store, "u") == [
        b"Subject: one\r\n\r\nbody one\r\nFrom the start\r\n>From deeper\r\n"
        b"From inside not after blank\r\n",
        b"Subject: two\r\n\r\n.dot line\r\n",
        b"Subject: three\r\n\r\nno trailing blank\r\n",
    ]


def test_crlf_mbox_parses_the_same(tmp_path: Path) -> None:
    (tmp_path / "u").write_bytes(MBOX.replace(b"\n", b"\r\n"))
    (tmp_path / "v").write_bytes(MBOX)
    store = MboxStore(str(tmp_path / "{user}"))
    assert contents(store, "u") == contents(store, "v")


def test_mbox_uid_moves_with_the_message_after_expunge(
    mbox_store: MboxStore, tmp_path: Path
) -> None:
    before = uids(mbox_store, "u")
    maildrop = mbox_store.open("u")
    maildrop.commit([maildrop.messages[0]])
    maildrop.release()
    assert uids(mbox_store, "u") == before[1:]
    assert contents(mbox_store, "u")[0].startswith(b"Subject: two")


def test_mbox_identical_copies_get_distinct_uids(tmp_path: Path) -> None:
    message = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: same\n\nx\n\n"
    (tmp_path / "u").write_bytes(message * 3)
    found = uids(MboxStore(str(tmp_path / "{user}")), "u")
    assert len(set(found)) == 3


def test_mbox_commit_keeps_survivor_bytes_and_mail_appended_meanwhile(
    mbox_store: MboxStore, tmp_path: Path
) -> None:
    maildrop = mbox_store.open("u")
    appended = b"\nFrom late@example.org Mon Jan  1 00:00:03 2024\nSubject: late\n\nhi\n"
    with open(tmp_path / "u", "ab") as mbox:
        mbox.write(appended)
    maildrop.commit([maildrop.messages[1]])
    maildrop.release()
    first_end = MBOX.index(b"From bob")
    third_start = MBOX.index(b"From carol")
    assert (tmp_path / "u").read_bytes() == MBOX[:first_end] + MBOX[third_start:] + appended
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".rewrite")]


def test_mbox_changed_underneath_refuses_to_commit(mbox_store: MboxStore, tmp_path: Path) -> None:
    maildrop = mbox_store.open("u")
    (tmp_path / "u").write_bytes(MBOX.replace(b"body one", b"BODY ONE"))
    with pytest.raises(MaildropError):
        maildrop.commit([maildrop.messages[0]])
    maildrop.release()
    assert b"BODY ONE" in (tmp_path / "u").read_bytes()


def test_missing_and_empty_mbox_are_empty_maildrops(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    store = MboxStore(str(tmp_path / "{user}"))
    assert contents(store, "empty") == [] and contents(store, "missing") == []


def test_mbox_without_from_line_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / "u").write_bytes(b"Subject: no envelope\n\nbody\n")
    with pytest.raises(MaildropCorrupt):
        MboxStore(str(tmp_path / "{user}")).open("u")


# --- Locking ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_second_open_in_the_same_process_is_locked_out(tmp_path: Path, kind: str) -> None:
    store = store_from_spec(f"{kind}:{tmp_path}/{{user}}")
    first = store.open("u")
    with pytest.raises(MaildropLocked):
        store.open("u")
    first.release()
    store.open("u").release()


def test_lock_holds_against_another_process(tmp_path: Path) -> None:
    store = MaildirStore(str(tmp_path / "{user}"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
            from reference_server.store.maildrop import MaildirStore
            drop = MaildirStore({store.path_template!r}).open("u")
            print("locked", flush=True)
            sys.stdin.read()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        with pytest.raises(MaildropLocked):
            store.open("u")
    finally:
        holder.kill()
        holder.wait()
    store.open("u").release()  # the kernel dropped the dead process's lock


# --- Store specs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["", "maildir", "maildir:", "imap:/x/{user}", "maildir:/x/fixed", "/x/{user}"]
)
def test_bad_store_specs(spec: str) -> None:
    with pytest.raises(StoreSpecError):
        store_from_spec(spec)


def test_base_directory_must_exist(tmp_path: Path) -> None:
    store_from_spec(f"maildir:{tmp_path}/{{user}}/Maildir").check_base_directory()
    with pytest.raises(StoreSpecError, match="does not exist"):
        store_from_spec(f"mbox:{tmp_path}/nope/{{user}}").check_base_directory()


def test_wire_form_cache_serves_a_replaced_maildir_file_afresh(tmp_path: Path) -> None:
    from reference_server.store.maildrop import WireFormCache

    cache = WireFormCache(max_octets=1024)
    path = tmp_path / "msg"
    path.write_bytes(b"Subject: a\n\nfirst\n")
    assert cache.wire_form(path) == b"Subject: a\r\n\r\nfirst\r\n"
    replacement = tmp_path / "msg.new"
    replacement.write_bytes(b"Subject: b\n\nsecond, longer\n")
    os.replace(replacement, path)  # a new inode, as Maildir delivery makes
    assert cache.wire_form(path) == b"Subject: b\r\n\r\nsecond, longer\r\n"


def test_wire_form_cache_stays_within_its_octet_budget(tmp_path: Path) -> None:
    from reference_server.store.maildrop import WireFormCache

    cache = WireFormCache(max_octets=100)
    for i in range(10):
        (tmp_path / f"m{i}").write_bytes(b"x" * 40 + b"\n")
        cache.wire_form(tmp_path / f"m{i}")
    assert cache._octets <= 100
