"""The target's Python: Debian's CPython 3.11 trimmed to the stdlib modules that
`mix` imports, compiled to sourceless .pyc.

- `target_python()` gives a command running Debian's python3.11 (unpacked from
  the cached .debs, full stdlib) on the build host: it byte-compiles for the
  target, so the bytecode matches the interpreter that runs it.
- `build_runtime()` stages the trimmed stdlib for the python3 recipe.
- `python -m mixbuild.packages.pyruntime trace` finds the module list: it runs `mix`
  (as staged by the mix recipe) under that interpreter through a scenario of
  commands plus every stdlib import named in mix's source, and prints the stdlib
  modules that ended up loaded. Its output is packages/python3/modules.txt.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mixbuild.common import PACKAGES_DIR, PROJECT, BuildError, cache_dir, log, run, step
from mixbuild.packages import debian
from mixbuild.packages.recipe import Recipe

TARGET_PYTHON_DEBS = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib")
STDLIB = "usr/lib/python3.11"
SITE = "/usr/lib/python3/dist-packages"
EXT_SUFFIX = ".cpython-311-x86_64-linux-gnu.so"
# Always kept: what the interpreter needs to start in any locale, and the
# landmark it uses to find its prefix (os.py -> os.pyc).
BASE_MODULES = ("os", "site", "_sitebuiltins", "encodings", "encodings.aliases",
                "encodings.ascii", "encodings.latin_1", "encodings.utf_8", "codecs", "io",
                "abc", "stat", "posixpath", "genericpath", "_collections_abc")
# Stdlib modules that need another `import` statement than their file suggests or
# that are imported by C code at run time (mix's HTTP path: ssl, certificates).
EXTRA_MODULES = ("urllib.request", "http.client", "ssl", "encodings.idna")
# Never kept: Debian's sitecustomize (a symlink into /etc for apport hooks), and _uuid
# (uuid falls back to os.urandom without it; it would pull in libuuid).
EXCLUDED_MODULES = ("sitecustomize", "_uuid")


def merged_interpreter(trees: list[Path], versions: list[str]) -> Path:
    """One directory holding the given unpacked .debs, cached by their versions."""
    key = hashlib.sha256("\n".join(versions).encode()).hexdigest()[:16]
    root = cache_dir() / "python" / key
    if (root / ".complete").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root.parent))
    for tree in trees:
        shutil.copytree(tree, tmp, symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".complete"))
    (tmp / ".complete").touch()
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def interpreter_root() -> Path:
    fetched = debian.fetch(list(TARGET_PYTHON_DEBS))
    return merged_interpreter([fetched[n][1] for n in TARGET_PYTHON_DEBS],
                              [f"{n}={fetched[n][0].version}" for n in TARGET_PYTHON_DEBS])


def python_command(root: Path) -> list[str]:
    """argv prefix running the interpreter in ROOT with its own stdlib."""
    return ["env", f"PYTHONHOME={root}/usr", "PYTHONHASHSEED=0", "PYTHONDONTWRITEBYTECODE=1",
            str(root / "usr/bin/python3.11"), "-s"]


def target_python() -> list[str]:
    return python_command(interpreter_root())


def bytecompile(python: list[str], files: Path, dest: str, *, sourceless: bool = False) -> None:
    """Compile every .py under files/DEST. Default: __pycache__/*.pyc in
    unchecked-hash mode (valid on a read-only root, never rewritten). With
    SOURCELESS, legacy X.pyc beside X.py, then the .py files are deleted."""
    tree = files / dest.lstrip("/")
    if not tree.is_dir():
        raise BuildError(f"bytecompile: {dest} is not a directory in the package")
    cmd = [*python, "-m", "compileall", "-q", "-f", "-j", "1",
           "--invalidation-mode", "unchecked-hash", "-d", dest]
    if sourceless:
        cmd.append("-b")
    run([*cmd, tree], capture=True)
    if sourceless:
        for py in sorted(tree.rglob("*.py")):
            py.unlink()


def module_files(stdlib: Path, name: str) -> list[str]:
    """Files (relative to STDLIB) that make module NAME importable, parents included;
    [] when STDLIB has no file for it (a builtin module)."""
    parts = name.split(".")
    found: list[str] = []
    for i in range(1, len(parts)):
        init = "/".join(parts[:i]) + "/__init__.py"
        if (stdlib / init).is_file():
            found.append(init)
    rel = "/".join(parts)
    for cand in (rel + ".py", rel + "/__init__.py", f"lib-dynload/{rel}{EXT_SUFFIX}"):
        if (stdlib / cand).is_file():
            return [*found, cand]
    return []


def read_module_list(path: Path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


def build_runtime(recipe: Recipe, inputs: object, files: Path) -> None:
    """Stage the trimmed stdlib of RECIPE.python_runtime into FILES."""
    from mixbuild.packages.staging import StageInputs, copy_entry

    assert isinstance(inputs, StageInputs) and recipe.python_runtime is not None
    rt = recipe.python_runtime
    trees = [inputs.debs[n][1] for n in rt.stdlib_from]
    listed = set(read_module_list(recipe.directory / rt.modules)) | set(BASE_MODULES)
    wanted = set(listed)
    if rt.trace and inputs.trace_site is not None:
        # The committed list is what reviewers see; a fresh trace of the code that
        # will run makes sure the image works even when the list is behind.
        assert inputs.target_python is not None
        traced = set(trace(inputs.trace_site(), inputs.target_python(),
                           interpreter_root() / STDLIB))
        if traced - listed:
            log(f"warning: {rt.trace} imports {', '.join(sorted(traced - listed))}, missing "
                f"from {recipe.directory / rt.modules}; included anyway. Regenerate the list: "
                "python -m mixbuild.packages.pyruntime trace")
        wanted |= traced
    dest = files / rt.dest.lstrip("/")
    missing = []
    for name in sorted(wanted):
        for tree in trees:
            rels = module_files(tree / STDLIB, name)
            if rels:
                for rel in rels:
                    copy_entry(tree / STDLIB / rel, dest / rel)
                break
        else:
            missing.append(name)
    # Modules without a file are fine only if the interpreter has them built in.
    if missing:
        assert inputs.target_python is not None
        out = run([*inputs.target_python(), "-c",
                   "import sys; print(' '.join(sys.builtin_module_names))"], capture=True).stdout
        builtin = set(out.split())
        unknown = [m for m in missing if m not in builtin]
        if unknown:
            raise BuildError(f"{recipe.directory / rt.modules}: no stdlib file for "
                             f"{', '.join(unknown)}; regenerate the list with "
                             "'python -m mixbuild.packages.pyruntime trace'")
    assert inputs.target_python is not None
    bytecompile(inputs.target_python(), files, rt.dest, sourceless=True)


def leave_to_runtime(files: Path, runtime_files: Path) -> list[str]:
    """Delete from FILES (a staged stdlib) what the trimmed runtime staged in
    RUNTIME_FILES already ships: the same path (lib-dynload/_ssl...so), or the source
    X.py of a module it ships compiled as X.pyc. What is left adds modules, never
    replaces one, so installing or removing it cannot change what mix imports."""
    owned = {p.relative_to(runtime_files).as_posix() for p in runtime_files.rglob("*")
             if not p.is_dir() or p.is_symlink()}
    removed = []
    for p in sorted(files.rglob("*")):
        if p.is_dir() and not p.is_symlink():
            continue
        rel = p.relative_to(files).as_posix()
        if rel in owned or (rel.endswith(".py") and rel + "c" in owned):
            p.unlink()
            removed.append(rel)
    log(f"{len(removed)} files left to the trimmed runtime")
    return removed


# --- tracing ---------------------------------------------------------------

TRACER = r"""
import importlib, json, os, sys, traceback
stdlib_imports, scenario, out = json.loads(sys.argv[1])
for name in stdlib_imports:
    try:
        importlib.import_module(name)
    except Exception as e:
        print(f"trace: import {name}: {e!r}", file=sys.stderr)
import mix.cli
for argv in scenario:
    try:
        code = mix.cli.main(argv)
    except SystemExit as e:
        code = e.code
    except Exception:
        code = "exception"
        traceback.print_exc()
    if code not in (0, None) and argv[0] != "--help":
        print(f"trace: mix {' '.join(argv)} exited {code}", file=sys.stderr)
with open(out, "w") as f:
    json.dump(sorted(sys.modules), f)
"""

# Commands that exercise mix end to end against a throw-away repository, over
# file:// and over HTTP (@H: a local server on 127.0.0.1 serving @W/repo).
_R = ["--root", "@W/root", "--keys-dir", "@W/keys"]
SCENARIO = [
    ["--help"],
    ["key", "generate", "@W/keys/k"],
    ["build", "@W/stage", "-o", "@W/demo-gzip.mixpkg"],
    ["build", "@W/stage", "-o", "@W/repo/demo-1.0-r1.noarch.mixpkg", "--compression", "zstd"],
    ["repo", "index", "@W/repo", "--key", "@W/keys/k.key"],
    [*_R, "--repo", "file://@W/repo", "update"],
    [*_R, "--repo", "@H", "update"],
    [*_R, "--repo", "@H", "-y", "install", "demo"],
    ["--root", "@W/root", "list"],
    ["--root", "@W/root", "--json", "list"],
    [*_R, "--repo", "@H", "search", "demo"],
    ["--root", "@W/root", "info", "demo"],
    ["--root", "@W/root", "--json", "info", "demo"],
    ["--root", "@W/root", "files", "demo"],
    ["--root", "@W/root", "owner", "/etc/demo.conf"],
    ["--root", "@W/root", "verify"],
    [*_R, "--repo", "@H", "list", "--upgradable"],
    [*_R, "--repo", "@H", "-y", "upgrade"],
    ["--root", "@W/root", "-y", "remove", "demo"],
]


def mix_stdlib_imports(src: Path) -> list[str]:
    """Stdlib modules imported anywhere in the Python source under SRC (lazy imports
    too): mix, and every other MixOS tool and library the traced recipes stage."""
    names: set[str] = set()
    for py in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(py.read_text(), str(py))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    return sorted(n for n in names if n.split(".")[0] in sys.stdlib_module_names)


def _serve(directory: Path) -> tuple[subprocess.Popen[str], str]:
    """A throw-away HTTP server on 127.0.0.1 (the host's Python), and its URL."""
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"],
        cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert server.stdout is not None
    line = server.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N (...) ..."
    m = re.search(r"port (\d+)", line)
    if not m:
        server.kill()
        raise BuildError(f"could not start a local HTTP server for the trace: {line!r}")
    return server, f"http://127.0.0.1:{m.group(1)}/"


def trace(site_dirs: list[Path], python: list[str], stdlib: Path) -> list[str]:
    """Run the scenario with PYTHONPATH=SITE_DIRS (mix's first, then its Python
    libraries'); return the stdlib modules loaded."""
    seed_set = set(EXTRA_MODULES)
    for site in site_dirs:
        if site.is_dir():
            seed_set |= set(mix_stdlib_imports(site))
    seed = sorted(seed_set)
    with tempfile.TemporaryDirectory(prefix="mixtrace-") as tmp:
        work = Path(tmp)
        for d in ("root", "keys", "repo", "stage/files/etc"):
            (work / d).mkdir(parents=True)
        # One config file, so that install/owner/verify have work to do.
        (work / "stage/files/etc/demo.conf").write_text("demo\n")
        (work / "stage/metadata.json").write_text(json.dumps({
            "name": "demo", "version": "1.0-r1", "description": "trace", "arch": "noarch"}))
        server, url = _serve(work / "repo")
        try:
            scenario = [[a.replace("@W", str(work)).replace("@H", url) for a in argv]
                        for argv in SCENARIO]
            out = work / "modules.json"
            path = ":".join(map(str, site_dirs))
            proc = run(["env", f"PYTHONPATH={path}", *python, "-c", TRACER,
                        json.dumps([seed, scenario, str(out)])], capture=True, timeout=300)
            if proc.stderr.strip():
                log(proc.stderr.strip()[-3000:])
            loaded = json.loads(out.read_text())
        finally:
            server.kill()
            server.wait(timeout=10)
    keep = [m for m in loaded if module_files(stdlib, m) and m not in EXCLUDED_MODULES]
    return sorted(set(keep) | set(BASE_MODULES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixbuild.packages.pyruntime",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("trace", help="print the stdlib modules mix loads")
    t.add_argument("-o", "--output", type=Path, default=PACKAGES_DIR / "python3" / "modules.txt")
    args = parser.parse_args(argv)
    from mixbuild.packages.repo import trace_sites

    with step("Tracing the stdlib modules mix imports"):
        root = interpreter_root()
        modules = trace(trace_sites(), python_command(root), root / STDLIB)
        header = ("# Stdlib modules kept in the python3 package (one per line).\n"
                  "# Generated by 'python -m mixbuild.packages.pyruntime trace'; "
                  "see docs/recipes.md.\n")
        args.output.write_text(header + "\n".join(modules) + "\n")
        log(f"wrote {args.output.relative_to(PROJECT)} ({len(modules)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
