"""Reading qcow2 images, the VISO's format, without qemu-img.

What is read (QEMU's docs/interop/qcow2.txt; all numbers big-endian):

    header        magic "QFI\\xfb", version 2 or 3, cluster_bits, virtual size,
                  L1 table offset and size, backing file name; version 3 adds
                  feature bits and the compression type
    L1 table      one entry per L2 table: bits 9-55 its offset (0: not allocated)
    L2 table      one 8-byte entry per guest cluster:
                    bit 62 clear: bits 9-55 the host offset of the cluster, bit 0
                                  (version 3) "reads as zeros"; offset 0 and bit 0
                                  clear: unallocated (the backing file's, or zeros)
                    bit 62 set:   compressed (`qemu-img convert -c`): with
                                  x = 62 - (cluster_bits - 8), bits 0..x-1 the host
                                  byte offset and bits x..61 the number of 512-byte
                                  sectors after the one holding that offset; the
                                  data is raw deflate (no zlib header) that inflates
                                  to one cluster

Refused with a clear error, because reading them wrongly would show another disk:
encryption, external data files, extended L2 entries (subclusters) and zstd
compression (the VISO is written with zlib, QEMU's default). Snapshots are
ignored: the active L1 table is the disk a VM boots.
"""

from __future__ import annotations

import struct
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

from mixboot.diskimage import Disk, open_image
from mixboot.image import ImageError

HEADER_V2 = struct.Struct(">4sIQIIQIIQQIIQ")  # 72 bytes
HEADER_V3_EXTRA = struct.Struct(">QQQII")  # 28 bytes: features, refcount order, length
OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00  # bits 9-55
COMPRESSED = 1 << 62
ZERO = 1
# Incompatible feature bits (version 3).
DIRTY, CORRUPT, EXTERNAL_DATA, COMPRESSION_TYPE, EXTENDED_L2 = (1 << n for n in range(5))
KNOWN_INCOMPATIBLE = DIRTY | CORRUPT | EXTERNAL_DATA | COMPRESSION_TYPE | EXTENDED_L2
MAX_BACKING_DEPTH = 8
# Clusters kept inflated: reading a file touches the same few clusters again and
# again (inode table, directory, extents); 64 of 64 KiB is 4 MiB at most.
CACHE_CLUSTERS = 64


class Qcow2Disk:
    """The virtual disk of a qcow2 file."""

    format = "qcow2"

    def __init__(self, path: Path, f: BinaryIO, depth: int = 0) -> None:
        self.path = path
        self._f = f
        self.file_size = f.seek(0, 2)
        head = self._pread(0, HEADER_V2.size, "the header")
        (_magic, self.version, backing_offset, backing_size, self.cluster_bits, self.size,
         crypt, l1_size, l1_offset, _rt_offset, _rt_clusters, _snapshots,
         _snapshot_offset) = HEADER_V2.unpack(head)
        if self.version not in (2, 3):
            raise ImageError(f"{path}: qcow2 version {self.version}; only versions 2 and 3 "
                             "exist")
        if not 9 <= self.cluster_bits <= 21:
            raise ImageError(f"{path}: qcow2 cluster_bits {self.cluster_bits} is outside "
                             "9..21: a damaged header")
        if crypt:
            raise ImageError(f"{path}: an encrypted qcow2 image; mix viso reads only "
                             "unencrypted ones")
        self.cluster_size = 1 << self.cluster_bits
        incompatible = 0
        compression = 0
        if self.version == 3:
            extra = self._pread(HEADER_V2.size, HEADER_V3_EXTRA.size, "the version 3 header")
            incompatible, _compat, _autoclear, _refcount_order, header_length = \
                HEADER_V3_EXTRA.unpack(extra)
            if incompatible & COMPRESSION_TYPE and header_length > 104:
                compression = self._pread(104, 1, "the compression type")[0]
        self._check_features(incompatible, compression)
        l2_entries = self.cluster_size // 8
        needed = -(-self.size // (self.cluster_size * l2_entries))
        if l1_size < needed:
            raise ImageError(f"{path}: the L1 table has {l1_size} entries, fewer than the "
                             f"{needed} a {self.size}-byte disk needs: a damaged header")
        table = self._pread(l1_offset, 8 * needed, "the L1 table")
        self._l1 = struct.unpack(f">{needed}Q", table)
        self._l2_cache: OrderedDict[int, tuple[int, ...]] = OrderedDict()
        self._clusters: OrderedDict[int, bytes] = OrderedDict()
        self.backing: Disk | None = None
        if backing_offset:
            if depth >= MAX_BACKING_DEPTH:
                raise ImageError(f"{path}: more than {MAX_BACKING_DEPTH} backing files "
                                 "(a loop?)")
            name = self._pread(backing_offset, backing_size, "the backing file name").decode(
                "utf-8", "replace")
            backing = Path(name) if name.startswith("/") else path.parent / name
            if not backing.is_file():
                raise ImageError(f"{path}: its backing file {backing} does not exist")
            self.backing = open_image(backing, depth + 1)

    def _check_features(self, incompatible: int, compression: int) -> None:
        if incompatible & ~KNOWN_INCOMPATIBLE:
            raise ImageError(f"{self.path}: qcow2 feature bits {incompatible:#x} this reader "
                             "does not know; `qemu-img convert -O qcow2` writes a plain copy")
        if incompatible & CORRUPT:
            raise ImageError(f"{self.path}: QEMU marked this qcow2 image corrupt; "
                             "`qemu-img check -r all` may repair it")
        if incompatible & EXTERNAL_DATA:
            raise ImageError(f"{self.path}: the data of this qcow2 image is in an external "
                             "file, which mix viso does not read")
        if incompatible & EXTENDED_L2:
            raise ImageError(f"{self.path}: a qcow2 image with subclusters (extended_l2), "
                             "which mix viso does not read")
        if compression != 0:
            raise ImageError(f"{self.path}: compressed with zstd (compression type "
                             f"{compression}); mix viso reads zlib-compressed images, as "
                             "`qemu-img convert -c` writes by default")
        # DIRTY (refcounts not up to date after a crash) does not change what the
        # L1/L2 tables say, which is all that is read here.

    def _pread(self, offset: int, length: int, what: str) -> bytes:
        if offset + length > self.file_size:
            raise ImageError(f"{self.path}: {what} (bytes {offset}..{offset + length}) lies "
                             f"past the end of the {self.file_size}-byte file: truncated or "
                             "damaged qcow2 image")
        self._f.seek(offset)
        return self._f.read(length)

    def _l2(self, offset: int) -> tuple[int, ...]:
        table = self._l2_cache.get(offset)
        if table is None:
            if offset % self.cluster_size:
                raise ImageError(f"{self.path}: an L2 table at unaligned offset {offset}: "
                                 "damaged qcow2 image")
            raw = self._pread(offset, self.cluster_size, "an L2 table")
            table = struct.unpack(f">{self.cluster_size // 8}Q", raw)
            self._l2_cache[offset] = table
            if len(self._l2_cache) > CACHE_CLUSTERS:
                self._l2_cache.popitem(last=False)
        return table

    def _cluster(self, index: int) -> bytes:
        """Guest cluster INDEX, whole."""
        cached = self._clusters.get(index)
        if cached is not None:
            self._clusters.move_to_end(index)
            return cached
        data = self._read_cluster(index)
        self._clusters[index] = data
        if len(self._clusters) > CACHE_CLUSTERS:
            self._clusters.popitem(last=False)
        return data

    def _read_cluster(self, index: int) -> bytes:
        size = self.cluster_size
        l2_entries = size // 8
        l1_entry = self._l1[index // l2_entries]
        entry = 0
        if l1_entry & OFFSET_MASK:
            entry = self._l2(l1_entry & OFFSET_MASK)[index % l2_entries]
        if entry & COMPRESSED:
            return self._inflate(entry)
        host = entry & OFFSET_MASK
        if self.version == 3 and entry & ZERO:
            return bytes(size)
        if host:
            return self._pread(host, size, f"guest cluster {index}")
        if self.backing is not None:
            start = index * size
            return self.backing.read(start, min(size, self.backing.size - start)).ljust(
                size, b"\0") if start < self.backing.size else bytes(size)
        return bytes(size)

    def _inflate(self, entry: int) -> bytes:
        x = 62 - (self.cluster_bits - 8)
        host = entry & ((1 << x) - 1)
        sectors = (entry >> x) & ((1 << (62 - x)) - 1)
        # The compressed data may end anywhere in its last sector, and that sector
        # may be the file's last (and short).
        length = min((sectors + 1) * 512 - host % 512, self.file_size - host)
        if length <= 0:
            raise ImageError(f"{self.path}: a compressed cluster at {host} lies past the end "
                             "of the file: truncated qcow2 image")
        raw = self._pread(host, length, "a compressed cluster")
        try:
            data = zlib.decompressobj(-15).decompress(raw, self.cluster_size)
        except zlib.error as e:
            raise ImageError(f"{self.path}: a compressed cluster at {host} does not inflate "
                             f"({e}): damaged qcow2 image") from None
        if len(data) != self.cluster_size:
            raise ImageError(f"{self.path}: a compressed cluster at {host} inflates to "
                             f"{len(data)} bytes, not {self.cluster_size}: damaged or "
                             "truncated qcow2 image")
        return data

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset + length > self.size:
            raise ImageError(f"{self.path}: read of {length} bytes at {offset} is past the end "
                             f"of the {self.size}-byte virtual disk")
        out = bytearray()
        while length > 0:
            index, within = divmod(offset, self.cluster_size)
            n = min(length, self.cluster_size - within)
            out += self._cluster(index)[within:within + n]
            offset += n
            length -= n
        return bytes(out)

    def close(self) -> None:
        self._f.close()
        if self.backing is not None:
            self.backing.close()
