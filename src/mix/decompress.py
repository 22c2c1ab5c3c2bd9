"""Reading a package's compressed stream, gzip or zstd (told apart by their magic bytes,
never by the file name): inline, or on a second thread so that decompressing a package
overlaps with writing its files (zlib, zstandard and hashlib release the GIL while they
work).

gzip needs only the standard library and is what every mix reads. zstd needs the
`zstandard` module (Debian and MixOS: python3-zstandard); it is imported only when a
zstd stream is met, so a mix without it still reads gzip packages.
"""

from __future__ import annotations

import queue
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any, ClassVar

GZIP = "gzip"
ZSTD = "zstd"
COMPRESSIONS = (GZIP, ZSTD)
MAGIC = {GZIP: b"\x1f\x8b", ZSTD: b"\x28\xb5\x2f\xfd"}

RAW_CHUNK = 256 * 1024
MAX_OUT = 1024 * 1024  # bounded output per step: a decompression bomb cannot exhaust memory
# Reading inline is for the metadata (the first member): small steps decompress little
# more than that.
INLINE_STEP = 64 * 1024
DEPTH = 24  # threaded: at most ~24 MiB run ahead of the reader
# zstd levels up to 19 use at most an 8 MiB window; a frame asking for more (libzstd's
# own limit is 128 MiB, memory the reader must give) is refused rather than obeyed.
ZSTD_MAX_WINDOW = 8 * 1024 * 1024


class DecompressError(Exception):
    pass


def compression_of(head: bytes) -> str | None:
    """GZIP or ZSTD from a file's first four bytes; None when it is neither."""
    for name, magic in MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def zstd_module() -> Any:
    """The zstandard module, or None when this Python lacks it."""
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


def _inflate(raw: IO[bytes], hasher: Any, stop: Callable[[], bool], step: int
             ) -> Iterator[bytes]:
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
                out = d.decompress(data, step)
                data = d.unconsumed_tail
                if out:
                    yield out
    except zlib.error as e:
        raise DecompressError(str(e)) from None
    if stop():
        return
    if not d.eof:
        raise DecompressError("compressed data ends before the end of the gzip stream "
                              "(truncated file)")
    if d.unused_data.strip(b"\0"):  # zeros: the padding some writers add after a member
        raise DecompressError("data after the end of the gzip stream")


class _ZstdFrames:
    """Follows the frame and block headers of a zstd stream (RFC 8878) as its raw bytes go
    by, to tell whether it ends at the end of a frame. zstandard's streaming reader (the
    one whose output per read is bounded) returns what it has when its input runs out in
    the middle of a frame and does not say so; a truncated package must not pass."""

    _WANT: ClassVar[dict[str, int]] = {"magic": 4, "descriptor": 1, "block": 3, "skippable": 4}

    def __init__(self) -> None:
        self.state = "magic"
        self.head = b""
        self.skip = 0  # bytes to pass over before the next header
        self.checksum = False
        self.frames = 0

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self.skip:
                n = min(self.skip, end - pos)
                self.skip -= n
                pos += n
                continue
            want = self._WANT[self.state] - len(self.head)
            self.head += data[pos:pos + want]
            pos += want
            if len(self.head) == self._WANT[self.state]:
                self._header(self.head)
                self.head = b""

    def _header(self, h: bytes) -> None:
        if self.state == "magic":
            if h == MAGIC[ZSTD]:
                self.state = "descriptor"
            elif h[1:] == b"\x2a\x4d\x18" and h[0] & 0xF0 == 0x50:
                self.state = "skippable"
            else:
                raise DecompressError("data after the end of the zstd stream")
        elif self.state == "skippable":
            self.skip = int.from_bytes(h, "little")
            self.state = "magic"
        elif self.state == "descriptor":
            d = h[0]
            single_segment = bool(d & 0x20)
            self.checksum = bool(d & 0x04)
            self.skip = (0 if single_segment else 1) + (0, 1, 2, 4)[d & 3] \
                + ((1 if single_segment else 0), 2, 4, 8)[d >> 6]
            self.state = "block"
        else:
            header = int.from_bytes(h, "little")
            size = header >> 3
            self.skip = 1 if (header >> 1) & 3 == 1 else size  # an RLE block holds one byte
            if header & 1:  # the frame's last block
                self.skip += 4 if self.checksum else 0
                self.frames += 1
                self.state = "magic"

    def complete(self) -> bool:
        return self.frames > 0 and self.state == "magic" and not self.head and not self.skip


class _ZstdSource:
    """The raw file as zstandard reads it: every byte also goes to the hasher and the
    frame tracker."""

    def __init__(self, raw: IO[bytes], hasher: Any, frames: _ZstdFrames) -> None:
        self.raw = raw
        self.hasher = hasher
        self.frames = frames

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if self.hasher is not None:
            self.hasher.update(data)
        self.frames.feed(data)
        return data


def _unzstd(raw: IO[bytes], hasher: Any, stop: Callable[[], bool], step: int
            ) -> Iterator[bytes]:
    """Decompressed pieces of raw (zstd frames); hasher sees every raw byte up to the end
    of the file."""
    zstandard = zstd_module()
    if zstandard is None:
        raise DecompressError("zstd data, and the Python module zstandard is missing")
    frames = _ZstdFrames()
    src = _ZstdSource(raw, hasher, frames)
    try:
        dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        reader = dctx.stream_reader(src, read_size=RAW_CHUNK, read_across_frames=True,
                                    closefd=False)
        while not stop():
            out = reader.read(step)
            if not out:
                break
            yield out
        if stop():
            return
        if src.read(RAW_CHUNK):
            raise DecompressError("data after the end of the zstd stream")
    except zstandard.ZstdError as e:
        raise DecompressError(str(e)) from None
    if not frames.complete():
        raise DecompressError("compressed data ends before the end of the zstd frame "
                              "(truncated file)")


class DecompressReader:
    """A read()-able stream of the decompressed bytes of raw (a gzip or zstd file).

    read(n) returns at most n bytes (fewer at the end of a piece), b"" at the end.
    Errors (corrupt or truncated data, I/O) are raised by read().
    """

    def __init__(self, raw: IO[bytes], compression: str, hasher: Any = None,
                 threaded: bool = False) -> None:
        """threaded: decompress on a second thread in steps of MAX_OUT (for reading whole
        packages); else inline, in steps of INLINE_STEP."""
        self.stopped = False
        self.buf = b""
        self.pos = 0
        self.eof = False
        self.thread: threading.Thread | None = None
        pieces = {GZIP: _inflate, ZSTD: _unzstd}[compression]
        self.pieces = pieces(raw, hasher, lambda: self.stopped,
                             MAX_OUT if threaded else INLINE_STEP)
        if threaded:
            self.q: queue.Queue[bytes | BaseException | None] = queue.Queue(DEPTH)
            self.thread = threading.Thread(target=self._run, name="mix-decompress",
                                           daemon=True)
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
        out = self.read_view(n)
        return out if isinstance(out, bytes) else bytes(out)

    def read_view(self, n: int = -1) -> bytes | memoryview:
        """Like read(), without copying: the view is valid until the next read."""
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
        out = memoryview(self.buf)[self.pos:end] if self.pos or end < len(self.buf) \
            else self.buf
        self.pos = end
        return out

    def drain(self) -> None:
        """Read to the end (so the hasher has seen the whole file and the end is checked)."""
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
