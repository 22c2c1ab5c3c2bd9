"""mix.decompress: both compressions read whole, and every cut, wrong byte or trailing
byte refused, straight at the stream level (the package-level tests are in
test_mix_badinput.py)."""

from __future__ import annotations

import gzip
import io
import os

import pytest
import zstandard

from mix.decompress import DecompressError, DecompressReader, compression_of

# more than one zstd block (128 KiB), some of it compressible
DATA = os.urandom(150_000) + b"mixos " * 40_000


def zstd(data: bytes, content_size: bool = True) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_checksum=True,
                                    write_content_size=content_size).compress(data)


def read_all(blob: bytes, threaded: bool = False) -> bytes:
    r = DecompressReader(io.BytesIO(blob), compression_of(blob[:4]) or "", threaded=threaded)
    try:
        out = b""
        while piece := r.read(1 << 20):
            out += piece
        return out
    finally:
        r.close()


@pytest.mark.parametrize("threaded", [False, True])
def test_both_compressions_read_back_and_hash_every_byte(threaded: bool) -> None:
    import hashlib

    for blob in (gzip.compress(DATA, mtime=0), zstd(DATA)):
        assert read_all(blob, threaded) == DATA
        h = hashlib.sha256()
        r = DecompressReader(io.BytesIO(blob), compression_of(blob) or "", h, threaded)
        r.drain()
        r.close()
        assert h.hexdigest() == hashlib.sha256(blob).hexdigest()


def test_zstd_frames_in_sequence_and_skippable_frames_are_read() -> None:
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"12345"
    blob = zstd(DATA[:1000]) + skippable + zstd(DATA[1000:], content_size=False)
    assert read_all(blob) == DATA


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_every_cut_is_refused(compression: str) -> None:
    blob = gzip.compress(DATA, mtime=0) if compression == "gzip" else zstd(DATA)
    cuts = list(range(4, len(blob) - 64, 997)) + list(range(len(blob) - 64, len(blob)))
    for cut in cuts:
        with pytest.raises(DecompressError):
            read_all(blob[:cut])


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_trailing_data_and_flipped_bytes_are_refused(compression: str) -> None:
    blob = gzip.compress(DATA, mtime=0) if compression == "gzip" else zstd(DATA)
    for trailing in (b"x", b"more than a magic number's worth"):
        with pytest.raises(DecompressError):
            read_all(blob + trailing)
    for where in (len(blob) // 2, len(blob) - 2):
        bad = bytearray(blob)
        bad[where] ^= 0x55
        with pytest.raises(DecompressError):
            read_all(bytes(bad))
    if compression == "gzip":  # zero padding after a gzip member is tolerated
        assert read_all(blob + b"\0" * 100) == DATA


def test_output_per_step_is_bounded() -> None:
    """A zstd bomb (1 GiB of zeros in a few KB) comes out in pieces of at most 1 MiB."""
    cobj = zstandard.ZstdCompressor(level=1).compressobj()
    zero = bytes(1 << 20)
    blob = b"".join(cobj.compress(zero) for _ in range(1024)) + cobj.flush()
    assert len(blob) < 1 << 20
    r = DecompressReader(io.BytesIO(blob), "zstd")
    sizes = [len(r.read(1 << 30)) for _ in range(50)]
    r.close()
    assert max(sizes) <= 64 * 1024 and sum(sizes) > 0
