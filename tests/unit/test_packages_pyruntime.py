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
