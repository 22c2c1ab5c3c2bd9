"""Compiler hardening of every ELF file in a tree: PIE, RELRO, stack protector,
FORTIFY_SOURCE and a non-executable stack, read with pyelftools (what Debian's
`hardening-check` and `checksec` report), and a committed baseline to catch
regressions.

A statically linked executable carries libc.a's own __stack_chk_fail whatever
its code was compiled with, so for it the stack protector is read from GCC's
record of the compile options (.GCC.command.line, -frecord-gcc-switches): every
recorded compilation must have enabled it. Without that record it counts as absent.

    python -m mixbuild.packages.elfhardening artifacts/rootfs                 # print the table
    python -m mixbuild.packages.elfhardening artifacts/rootfs --check BASELINE.json
    python -m mixbuild.packages.elfhardening artifacts/rootfs --write-baseline BASELINE.json

A regression is a file of the baseline whose protection got weaker, or a file not
in the baseline that misses a protection the policy requires (MINIMUM). Files that
disappeared are reported, not failed."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.constants import P_FLAGS
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

ELF_MAGIC = b"\x7fELF"
DF_BIND_NOW = 0x8
DF_1_NOW = 0x1
DF_1_PIE = 0x08000000

# Ordered weakest first: a move to the left is a regression.
PIE_LEVELS = ("no", "dso", "pie")  # ET_EXEC / shared object / position-independent executable
RELRO_LEVELS = ("none", "partial", "full")

# What a file that is new to the baseline must have: every executable PIE, and
# everything with dynamic relocations at least partial RELRO and a non-executable stack.
MINIMUM = {"pie": "pie", "relro": "partial", "nx": True}


@dataclass(frozen=True)
class Hardening:
    """The protections of one ELF file (path relative to the tree root, with a leading /)."""

    path: str
    kind: str  # "exec" (has an interpreter or is ET_EXEC), "lib" (shared object), "static"
    pie: str  # one of PIE_LEVELS
    relro: str  # one of RELRO_LEVELS
    canary: bool  # references __stack_chk_fail (stack protector)
    fortify: int  # number of distinct *_chk functions it calls (FORTIFY_SOURCE)
    nx: bool  # PT_GNU_STACK without PF_X

    def row(self) -> str:
        return (f"{self.pie:4} {self.relro:8} {'yes' if self.canary else 'no':6} "
                f"{self.fortify:7} {'yes' if self.nx else 'NO':3} {self.kind:6} {self.path}")


STACK_PROTECTOR_ON = ("-fstack-protector", "-fstack-protector-strong", "-fstack-protector-all",
                     "-fstack-protector-explicit")
RECORD_SECTION = ".GCC.command.line"

HEADER = f"{'PIE':4} {'RELRO':8} {'CANARY':6} {'FORTIFY':7} {'NX':3} {'KIND':6} PATH"


def _symbol_names(elf: ELFFile) -> set[str]:
    names: set[str] = set()
    for name in (".dynsym", ".symtab"):
        section = elf.get_section_by_name(name)
        if isinstance(section, SymbolTableSection):
            names.update(sym.name for sym in section.iter_symbols() if sym.name)
    return names


def recorded_stack_protector(elf: ELFFile) -> bool:
    """Every compilation in GCC's option record enabled the stack protector (the
    last -f[no-]stack-protector* option of each decides); False without a record."""
    section = elf.get_section_by_name(RECORD_SECTION)
    if section is None:
        return False
    lines = [line for line in section.data().decode("utf-8", "replace").split("\0") if line]
    if not lines:
        return False
    for line in lines:
        options = [o for o in line.split() if o.startswith(("-fstack-protector",
                                                             "-fno-stack-protector"))]
        if not options or options[-1] not in STACK_PROTECTOR_ON:
            return False
    return True


def inspect(path: Path, root: Path) -> Hardening | None:
    """The hardening of PATH, or None when it is not an ELF executable or library."""
    with path.open("rb") as f:
        if f.read(4) != ELF_MAGIC:
            return None
        f.seek(0)
        try:
            elf = ELFFile(f)
            return _inspect(elf, "/" + str(path.relative_to(root)))
        except ELFError:
            return None


def _inspect(elf: ELFFile, rel: str) -> Hardening | None:
    etype = elf["e_type"]
    if etype not in ("ET_EXEC", "ET_DYN"):
        return None  # relocatable objects, core files
    segments = list(elf.iter_segments())
    types = {seg["p_type"] for seg in segments}
    has_interp = "PT_INTERP" in types
    dynamic = next((s for s in elf.iter_sections() if isinstance(s, DynamicSection)), None)
    flags = flags_1 = 0
    bind_now = False
    if dynamic is not None:
        for tag in dynamic.iter_tags():
            if tag.entry.d_tag == "DT_FLAGS":
                flags = tag.entry.d_val
            elif tag.entry.d_tag == "DT_FLAGS_1":
                flags_1 = tag.entry.d_val
            elif tag.entry.d_tag == "DT_BIND_NOW":
                bind_now = True
    bind_now = bind_now or bool(flags & DF_BIND_NOW) or bool(flags_1 & DF_1_NOW)

    if etype == "ET_EXEC":
        pie = "no"
    elif has_interp or flags_1 & DF_1_PIE:
        pie = "pie"
    else:
        pie = "dso"
    if dynamic is None and not has_interp:
        kind = "static"
    elif has_interp or etype == "ET_EXEC" or pie == "pie":
        kind = "exec"
    else:
        kind = "lib"

    if "PT_GNU_RELRO" not in types:
        relro = "none"
    else:
        relro = "full" if bind_now else "partial"
    stack = next((s for s in segments if s["p_type"] == "PT_GNU_STACK"), None)
    nx = stack is not None and not stack["p_flags"] & P_FLAGS.PF_X

    names = _symbol_names(elf)
    if not has_interp and (etype == "ET_EXEC" or flags_1 & DF_1_PIE):
        canary = recorded_stack_protector(elf)  # statically linked (see the module doc)
    else:
        canary = "__stack_chk_fail" in names or "__stack_chk_guard" in names
    fortify = len({n for n in names if n.startswith("__") and n.endswith("_chk")
                   and n not in ("__stack_chk_fail", "__stack_chk_guard")})
    return Hardening(rel, kind, pie, relro, canary, fortify, nx)


def elf_files(root: Path) -> Iterator[Path]:
    """Every regular file under ROOT (symlinks not followed), sorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            st = path.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_size >= 64:
                yield path


def scan(root: Path) -> list[Hardening]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory; build it first (make rootfs)")
    results = []
    for path in elf_files(root):
        h = inspect(path, root)
        if h is not None:
            results.append(h)
    return results


def table(results: Iterable[Hardening]) -> str:
    rows = [HEADER] + [h.row() for h in results]
    return "\n".join(rows)


def to_baseline(results: Iterable[Hardening]) -> dict[str, dict[str, object]]:
    return {h.path: {k: v for k, v in asdict(h).items() if k != "path"} for h in results}


def _weaker(old: dict[str, object], new: Hardening) -> list[str]:
    """The protections of NEW that are weaker than OLD's, as readable phrases."""
    worse = []
    if PIE_LEVELS.index(new.pie) < PIE_LEVELS.index(str(old["pie"])):
        worse.append(f"PIE {old['pie']} -> {new.pie}")
    if RELRO_LEVELS.index(new.relro) < RELRO_LEVELS.index(str(old["relro"])):
        worse.append(f"RELRO {old['relro']} -> {new.relro}")
    if old["canary"] and not new.canary:
        worse.append("stack protector lost")
    if int(str(old["fortify"])) > 0 and new.fortify == 0:
        worse.append("FORTIFY_SOURCE lost")
    if old["nx"] and not new.nx:
        worse.append("executable stack")
    return worse


def _below_minimum(h: Hardening) -> list[str]:
    problems = []
    if h.kind == "exec" and h.pie != MINIMUM["pie"]:
        problems.append("executable is not PIE")
    if h.kind != "static" and RELRO_LEVELS.index(h.relro) < RELRO_LEVELS.index(
            str(MINIMUM["relro"])):
        problems.append("no RELRO")
    if MINIMUM["nx"] and not h.nx:
        problems.append("executable stack")
    return problems


@dataclass(frozen=True)
class Comparison:
    regressions: list[str]  # "PATH: what got weaker"
    new: list[str]  # paths not in the baseline (that meet MINIMUM)
    gone: list[str]  # baseline paths no longer in the tree


def compare(results: list[Hardening], baseline: dict[str, dict[str, object]]) -> Comparison:
    regressions, new = [], []
    for h in results:
        old = baseline.get(h.path)
        if old is None:
            problems = _below_minimum(h)
            if problems:
                regressions.append(f"{h.path}: new file, {', '.join(problems)}")
            else:
                new.append(h.path)
            continue
        worse = _weaker(old, h)
        if worse:
            regressions.append(f"{h.path}: {', '.join(worse)}")
    present = {h.path for h in results}
    gone = sorted(p for p in baseline if p not in present)
    return Comparison(regressions, new, gone)


def summary(results: list[Hardening]) -> str:
    n = len(results)
    if not n:
        return "no ELF files"
    execs = [h for h in results if h.kind == "exec"]
    return (f"{n} ELF files ({len(execs)} executables): "
            f"PIE {sum(h.pie == 'pie' for h in execs)}/{len(execs)} executables, "
            f"full RELRO {sum(h.relro == 'full' for h in results)}/{n}, "
            f"stack protector {sum(h.canary for h in results)}/{n}, "
            f"FORTIFY {sum(h.fortify > 0 for h in results)}/{n}, "
            f"NX stack {sum(h.nx for h in results)}/{n}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixbuild.packages.elfhardening",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="tree to scan, e.g. artifacts/rootfs")
    parser.add_argument("--check", type=Path, metavar="BASELINE",
                        help="fail (exit 1) on a regression against this baseline")
    parser.add_argument("--write-baseline", type=Path, metavar="BASELINE")
    args = parser.parse_args(argv)
    results = scan(args.root)
    print(table(results))
    print(summary(results))
    if args.write_baseline:
        args.write_baseline.write_text(json.dumps(to_baseline(results), indent=1,
                                                  sort_keys=True) + "\n")
        print(f"baseline of {len(results)} files written to {args.write_baseline}")
    if args.check:
        result = compare(results, json.loads(args.check.read_text()))
        for line in result.regressions:
            print(f"REGRESSION {line}")
        for path in result.new:
            print(f"new        {path}")
        for path in result.gone:
            print(f"gone       {path}")
        if result.regressions:
            print(f"{len(result.regressions)} regression(s) against {args.check}; fix the "
                  f"build flags or, if intended, rewrite the baseline with --write-baseline")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
