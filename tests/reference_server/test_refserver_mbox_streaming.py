"""mbox maildrops are indexed at login and served from byte offsets in
pieces: the result equals the whole-file parser's (parse_mbox,
mbox_message_content, to_wire_form) for any input and any read size, and a
large mbox is logged into and RETR'd with bounded memory."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reference_server.store import maildrop as storage
from reference_server.store.maildrop import (
    MboxStore,
    mbox_message_content,
    parse_mbox,
    to_wire_form,
)

PIECES = [
    b"From a@b Mon Jan  1 00:00:00 2024\n",
    b"From x\r\n",
    b"From \n",
    b">From quoted\n",
    b">>From twice\n",
    b">>>>>>>>>>From many\n",
    b">>>>>>>>>>\n",
    b">Fro\n",
    b">From",
    b"From inside\n",
    b"\n",
    b"\r\n",
    b"\r",
    b".\n",
    b"text line\n",
    b"a longer line of text that crosses small read sizes\n",
    b"no line end",
    b"x" * 40,
]


def random_mbox(rng: random.Random) -> bytes:
    messages = []
    for _ in range(rng.randint(1, 5)):
        body = b"".join(rng.choice(PIECES) for _ in range(rng.randint(0, 12)))
        messages.append(rng.choice(PIECES[:3]) + body + rng.choice([b"\n", b"\r\n", b""]))
    return rng.choice([b"", b"\n", b"\r\n\n"]) + b"".join(messages)


def whole_file_view(data: bytes) -> list[tuple[str, bytes]]:
    ranges = parse_mbox(data)
    uids = storage._unique([hashlib.sha256(data[a:b]).hexdigest()[:40] for a, b in ranges])
    return [
        (uid, to_wire_form(mbox_message_content(data, a, b)))
        for (a, b), uid in zip(ranges, uids, strict=True)
    ]


def streamed_view(path: Path) -> list[tuple[str, bytes]]:
    maildrop = MboxStore(str(path.parent / "{user}")).open(path.name)
    try:
        view = []
        for message in maildrop.messages:
            content = b"".join(message.chunks())
            assert message.size == len(content), message
            view.append((message.uid, content))
        return view
    finally:
        maildrop.release()


@pytest.mark.parametrize("read_octets", [1, 2, 3, 7, 64])
def test_streamed_index_and_content_equal_the_whole_file_parser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_octets: int
) -> None:
    """Every read size splits lines, separators and '>From' at every place."""
    monkeypatch.setattr(storage, "STREAM_CHUNK_OCTETS", read_octets)
    monkeypatch.setattr(storage, "MBOX_SCAN_OCTETS", read_octets)
    monkeypatch.setattr(storage, "SMALL_MESSAGE_OCTETS", 0)  # every message streamed
    rng = random.Random(read_octets)
    for case in range(150):
        data = random_mbox(rng)
        path = tmp_path / f"u{case}"
        path.write_bytes(data)
        try:
            expected = whole_file_view(data)
        except storage.MaildropCorrupt:
            with pytest.raises(storage.MaildropCorrupt):
                streamed_view(path)
            continue
        assert streamed_view(path) == expected, data


def test_small_and_streamed_messages_give_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"From a\n>From x\nbody\n\nFrom b\r\nline\r\n\r\n"
    (tmp_path / "u").write_bytes(data)
    small = streamed_view(tmp_path / "u")
    monkeypatch.setattr(storage, "SMALL_MESSAGE_OCTETS", 0)
    monkeypatch.setattr(storage, "STREAM_CHUNK_OCTETS", 3)
    assert streamed_view(tmp_path / "u") == small == whole_file_view(data)


def test_streamed_commit_keeps_survivors_and_mail_appended_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "MBOX_SCAN_OCTETS", 5)  # the copy crosses every range edge
    data = b"\nFrom a\none\n\nFrom b\ntwo\n\nFrom c\nthree\n"
    path = tmp_path / "u"
    path.write_bytes(data)
    store = MboxStore(str(tmp_path / "{user}"))
    maildrop = store.open("u")
    appended = b"\nFrom d\nfour\n"
    with open(path, "ab") as mbox:
        mbox.write(appended)
    maildrop.commit([maildrop.messages[1]])
    maildrop.release()
    assert path.read_bytes() == b"\nFrom a\none\n\nFrom c\nthree\n" + appended


def test_streamed_commit_refuses_when_the_snapshot_bytes_changed(tmp_path: Path) -> None:
    path = tmp_path / "u"
    path.write_bytes(b"From a\none\n\nFrom b\ntwo\n")
    maildrop = MboxStore(str(tmp_path / "{user}")).open("u")
    with open(path, "r+b") as mbox:
        mbox.seek(7)
        mbox.write(b"ONE")  # same length, other bytes: only the digest sees it
    with pytest.raises(storage.MaildropError, match="changed by another program"):
        maildrop.commit([maildrop.messages[0]])
    maildrop.release()
    assert path.read_bytes() == b"From a\nONE\n\nFrom b\ntwo\n"


BOUNDED_RUN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from reference_server.store.maildrop import MboxStore
    path = Path(sys.argv[1])
    maildrop = MboxStore(str(path.parent / "{user}")).open(path.name)
    total = 0
    for message in maildrop.messages:
        for piece in message.chunks():
            total += len(piece)
    assert total == sum(m.size for m in maildrop.messages)
    maildrop.release()
    # VmHWM, not ru_maxrss: the latter keeps the forking parent's peak
    status = Path("/proc/self/status").read_text()
    peak = next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM:"))
    print(len(maildrop.messages), total, peak)
    """
)


def test_a_large_mbox_is_indexed_and_read_with_bounded_memory(tmp_path: Path) -> None:
    """64 MiB of mbox (one 40 MiB message, many small ones): the process's
    peak RSS stays far below the mbox's size."""
    path = tmp_path / "big"
    line = b"a line of a large message, long enough to count\n"
    with open(path, "wb") as mbox:
        mbox.write(b"From big\nSubject: big\n\n")
        mbox.write(line * (40 * 2**20 // len(line)))
        for n in range(3000):
            mbox.write(b"\nFrom small\nSubject: %d\n\n" % n + line * 160)
    assert path.stat().st_size > 60 * 2**20
    done = subprocess.run(
        [sys.executable, "-c", BOUNDED_RUN, str(path)],
        capture_output=True,
        check=True,
        timeout=300,
    )
    count, total, peak_kib = (int(x) for x in done.stdout.split())
    assert count == 3001 and total > path.stat().st_size
    assert peak_kib < 40 * 1024, f"peak RSS {peak_kib} KiB for a {path.stat().st_size} octet mbox"
