"""What every protocol's sans-I/O reply reader shares: the bytes received
so far, how far the replies read have consumed them, and EOF. A reader
subclasses `ReplyBuffer`, says when it is broken (a flood or EOF: nothing
more is kept) and parses from `_buffer[_start:]`, scanning for LF from
`_scan_from`."""

from __future__ import annotations


class ReplyBuffer:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._start = 0  # consumed prefix of _buffer
        self._scan_from = 0  # where to continue looking for LF
        self._eof = False

    @property
    def _broken(self) -> bool:
        raise NotImplementedError

    def feed(self, data: bytes) -> None:
        if self._eof:
            raise RuntimeError("feed() after feed_eof()")
        if not self._broken:
            self._buffer += data

    def feed_eof(self) -> None:
        self._eof = True

    @property
    def at_eof(self) -> bool:
        return self._eof

    @property
    def buffered(self) -> bytes:
        """Bytes received but not yet part of any reply."""
        return bytes(self._buffer[self._start :])

    def take_buffered(self) -> bytes:
        data = self.buffered
        self._discard_all()
        return data

    def _discard_all(self) -> None:
        self._buffer.clear()
        self._start = self._scan_from = 0
