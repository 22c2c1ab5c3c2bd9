"""gzip decompression on a second thread, so that inflating a package overlaps with
writing its files (zlib and hashlib release the GIL while they work)."""

from __future__ import annotations

import queue
import threading
import zlib
from typing import IO, Any

RAW_CHUNK = 256 * 1024
MAX_OUT = 1024 * 1024  # bounded output per step: a gzip bomb cannot exhaust memory
DEPTH = 24  # so at most ~24 MiB run ahead of the writer per package


class GzipError(Exception):
    pass


class ThreadedGunzip:
    """A read()-able stream of the decompressed bytes of raw (a gzip file).

    hasher, if given, sees every raw byte up to the end of the file. Errors of the
    worker (corrupt or truncated gzip, I/O) are raised by read().
    """

    def __init__(self, raw: IO[bytes], hasher: Any = None) -> None:
        self.raw = raw
        self.hasher = hasher
        self.q: queue.Queue[bytes | BaseException | None] = queue.Queue(DEPTH)
        self.stop = False
        self.buf = b""
        self.pos = 0
        self.eof = False
        self.thread = threading.Thread(target=self._run, name="mix-gunzip", daemon=True)
        self.thread.start()

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self.stop:
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            d = zlib.decompressobj(31)
            while not self.stop:
                data = self.raw.read(RAW_CHUNK)
                if self.hasher is not None:
                    self.hasher.update(data)
                if not data:
                    break
                while data and not self.stop:
                    if d.eof:  # another gzip member follows
                        rest = d.unused_data + data
                        if not rest.strip(b"\0"):
                            break
                        d = zlib.decompressobj(31)
                        data = rest
                    out = d.decompress(data, MAX_OUT)
                    data = d.unconsumed_tail
                    if out and not self._put(out):
                        return
            if not self.stop and not d.eof:
                raise GzipError("compressed data ends before the end of the gzip stream "
                                "(truncated file)")
            self._put(None)
        except zlib.error as e:
            self._put(GzipError(str(e)))
        except BaseException as e:  # noqa: BLE001 (handed to the reading thread)
            self._put(e)

    def read(self, n: int = -1) -> bytes:
        if self.pos >= len(self.buf):
            if self.eof:
                return b""
            item = self.q.get()
            if item is None:
                self.eof = True
                return b""
            if isinstance(item, BaseException):
                self.eof = True
                raise item
            self.buf, self.pos = item, 0
        end = len(self.buf) if n < 0 else min(len(self.buf), self.pos + n)
        out = self.buf[self.pos:end]
        self.pos = end
        return out

    def drain(self) -> None:
        """Read to the end (so the hasher has seen the whole file and the trailer is checked)."""
        while self.read(MAX_OUT):
            pass

    def close(self) -> None:
        self.stop = True
        while self.thread.is_alive():
            try:
                self.q.get(timeout=0.05)
            except queue.Empty:
                pass
        self.thread.join()
