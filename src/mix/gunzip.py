"""Reading gzip streams: inline, or on a second thread so that inflating a package
overlaps with writing its files (zlib and hashlib release the GIL while they work)."""

from __future__ import annotations

import queue
import threading
import zlib
from collections.abc import Iterator
from typing import IO, Any

RAW_CHUNK = 256 * 1024
MAX_OUT = 1024 * 1024  # bounded output per step: a gzip bomb cannot exhaust memory
DEPTH = 24  # threaded: at most ~24 MiB run ahead of the reader


class GzipError(Exception):
    pass


def _inflate(raw: IO[bytes], hasher: Any, stop: Any) -> Iterator[bytes]:
    """Decompressed pieces of raw (one or more gzip members); hasher sees every raw byte
    up to the end of the file."""
    d = zlib.decompressobj(31)
    try:
        while not stop():
            data = raw.read(RAW_CHUNK)
            if hasher is not None:
                hasher.update(data)
            if not data:
                break
            while data and not stop():
                if d.eof:  # another gzip member follows
                    rest = d.unused_data + data
                    if not rest.strip(b"\0"):
                        break
                    d = zlib.decompressobj(31)
                    data = rest
                out = d.decompress(data, MAX_OUT)
                data = d.unconsumed_tail
                if out:
                    yield out
    except zlib.error as e:
        raise GzipError(str(e)) from None
    if not stop() and not d.eof:
        raise GzipError("compressed data ends before the end of the gzip stream (truncated file)")


class GunzipReader:
    """A read()-able stream of the decompressed bytes of raw (a gzip file).

    read(n) returns at most n bytes (fewer at the end of a piece), b"" at the end.
    Errors (corrupt or truncated gzip, I/O) are raised by read().
    """

    def __init__(self, raw: IO[bytes], hasher: Any = None, threaded: bool = False) -> None:
        self.stopped = False
        self.buf = b""
        self.pos = 0
        self.eof = False
        self.thread: threading.Thread | None = None
        self.pieces = _inflate(raw, hasher, lambda: self.stopped)
        if threaded:
            self.q: queue.Queue[bytes | BaseException | None] = queue.Queue(DEPTH)
            self.thread = threading.Thread(target=self._run, name="mix-gunzip", daemon=True)
            self.thread.start()

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self.stopped:
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for piece in self.pieces:
                if not self._put(piece):
                    return
            self._put(None)
        except BaseException as e:  # noqa: BLE001 (handed to the reading thread)
            self._put(e)

    def _next_piece(self) -> bytes | None:
        if self.thread is None:
            return next(self.pieces, None)
        item = self.q.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def read(self, n: int = -1) -> bytes:
        if self.pos >= len(self.buf):
            if self.eof:
                return b""
            try:
                piece = self._next_piece()
            except BaseException:
                self.eof = True
                raise
            if piece is None:
                self.eof = True
                return b""
            self.buf, self.pos = piece, 0
        end = len(self.buf) if n < 0 else min(len(self.buf), self.pos + n)
        out = self.buf[self.pos:end] if self.pos or end < len(self.buf) else self.buf
        self.pos = end
        return out

    def drain(self) -> None:
        """Read to the end (so the hasher has seen the whole file and the trailer is checked)."""
        while self.read(MAX_OUT):
            pass

    def close(self) -> None:
        self.stopped = True
        if self.thread is None:
            return
        while self.thread.is_alive():
            try:
                self.q.get(timeout=0.05)
            except queue.Empty:
                pass
        self.thread.join()
