"""`python -m reference_server` leaves without the interpreter's teardown
(reference_server.quick_exit), and loses nothing by it: the exit status,
buffered output, log records and a worker thread's last step all survive."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pop3_testlib import PASSWORD, LineClient, ServerProcess

from reference_server.store.maildrop import MaildirStore

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]

EXITING_PROCESS = """
import logging, sys, threading, time
from reference_server.quick_exit import exit_now

done = sys.argv[1]
def last_step():
    time.sleep(0.2)
    with open(done, "w") as out:
        out.write("finished")
threading.Thread(target=last_step).start()
logging.basicConfig(stream=open(sys.argv[2], "w", buffering=8192), level=logging.INFO)
logging.getLogger("probe").info("event=probe-logged")
print("buffered line")
exit_now(3)
"""


def test_exit_now_keeps_the_status_output_log_and_worker_threads_work(tmp_path: Path) -> None:
    done, log = tmp_path / "done", tmp_path / "log"
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    environment["PYTHONPATH"] = str(REPOSITORY_ROOT)
    result = subprocess.run(
        [sys.executable, "-c", EXITING_PROCESS, str(done), str(log)],
        capture_output=True,  # stdout is a pipe: block-buffered, lost without a flush
        text=True,
        timeout=30,
        env=environment,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout == "buffered line\n"
    assert "event=probe-logged" in log.read_text()
    assert done.read_text() == "finished"


def test_a_server_stopped_after_a_committed_update_exits_0_with_the_deletion_on_disk(
    store: MaildirStore, users_file: Path
) -> None:
    server = ServerProcess(
        "--listen", "127.0.0.1:0", "--store", store.spec, "--users", str(users_file),
        "--log-level", "INFO",
    )  # fmt: skip
    try:
        client = LineClient(server.host, server.port)
        client.command("USER alice")
        logged_in = client.command(f"PASS {PASSWORD}")
        assert logged_in.startswith(b"+OK alice has"), logged_in
        count = int(logged_in.split()[3])
        assert client.command("DELE 1").startswith(b"+OK")
        assert client.command("QUIT").startswith(b"+OK")
        client.close()
    finally:
        status, _, log = server.stop()
    assert status == 0
    assert "event=shutdown" in log
    reopened = store.open("alice")
    try:
        assert len(reopened.messages) == count - 1
    finally:
        reopened.release()
