"""A server on its own event loop in a background thread: what the
pytest fixtures and in-process tests start (`start_server`,
`start_smtp_server`). The subclass says what to listen on (`_listen`)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Self


class BackgroundServerHandle:
    thread_name = "reference-server"
    server: Any  # a Pop3Server or SmtpServer: what `_listen` starts, closed on close()

    def _start_thread(self, port: int) -> None:
        """Run the loop on a thread; return once listening (or re-raise why not)."""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"{self.thread_name}-{port}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    async def _listen(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._listen())
        except BaseException as problem:
            self._startup_error = problem
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.server.close())
        self._loop.close()

    host: str
    port: int

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def close(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
