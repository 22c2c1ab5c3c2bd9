"""ELF dynamic-linking facts of a staged tree (read with pyelftools): which shared
libraries it carries (DT_SONAME) and which it needs (DT_NEEDED). These become a
package's soname provides and its automatic dependencies."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class ElfInfo:
    path: str  # path inside the package, e.g. /usr/sbin/sshd
    soname: str | None
    needed: tuple[str, ...]
    interpreter: str | None


@dataclass
class TreeLinkage:
    """What a package's ELF files provide and need."""

    files: list[ElfInfo] = field(default_factory=list)

    @property
    def has_elf(self) -> bool:
        return bool(self.files)

    @property
    def sonames(self) -> set[str]:
        """Shared libraries the tree carries: each DT_SONAME, and the file name of
        any ELF shared object (bundled wheel libraries may lack a soname)."""
        names = {f.soname for f in self.files if f.soname}
        names |= {Path(f.path).name for f in self.files}
        return names

    def external_needs(self) -> dict[str, list[str]]:
        """soname -> the files needing it, for sonames the tree does not carry."""
        own = self.sonames
        needs: dict[str, list[str]] = {}
        for f in self.files:
            for lib in f.needed:
                if lib not in own:
                    needs.setdefault(lib, []).append(f.path)
        return dict(sorted(needs.items()))

    def provided_sonames(self) -> list[str]:
        """The DT_SONAMEs of the shared libraries in the tree (what others may link)."""
        return sorted({f.soname for f in self.files if f.soname})


def is_elf(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(4) == ELF_MAGIC


def read_elf(path: Path, inside: str) -> ElfInfo | None:
    """Dynamic section facts of one file, or None when it is not an ELF object."""
    if not is_elf(path):
        return None
    with path.open("rb") as f:
        try:
            elf = ELFFile(f)
            soname = None
            needed: list[str] = []
            interp = None
            for seg in elf.iter_segments():
                if isinstance(seg, InterpSegment):
                    interp = seg.get_interp_name()
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    for tag in section.iter_tags():
                        if tag.entry.d_tag == "DT_NEEDED":
                            needed.append(tag.needed)  # type: ignore[attr-defined]
                        elif tag.entry.d_tag == "DT_SONAME":
                            soname = tag.soname  # type: ignore[attr-defined]
        except ELFError as e:
            raise ValueError(f"{path}: unreadable ELF file: {e}") from e
    return ElfInfo(inside, soname, tuple(needed), interp)


def scan_tree(root: Path) -> TreeLinkage:
    """Every ELF file under ROOT (the package's files/ directory), sorted by path."""
    linkage = TreeLinkage()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            info = read_elf(full, "/" + full.relative_to(root).as_posix())
            if info is not None:
                linkage.files.append(info)
    return linkage
