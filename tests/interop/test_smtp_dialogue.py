"""interop/smtp_dialogue.py, the raw transcript tool of the minimal
reproductions in docs/interop-smtp.md: every write on its own line, an
unanswered write shown as an empty answer, a close as <EOF>, the escapes
typed in a shell decoded."""

from __future__ import annotations

import socket
import threading

from interop.smtp_dialogue import decode_escapes, dialogue, main


def _server(script: list[bytes | None]) -> tuple[int, threading.Thread]:
    """A one-connection server: greets, then for each read sends the next
    scripted answer (None: stay silent; the last answer closes)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            conn.sendall(b"220 test ready\r\n")
            for answer in script:
                if not conn.recv(4096):
                    return
                if answer is not None:
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def test_each_write_has_its_answer_and_silence_shows_as_an_empty_answer():
    port, thread = _server([b"250 ok\r\n", None, b"221 bye\r\n"])
    lines = dialogue(port, [b"NOOP\r\n", b"RSET\r\n", b"QUIT\r\n"])
    thread.join(10)
    assert [line.split(maxsplit=1)[1] for line in lines] == [
        "S: b'220 test ready\\r\\n'",
        "C: b'NOOP\\r\\n'",
        "S: b'250 ok\\r\\n'",
        "C: b'RSET\\r\\n'",
        "S: b''",
        "C: b'QUIT\\r\\n'",
        "S: b'221 bye\\r\\n<EOF>'",
    ]


def test_shell_escapes_are_decoded_to_the_bytes_they_name():
    assert decode_escapes("BDAT 6\\r\\nabcd\\r\\n") == b"BDAT 6\r\nabcd\r\n"
    assert decode_escapes("a\\nb\\x00") == b"a\nb\x00"


def test_nobody_listening_is_a_one_line_error(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main([str(port), "NOOP\\r\\n"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("smtp_dialogue: ") and err.count("\n") == 1
