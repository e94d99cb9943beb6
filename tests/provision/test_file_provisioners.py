"""maildir: and mbox: provisioners: byte-exact content, order, re-writes,
permissions and ownership, atomicity (no reader sees a partial file)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from conformance.core.errors import ProvisionError
from conformance.core.fixture import Account, Fixture, FixtureMessage, delivery_seconds
from conformance.provision import (
    MaildirProvisioner,
    MboxProvisioner,
    make_provisioner,
    mboxrd_entry,
)
from conformance.provision import files as provision_files
from reference_server.store.maildrop import (
    MaildirStore,
    MboxStore,
    mbox_message_content,
    parse_mbox,
)


def served(store, account: Account) -> list[bytes]:
    """What the reference server would send for each message, in POP3 order."""
    drop = store.open(account.user)
    try:
        return [m.content for m in drop.messages]
    finally:
        drop.release()


# ----------------------------------------------------------------- maildir


def test_maildir_writes_every_account_byte_exact_in_order(tmp_path: Path, fixture: Fixture):
    template = str(tmp_path / "{user}" / "Maildir")
    prov = make_provisioner(f"maildir:{template}")
    assert prov.byte_exact
    store = MaildirStore(template)
    for account in fixture.accounts.values():
        prov.reset(account)
        assert served(store, account) == [m.wire for m in account.messages], account.role
        stored = sorted((tmp_path / account.user / "Maildir" / "new").iterdir())
        assert [p.read_bytes() for p in stored] == [m.raw for m in account.messages]


def test_maildir_rewrite_restores_after_deletion_and_drops_server_caches(
    tmp_path: Path, fixture: Fixture
):
    account = fixture.account("main")
    root = tmp_path / account.user / "Maildir"
    prov = MaildirProvisioner(str(tmp_path / "{user}" / "Maildir"))
    prov.reset(account)
    # what a server leaves behind: message 2 deleted, one moved to cur/ with
    # flags, a UID cache, an index, a stray tmp file, a lock file we must keep
    new = sorted((root / "new").iterdir())
    new[1].unlink()
    os.replace(new[0], root / "cur" / (new[0].name + ":2,S"))
    (root / "dovecot-uidlist").write_text("3 V1 N8\n1 1700000001.M000001P0.mailspec\n")
    (root / "dovecot.index.log").write_bytes(b"\0" * 64)
    (root / "tmp" / "half-written").write_bytes(b"Subj")
    (root / ".mailspec-lock").write_bytes(b"")
    (root / ".Sent").mkdir()
    prov.reset(account)
    assert sorted(p.name for p in root.iterdir()) == [
        ".Sent",
        ".mailspec-lock",
        "cur",
        "new",
        "tmp",
    ]
    assert list((root / "cur").iterdir()) == []
    assert list((root / "tmp").iterdir()) == []
    names = sorted(p.name for p in (root / "new").iterdir())
    assert len(names) == account.count
    # name timestamps and mtimes increase with the message number (Dovecot
    # assigns UIDs to new/ files in that order), except that a same_second
    # message shares its predecessor's second
    stamps = [int(n.split(".", 1)[0]) for n in names]
    assert stamps == delivery_seconds(account.messages)
    shared = sum(m.same_second for m in account.messages)
    assert shared >= 1 and len(set(stamps)) == len(stamps) - shared
    mtimes = [(root / "new" / n).stat().st_mtime for n in names]
    assert mtimes == [float(s) for s in stamps]
    assert served(MaildirStore(str(tmp_path / "{user}" / "Maildir")), account) == [
        m.wire for m in account.messages
    ]


def test_maildir_modes(tmp_path: Path, fixture: Fixture):
    account = fixture.account("spare1")
    tmp_path.chmod(0o711)
    prov = make_provisioner(f"maildir,mode=0640:{tmp_path}/{{user}}/Maildir")
    prov.reset(account)
    user_dir = tmp_path / account.user
    for d in (user_dir, user_dir / "Maildir", user_dir / "Maildir" / "new"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o750, d
    for f in (user_dir / "Maildir" / "new").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o640, f
    # the fixed part of the template is not ours to chmod
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o711
    assert "mode=0640" in prov.describe()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_maildir_owner(tmp_path: Path, fixture: Fixture):
    account = fixture.account("spare1")
    tmp_path.chmod(0o755)
    prov = make_provisioner(f"maildir:{tmp_path}/{{user}}/Maildir", owner="65534:65534")
    prov.reset(account)
    for p in [tmp_path / account.user, *(tmp_path / account.user).rglob("*")]:
        assert (p.stat().st_uid, p.stat().st_gid) == (65534, 65534), p
    assert tmp_path.stat().st_uid == 0


def test_maildir_no_partial_file_is_ever_visible(tmp_path: Path, fixture: Fixture):
    account = fixture.account("main")  # holds the 1.1 MB message
    root = tmp_path / account.user
    prov = MaildirProvisioner(str(tmp_path / "{user}"))
    prov.reset(account)
    complete = {m.raw for m in account.messages}
    seen_bad: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for sub in ("new", "cur"):
                try:
                    entries = list((root / sub).iterdir())
                except FileNotFoundError:
                    continue
                for p in entries:
                    try:
                        data = p.read_bytes()
                    except FileNotFoundError:
                        continue  # removed by the next reset: fine
                    if data not in complete:
                        seen_bad.append(f"{p.name}: {len(data)} octets")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(15):
            prov.reset(account)
    finally:
        stop.set()
        thread.join()
    assert seen_bad == []


def test_maildir_template_without_user_is_refused():
    with pytest.raises(ProvisionError, match=r"\{user\}"):
        make_provisioner("maildir:/srv/mail/Maildir")


def test_maildir_unwritable_store_is_a_provision_error(tmp_path: Path, fixture: Fixture):
    (tmp_path / "file").write_text("not a directory")
    prov = make_provisioner(f"maildir:{tmp_path}/file/{{user}}")
    with pytest.raises(ProvisionError, match="cannot write Maildir"):
        prov.reset(fixture.account("main"))


# ----------------------------------------------------------------- mbox


def test_mbox_writes_mboxrd_that_a_reader_splits_back(tmp_path: Path, fixture: Fixture):
    template = str(tmp_path / "{user}")
    prov = make_provisioner(f"mbox:{template}")
    assert prov.byte_exact
    store = MboxStore(template)
    for account in fixture.accounts.values():
        prov.reset(account)
        assert served(store, account) == [m.wire for m in account.messages], account.role
        data = (tmp_path / account.user).read_bytes()
        assert b"\r" not in data  # LF line ends, the mbox convention
        assert len(parse_mbox(data)) == account.count


def test_mbox_from_quoting_is_mboxrd():
    raw = (
        b"Subject: quoting\r\n\r\nFrom the start\r\n>From once quoted\r\n"
        b">>From twice\r\n From not at start\r\nFromage\r\nlast"
    )
    entry = mboxrd_entry(FixtureMessage("q.eml", raw))
    assert entry.startswith(b"From mailspec@mailspec.test ")
    lines = entry.split(b"\n")
    assert lines[1:] == [
        b"Subject: quoting",
        b"",
        b">From the start",
        b">>From once quoted",
        b">>>From twice",
        b" From not at start",
        b"Fromage",
        b"last",  # a line end is added to a message without one
        b"",  # the separating empty line
        b"",
    ]
    # a mboxrd reader gets the original back
    ((start, end),) = parse_mbox(entry)
    assert mbox_message_content(entry, start, end) == raw.replace(b"\r\n", b"\n") + b"\n"


def test_mbox_rewrite_and_crlf_option(tmp_path: Path, fixture: Fixture):
    account = fixture.account("spare2")
    path = tmp_path / account.user
    prov = make_provisioner(f"mbox,eol=crlf:{tmp_path}/{{user}}")
    prov.reset(account)
    first = path.read_bytes()
    assert b"\r\n" in first
    path.write_bytes(first[: len(first) // 2])  # a server truncated it
    prov.reset(account)
    assert path.read_bytes() == first
    assert served(MboxStore(str(tmp_path / "{user}")), account) == [
        m.wire for m in account.messages
    ]
    # nothing but the mbox itself is left in the directory
    assert sorted(p.name for p in tmp_path.iterdir() if "lock" not in p.name) == [account.user]


def test_mbox_modes_and_owner(tmp_path: Path, fixture: Fixture):
    account = fixture.account("spare3")
    owner = "65534:65534" if os.geteuid() == 0 else None
    prov = make_provisioner(f"mbox,mode=0660:{tmp_path}/spool/{{user}}", owner=owner)
    prov.reset(account)
    st = (tmp_path / "spool" / account.user).stat()
    assert stat.S_IMODE(st.st_mode) == 0o660
    if owner:
        assert (st.st_uid, st.st_gid) == (65534, 65534)
        assert (tmp_path / "spool").stat().st_uid == 0  # fixed part untouched


def test_mbox_replace_is_atomic(tmp_path: Path, fixture: Fixture, monkeypatch):
    """At the moment of the rename the mbox still holds the old content and
    the temporary file already holds all of the new content."""
    account = fixture.account("main")
    path = tmp_path / account.user
    path.write_bytes(b"From old Sat Nov 28 00:00:00 2026\nSubject: old\n\nold\n\n")
    old = path.read_bytes()
    expected = b"".join(mboxrd_entry(m) for m in account.messages)
    observed = {}
    real_replace = os.replace

    def spying_replace(src, dst):
        if Path(dst) == path:
            observed["dst"] = path.read_bytes()
            observed["src"] = Path(src).read_bytes()
            observed["src_dir"] = Path(src).parent
        return real_replace(src, dst)

    monkeypatch.setattr(provision_files.os, "replace", spying_replace)
    make_provisioner(f"mbox:{tmp_path}/{{user}}").reset(account)
    assert observed["dst"] == old
    assert observed["src"] == expected
    assert observed["src_dir"] == tmp_path  # same file system: rename is atomic
    assert path.read_bytes() == expected


def test_mbox_failed_write_leaves_old_mbox_and_no_temp(
    tmp_path: Path, fixture: Fixture, monkeypatch
):
    account = fixture.account("spare1")
    path = tmp_path / account.user
    path.write_bytes(b"")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(provision_files.os, "replace", failing_replace)
    with pytest.raises(ProvisionError, match="No space left"):
        make_provisioner(f"mbox:{tmp_path}/{{user}}").reset(account)
    assert path.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == [account.user]


def test_mbox_reader_never_sees_a_partial_mbox(tmp_path: Path, fixture: Fixture):
    account = fixture.account("main")
    path = tmp_path / account.user
    prov = MboxProvisioner(str(tmp_path / "{user}"))
    prov.reset(account)
    full = path.read_bytes()
    bad: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = path.read_bytes()
            if data != full:
                bad.append(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(10):
            prov.reset(account)
    finally:
        stop.set()
        thread.join()
    assert bad == []


def test_maildir_eol_lf_keeps_the_wire_form(tmp_path: Path, fixture: Fixture):
    """eol=lf (for servers that cannot parse CRLF headers) stores LF only and
    ends the last line; the server's wire form is the fixture's."""
    account = fixture.account("main")
    prov = make_provisioner(f"maildir,eol=lf:{tmp_path}/{{user}}")
    assert prov.byte_exact and "eol=lf" in prov.describe()
    prov.reset(account)
    for f in (tmp_path / account.user / "new").iterdir():
        data = f.read_bytes()
        assert b"\r" not in data and data.endswith(b"\n"), f.name
    assert served(MaildirStore(str(tmp_path / "{user}")), account) == [
        m.wire for m in account.messages
    ]


def test_exact_no_declares_a_server_that_rewrites_messages(tmp_path: Path):
    for kind in ("maildir", "mbox"):
        prov = make_provisioner(f"{kind},exact=no:{tmp_path}/{{user}}")
        assert not prov.byte_exact
        assert "exact=no" in prov.describe()
    with pytest.raises(ProvisionError, match="exact='maybe'"):
        make_provisioner(f"mbox,exact=maybe:{tmp_path}/{{user}}")
