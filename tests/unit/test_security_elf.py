"""The ELF hardening checker (mixbuild.packages.elfhardening) against programs compiled here
with and without each protection, and the image's ELF files against the committed
baseline (tests/unit/data/elf_hardening_baseline.json)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mixbuild.packages import elfhardening
from mixbuild.packages.elfhardening import Hardening, compare, inspect, scan, to_baseline

PROJECT = Path(__file__).resolve().parents[2]
ROOTFS = PROJECT / "artifacts" / "rootfs"
BASELINE = Path(__file__).parent / "data" / "elf_hardening_baseline.json"

# A program with a local buffer (so the stack protector instruments it) and a
# fortifiable call whose size the compiler knows.
SOURCE = r"""
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    char buf[64];
    strcpy(buf, argc > 1 ? argv[1] : "x");
    printf("%s\n", buf);
    return 0;
}
"""

HARDENED = ["-O2", "-fPIE", "-pie", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2",
            "-Wl,-z,relro,-z,now"]


def compile_c(tmp: Path, name: str, flags: list[str]) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (make deps installs build-essential)")
    src = tmp / "prog.c"
    src.write_text(SOURCE)
    out = tmp / "root" / "bin" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [gcc, *flags, "-o", str(out), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr}"
    return out


def check(tmp: Path, name: str, flags: list[str]) -> Hardening:
    path = compile_c(tmp, name, flags)
    result = inspect(path, tmp / "root")
    assert result is not None
    return result


def test_fully_hardened_program_has_every_protection(tmp_path: Path) -> None:
    h = check(tmp_path, "hard", HARDENED)
    assert (h.path, h.kind, h.pie, h.relro, h.canary, h.nx) == (
        "/bin/hard", "exec", "pie", "full", True, True)
    assert h.fortify >= 1


def test_non_pie_program_is_reported(tmp_path: Path) -> None:
    h = check(tmp_path, "nopie", ["-O2", "-fno-pie", "-no-pie", "-fstack-protector-strong"])
    assert h.pie == "no"


def test_lazy_binding_is_partial_relro_and_no_relro_is_none(tmp_path: Path) -> None:
    assert check(tmp_path, "lazy", ["-O2", "-Wl,-z,relro,-z,lazy"]).relro == "partial"
    assert check(tmp_path, "norelro", ["-O2", "-Wl,-z,norelro"]).relro == "none"


def test_missing_stack_protector_and_fortify_are_reported(tmp_path: Path) -> None:
    h = check(tmp_path, "plain", ["-O2", "-fno-stack-protector", "-U_FORTIFY_SOURCE",
                                  "-D_FORTIFY_SOURCE=0"])
    assert not h.canary
    assert h.fortify == 0


STATIC_PIE = ["-O2", "-fPIE", "-static-pie", "-D_FORTIFY_SOURCE=2", "-Wl,-z,relro,-z,now",
              "-frecord-gcc-switches"]


def test_hardened_static_pie_has_every_protection(tmp_path: Path) -> None:
    h = check(tmp_path, "spie", [*STATIC_PIE, "-fstack-protector-strong"])
    assert (h.kind, h.pie, h.relro, h.canary, h.nx) == ("exec", "pie", "full", True, True)
    assert h.fortify >= 1


def test_static_program_without_stack_protector_is_reported(tmp_path: Path) -> None:
    # libc.a's own __stack_chk_fail is linked in either way: not evidence.
    assert not check(tmp_path, "spie", [*STATIC_PIE, "-fno-stack-protector"]).canary
    # Without GCC's record of the options the protector cannot be shown.
    unrecorded = [f for f in STATIC_PIE if f != "-frecord-gcc-switches"]
    assert not check(tmp_path, "spie", [*unrecorded, "-fstack-protector-strong"]).canary


def test_static_non_pie_program_is_static_and_not_pie(tmp_path: Path) -> None:
    h = check(tmp_path, "static", ["-O2", "-static", "-fstack-protector-strong",
                                   "-frecord-gcc-switches"])
    assert (h.kind, h.pie, h.canary) == ("static", "no", True)


def test_executable_stack_is_reported(tmp_path: Path) -> None:
    assert not check(tmp_path, "execstack", ["-O2", "-Wl,-z,execstack"]).nx


def test_shared_library_is_a_dso(tmp_path: Path) -> None:
    h = check(tmp_path, "libx.so", ["-O2", "-fPIC", "-shared", "-Wl,-z,relro,-z,now"])
    assert (h.kind, h.pie, h.relro) == ("lib", "dso", "full")


def test_non_elf_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "script").write_text("#!/bin/sh\necho hello, this is not an ELF file\n" * 4)
    assert inspect(tmp_path / "script", tmp_path) is None


def test_weakened_file_is_a_regression_and_new_weak_file_too(tmp_path: Path) -> None:
    check(tmp_path, "prog", HARDENED)
    baseline = to_baseline(scan(tmp_path / "root"))
    # Same path rebuilt without PIE and stack protector: both regressions named.
    compile_c(tmp_path, "prog", ["-O2", "-fno-pie", "-no-pie", "-fno-stack-protector"])
    result = compare(scan(tmp_path / "root"), baseline)
    assert len(result.regressions) == 1
    assert "PIE pie -> no" in result.regressions[0]
    assert "stack protector lost" in result.regressions[0]
    # A new executable without PIE is below the minimum policy.
    compile_c(tmp_path, "prog", HARDENED)
    compile_c(tmp_path, "other", ["-O2", "-fno-pie", "-no-pie"])
    result = compare(scan(tmp_path / "root"), baseline)
    assert result.regressions == ["/bin/other: new file, executable is not PIE"]


def test_unchanged_tree_has_no_regression(tmp_path: Path) -> None:
    check(tmp_path, "prog", HARDENED)
    results = scan(tmp_path / "root")
    assert compare(results, to_baseline(results)).regressions == []


def test_image_elf_files_do_not_regress_against_baseline() -> None:
    """Every ELF file of artifacts/rootfs, printed as a table, against the baseline."""
    if not ROOTFS.is_dir():
        pytest.skip(f"{ROOTFS} not built yet (make rootfs); tests/vm runs this check too")
    results = scan(ROOTFS)
    print("\n" + elfhardening.table(results) + "\n" + elfhardening.summary(results))
    assert results, f"no ELF files found in {ROOTFS}"
    assert BASELINE.is_file(), (
        f"{BASELINE} is missing; create it with: PYTHONPATH=src .venv/bin/python -m "
        f"mixbuild.packages.elfhardening artifacts/rootfs "
        f"--write-baseline {BASELINE.relative_to(PROJECT)}")
    result = compare(results, json.loads(BASELINE.read_text()))
    assert not result.regressions, (
        "ELF hardening regressions:\n  " + "\n  ".join(result.regressions)
        + "\nfix the build, or if intended rewrite the baseline with --write-baseline")


def test_baseline_holds_busybox_to_every_protection() -> None:
    """BusyBox is init, every shell and the DHCP client: its baseline entry may not
    be rewritten weaker (packages/busybox builds it as a hardened static PIE)."""
    entry = json.loads(BASELINE.read_text())["/usr/bin/busybox"]
    assert (entry["pie"], entry["relro"], entry["canary"], entry["nx"]) == (
        "pie", "full", True, True)
    assert int(entry["fortify"]) > 0


def busybox_maps(busybox: Path) -> list[tuple[int, int, str]]:
    """(start, end, perms) of the busybox file's own mappings, in a process of it."""
    out = subprocess.run([str(busybox), "cat", "/proc/self/maps"], capture_output=True,
                         text=True, check=True).stdout
    maps = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[5] == str(busybox):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            maps.append((start, end, fields[1]))
    return maps


def test_image_busybox_is_randomized_and_its_relro_is_read_only_at_run_time() -> None:
    """The static PIE relocates itself: each run at another address, and the RELRO
    part of its data made read-only before main (glibc's static-PIE start-up)."""
    busybox = ROOTFS / "usr/bin/busybox"
    if not busybox.is_file():
        pytest.skip(f"{busybox} not built yet (make rootfs)")
    from elftools.elf.elffile import ELFFile

    with busybox.open("rb") as f:
        relro = next(s for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_GNU_RELRO")
        relro_start, relro_end = relro["p_vaddr"], relro["p_vaddr"] + relro["p_memsz"]
    first, second = busybox_maps(busybox), busybox_maps(busybox)
    assert first and second
    assert first[0][0] != second[0][0], (
        "busybox ran twice at the same address: not PIE, or ASLR is off on this host "
        "(/proc/sys/kernel/randomize_va_space)")
    base, page = first[0][0], 4096
    # glibc protects the whole pages inside PT_GNU_RELRO
    pages = range(base + relro_start // page * page, base + relro_end // page * page, page)
    assert pages, "PT_GNU_RELRO covers no whole page"
    for addr in pages:
        perms = next((p for start, end, p in first if start <= addr < end), None)
        assert perms is not None and perms[1] == "-", f"{addr:#x} is {perms}: {first}"
