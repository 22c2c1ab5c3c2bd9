"""The trimmed Python runtime: module-to-file resolution against Debian's stdlib,
and the committed module list still covers everything mix imports (a new
import in mix fails here with the command that regenerates the list)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mixbuild.common import PACKAGES_DIR
from mixbuild.packages import pyruntime

CACHE = Path(os.environ.get("MIXOS_CACHE", "/var/cache/mixos"))
have_debs = any((CACHE / "debs").glob("libpython3.11-stdlib_*.deb"))
needs_debs = pytest.mark.skipif(not have_debs,
                                reason="needs the cached Debian packages of 'make packages'")


@pytest.fixture(scope="module")
def interpreter() -> Path:
    return pyruntime.interpreter_root()


@needs_debs
def test_module_files_resolves_modules_packages_and_extensions(interpreter: Path) -> None:
    stdlib = interpreter / pyruntime.STDLIB
    assert pyruntime.module_files(stdlib, "argparse") == ["argparse.py"]
    assert pyruntime.module_files(stdlib, "json") == ["json/__init__.py"]
    assert pyruntime.module_files(stdlib, "email.mime.text") == [
        "email/__init__.py", "email/mime/__init__.py", "email/mime/text.py"]
    assert pyruntime.module_files(stdlib, "_ssl") == [f"lib-dynload/_ssl{pyruntime.EXT_SUFFIX}"]
    assert pyruntime.module_files(stdlib, "sys") == []  # built in
    assert pyruntime.module_files(stdlib, "no_such_module") == []


def test_module_list_has_the_interpreter_essentials() -> None:
    listed = set(pyruntime.read_module_list(PACKAGES_DIR / "python3/modules.txt"))
    assert {"os", "encodings", "encodings.utf_8", "site"} <= listed
    assert not listed & {"tkinter", "idlelib", "test", "ensurepip", "sitecustomize"}


def test_mix_stdlib_imports_sees_lazy_imports(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("import json\ndef f():\n    import tarfile\n"
                                   "    from urllib import request\n    import solv\n")
    assert pyruntime.mix_stdlib_imports(tmp_path) == ["json", "tarfile", "urllib"]


@pytest.mark.slow
@needs_debs
def test_committed_module_list_covers_what_mix_imports(interpreter: Path) -> None:
    from mixbuild.packages.repo import trace_sites

    traced = pyruntime.trace(trace_sites(), pyruntime.python_command(interpreter),
                             interpreter / pyruntime.STDLIB)
    listed = set(pyruntime.read_module_list(PACKAGES_DIR / "python3/modules.txt"))
    missing = sorted(set(traced) - listed)
    assert not missing, (f"mix now imports {missing}, which the python3 package lacks; run "
                         "'PYTHONPATH=src .venv/bin/python -m mixbuild.packages.pyruntime trace' "
                         "and commit packages/python3/modules.txt")


def test_leave_to_runtime_keeps_one_owner_per_path_and_module(tmp_path: Path) -> None:
    runtime, full = tmp_path / "python3", tmp_path / "python3-full"
    stdlib = "usr/lib/python3.11"
    ext = f"lib-dynload/_ssl{pyruntime.EXT_SUFFIX}"
    for rel in ("os.pyc", "json/__init__.pyc", ext):
        (runtime / stdlib / rel).parent.mkdir(parents=True, exist_ok=True)
        (runtime / stdlib / rel).write_text("runtime")
    (runtime / "usr/bin").mkdir(parents=True)
    (runtime / "usr/bin/python3.11").write_text("interpreter")
    for rel in ("os.py", "json/__init__.py", "json/tool.py", ext,
                f"lib-dynload/_curses{pyruntime.EXT_SUFFIX}", "lib2to3/Grammar.txt"):
        (full / stdlib / rel).parent.mkdir(parents=True, exist_ok=True)
        (full / stdlib / rel).write_text("full")
    removed = pyruntime.leave_to_runtime(full, runtime)
    assert sorted(removed) == sorted(f"{stdlib}/{r}" for r in ("os.py", "json/__init__.py", ext))
    left = sorted(p.relative_to(full / stdlib).as_posix() for p in full.rglob("*") if p.is_file())
    assert left == ["json/tool.py", f"lib-dynload/_curses{pyruntime.EXT_SUFFIX}",
                    "lib2to3/Grammar.txt"]


def test_python_beside_must_name_a_runtime_and_follows_its_stage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from mixbuild.common import BuildError
    from mixbuild.packages.recipe import load_recipes
    from mixbuild.packages.repo import Builder

    monkeypatch.setenv("MIXOS_CACHE", str(tmp_path))
    recipes = load_recipes(PACKAGES_DIR)
    full = recipes["python3-full"]
    assert full.python_beside == "python3" and "python3" in full.dependencies
    names = ("python3", "python3-full", "mixos-installer", "mix", "python3-zstandard",
             "python3-yaml", "python3-fastjsonschema", "jq")
    b = Builder({n: recipes[n] for n in names if n in recipes})
    key = b.stage_key(full)
    # A change of the trimmed runtime (its module list) restages python3-full.
    b._keys["python3"] = "another module list"
    del b._keys["python3-full"]
    assert b.stage_key(full) != key
    with pytest.raises(BuildError, match="python_beside names 'jq', which is no recipe with"):
        b.stage_key(dataclasses.replace(full, name="x", python_beside="jq"))
