"""A minimal read-only ext4 reader: enough to read a few files of a MixOS root
file system inside a disk image (/etc/os-release, /boot/<kernel>/) without
mounting it.

What it reads (the kernel's Documentation/filesystems/ext4/; little-endian):

    superblock         at byte 1024: block size, blocks and inodes per group,
                       inode size, feature flags
    group descriptors  in the block after the superblock's; 32 bytes, or
                       s_desc_size with the 64bit feature (inode table hi bits)
    inodes             in their group's inode table: mode, size, flags and
                       i_block: an extent tree (header 0xF30A, index nodes down
                       to leaves of (logical block, length, physical block)), the
                       old direct/indirect block map, or a short symlink's target
    directories        scanned linearly, block by block: hashed (htree)
                       directories keep their entries in ordinary blocks too,
                       the index blocks look like one empty entry

Not read: the journal (an image made by a clean unmount or mkfs needs none),
extended attributes, inline data, encryption; a file system that needs them to
be read right is refused by name.
"""

from __future__ import annotations

import stat
import struct
from dataclasses import dataclass

from mixboot.diskimage import Disk
from mixboot.image import ImageError

MAGIC = 0xEF53
EXTENT_MAGIC = 0xF30A
ROOT_INODE = 2
EXTENTS_FL = 0x80000
INLINE_DATA_FL = 0x10000000
# Incompatible features whose data this reader would misread.
UNREADABLE = {0x1: "compression", 0x8: "journal_dev", 0x10: "meta_bg", 0x1000: "dirdata",
              0x8000: "inline_data", 0x10000: "encrypt"}
INCOMPAT_64BIT = 0x80
MAX_SYMLINKS = 40
# Extent tree nodes read for one file: a MixOS file has one (in its inode) or a
# handful; a damaged tree could otherwise send the reader through the whole disk.
MAX_EXTENT_NODES = 1024


@dataclass(frozen=True)
class Inode:
    number: int
    mode: int
    size: int
    flags: int
    block: bytes  # i_block, 60 bytes

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)


@dataclass(frozen=True)
class DirEntry:
    name: str
    inode: int
    file_type: int  # 1 file, 2 directory, 7 symlink (0 when the fs does not record it)


class Ext4:
    """The ext4 file system of a partition: bytes OFFSET..OFFSET+SIZE of DISK."""

    def __init__(self, disk: Disk, offset: int, size: int, where: str) -> None:
        self.disk = disk
        self.offset = offset
        self.size = size
        self.where = where  # for messages: "mixos.viso partition 3"
        sb = self._raw(1024, 1024)
        (_inodes, _blocks_lo, _r, _free_b, _free_i, self.first_data_block, log_block,
         _log_cluster, self.blocks_per_group, _cpg, self.inodes_per_group) = \
            struct.unpack_from("<11I", sb)
        magic, = struct.unpack_from("<H", sb, 0x38)
        if magic != MAGIC:
            raise ImageError(f"{where}: not an ext4 file system (no ext2/3/4 superblock)")
        rev, = struct.unpack_from("<I", sb, 0x4C)
        self.inode_size = struct.unpack_from("<H", sb, 0x58)[0] if rev >= 1 else 128
        incompat, = struct.unpack_from("<I", sb, 0x60)
        bad = [name for bit, name in UNREADABLE.items() if incompat & bit]
        if bad:
            raise ImageError(f"{where}: the ext4 file system uses {', '.join(bad)}, which "
                             "mix viso does not read")
        if log_block > 6 or self.inodes_per_group == 0 or self.inode_size < 128:
            raise ImageError(f"{where}: damaged ext4 superblock")
        self.block_size = 1024 << log_block
        self.desc_size = 32
        if incompat & INCOMPAT_64BIT:
            self.desc_size = struct.unpack_from("<H", sb, 0xFE)[0] or 64
        self.label = sb[0x78:0x88].split(b"\0")[0].decode("utf-8", "replace")
        self._tables: dict[int, int] = {}

    def _raw(self, offset: int, length: int) -> bytes:
        if offset + length > self.size:
            raise ImageError(f"{self.where}: the file system points past the end of its "
                             "partition: damaged ext4 file system")
        return self.disk.read(self.offset + offset, length)

    def _block(self, number: int, count: int = 1) -> bytes:
        return self._raw(number * self.block_size, count * self.block_size)

    def _inode_table(self, group: int) -> int:
        table = self._tables.get(group)
        if table is None:
            desc_block = self.first_data_block + 1
            desc = self._raw(desc_block * self.block_size + group * self.desc_size,
                             self.desc_size)
            table = struct.unpack_from("<I", desc, 0x8)[0]
            if self.desc_size >= 64:
                table |= struct.unpack_from("<I", desc, 0x28)[0] << 32
            self._tables[group] = table
        return table

    def inode_offset(self, number: int) -> int:
        """Where inode NUMBER is, in bytes from the start of the file system."""
        group, index = divmod(number - 1, self.inodes_per_group)
        return self._inode_table(group) * self.block_size + index * self.inode_size

    def inode(self, number: int) -> Inode:
        raw = self._raw(self.inode_offset(number), 128)
        mode, = struct.unpack_from("<H", raw, 0)
        size_lo, = struct.unpack_from("<I", raw, 0x4)
        flags, = struct.unpack_from("<I", raw, 0x20)
        size_hi, = struct.unpack_from("<I", raw, 0x6C)
        return Inode(number, mode, size_lo | size_hi << 32, flags, raw[0x28:0x28 + 60])

    def _extents(self, node: bytes, depth_left: int = 5,
                 budget: list[int] | None = None) -> list[tuple[int, int, int]]:
        """(logical block, physical block, count) of an extent (sub)tree. BUDGET
        bounds the tree nodes read, so that a damaged tree costs little."""
        budget = budget if budget is not None else [MAX_EXTENT_NODES]
        magic, entries, _max, depth = struct.unpack_from("<HHHH", node)
        budget[0] -= 1
        if magic != EXTENT_MAGIC or depth_left == 0 or budget[0] < 0 \
                or 12 + 12 * entries > len(node):
            raise ImageError(f"{self.where}: a damaged extent tree")
        out = []
        for n in range(entries):
            at = 12 + 12 * n
            if depth == 0:
                logical, length, start_hi, start_lo = struct.unpack_from("<IHHI", node, at)
                if length > 32768:  # an unwritten (preallocated) extent: reads as zeros
                    continue
                out.append((logical, start_lo | start_hi << 32, length))
            else:
                _logical, leaf_lo, leaf_hi = struct.unpack_from("<IIH", node, at)
                out += self._extents(self._block(leaf_lo | leaf_hi << 32), depth_left - 1,
                                     budget)
        return out

    def _mapped(self, inode: Inode, size: int) -> list[tuple[int, int, int]]:
        """The old ext2/3 block map: 12 direct blocks, then indirect ones; as far as
        the first SIZE bytes go."""
        pointers = struct.unpack("<15I", inode.block)
        per_block = self.block_size // 4
        out: list[tuple[int, int, int]] = []
        wanted = -(-size // self.block_size)

        def walk(block: int, level: int, logical: int) -> int:
            if level == 0:
                if block:
                    out.append((logical, block, 1))
                return logical + 1
            span = per_block ** level
            if not block:
                return logical + span
            for child in struct.unpack(f"<{per_block}I", self._block(block)):
                if logical >= wanted:
                    break
                logical = walk(child, level - 1, logical)
            return logical

        logical = 0
        for n, block in enumerate(pointers):
            if logical >= wanted:
                break
            logical = walk(block, max(0, n - 11), logical)
        return out

    def data(self, inode: Inode, limit: int = 16 << 20) -> bytes:
        """The contents of INODE (a file, directory or long symlink), at most LIMIT
        bytes (nothing read here is big; a damaged size must not fill memory)."""
        if inode.flags & INLINE_DATA_FL:
            raise ImageError(f"{self.where}: inode {inode.number} keeps its data inline, "
                             "which mix viso does not read")
        size = min(inode.size, limit)
        runs = (self._extents(inode.block) if inode.flags & EXTENTS_FL
                else self._mapped(inode, size))
        out = bytearray(size)
        for logical, physical, count in runs:
            start = logical * self.block_size
            if start >= size:
                continue
            n = min(count, -(-(size - start) // self.block_size))
            chunk = self._block(physical, n)[:size - start]
            out[start:start + len(chunk)] = chunk
        return bytes(out)

    def entries(self, inode: Inode) -> list[DirEntry]:
        if not inode.is_dir:
            raise ImageError(f"{self.where}: inode {inode.number} is not a directory")
        data = self.data(inode)
        out = []
        for base in range(0, len(data), self.block_size):
            at = base
            end = min(base + self.block_size, len(data))
            while at + 8 <= end:
                number, rec_len, name_len, file_type = struct.unpack_from("<IHBB", data, at)
                if rec_len < 8 or at + rec_len > end:
                    break  # a damaged block: the rest of it cannot be trusted
                if number and name_len:
                    name = data[at + 8:at + 8 + name_len].decode("utf-8", "surrogateescape")
                    if name not in (".", ".."):
                        out.append(DirEntry(name, number, file_type))
                at += rec_len
        return out

    def readlink(self, inode: Inode) -> str:
        if inode.size < 60 and not inode.flags & (EXTENTS_FL | INLINE_DATA_FL):
            raw = inode.block[:inode.size]  # a fast symlink: the target is in i_block
        else:
            raw = self.data(inode, limit=4096)
        return raw.decode("utf-8", "surrogateescape")

    def lookup(self, path: str) -> Inode | None:
        """The inode at absolute PATH (symlinks followed, relative to this file
        system's root, as for a chroot), or None if there is none."""
        parts = [p for p in path.split("/") if p]
        current = self.inode(ROOT_INODE)
        stack: list[Inode] = [current]
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == ".":
                continue
            if name == "..":
                if len(stack) > 1:
                    stack.pop()
                current = stack[-1]
                continue
            if not current.is_dir:
                return None
            found = next((e for e in self.entries(current) if e.name == name), None)
            if found is None:
                return None
            child = self.inode(found.inode)
            if child.is_symlink:
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise ImageError(f"{self.where}: too many symbolic links in {path}")
                target = self.readlink(child)
                if target.startswith("/"):
                    stack = [self.inode(ROOT_INODE)]
                parts = [p for p in target.split("/") if p] + parts
                current = stack[-1]
                continue
            stack.append(child)
            current = child
        return current

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes | None:
        inode = self.lookup(path)
        if inode is None or not inode.is_file:
            return None
        return self.data(inode, limit)

    def listdir(self, path: str) -> list[DirEntry] | None:
        inode = self.lookup(path)
        if inode is None or not inode.is_dir:
            return None
        return self.entries(inode)
