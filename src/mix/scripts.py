"""Package scripts (pre-install, post-install, pre-remove, post-remove, post-upgrade).

A script runs with the root as its / (chroot) when mix works on another root and the
script's interpreter exists there; with --root but no interpreter yet (an empty root
being assembled), it is skipped with a warning. Scripts get a clean environment and a
time limit; a non-zero exit is a failure.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mix.errors import TransactionError
from mix.rootpath import RootResolver

TIME_LIMIT = 300
MAX_OUTPUT = 16 << 10  # what a script prints on success is shown, up to its last 16 KiB
ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHELL = "/bin/sh"  # runs a script without a #! line


def interpreter(body: bytes) -> str:
    first = body.split(b"\n", 1)[0]
    if first.startswith(b"#!"):
        return first[2:].strip().split()[0].decode(errors="replace") if first[2:].strip() else ""
    return SHELL


def _write_script(root: Path, name: str, body: bytes) -> Path:
    """The script's body in ROOT/var/lib/mix/tmp/NAME, that directory resolved inside the
    root (a symlink leading out of it is refused) and the file created afresh (never
    written through whatever a package left at that name)."""
    tmpdir = Path(str(root).rstrip("/") + RootResolver(root).resolve_dir(
        "/var/lib/mix/tmp", f"{name} script: mix's script directory /var/lib/mix/tmp"))
    tmpdir.mkdir(parents=True, exist_ok=True)
    script = tmpdir / name
    script.unlink(missing_ok=True)
    fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o700)
    try:
        os.fchmod(fd, 0o700)
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    return script


def run_script(root: Path, package: str, name: str, body: bytes, env_extra: dict[str, str],
               warn: list[str]) -> str:
    """Run one script; return what it printed (stdout and stderr; how a package tells
    the admin something), or raise TransactionError if it fails."""
    root = Path(root).absolute()
    chroot = str(root) != "/"
    interp = interpreter(body)
    if not interp.startswith("/"):
        raise TransactionError(f"{package}: {name} script names a relative interpreter {interp!r}")
    if chroot and not os.path.lexists(str(root) + interp):
        warn.append(f"{package}: {name} script skipped: {interp} does not exist in {root} yet")
        return ""
    script = _write_script(root, f"{package}.{name}", body)
    env = {"PATH": ENV_PATH, "MIX_PACKAGE": package, "MIX_SCRIPT": name, "LANG": "C.UTF-8",
           "MIX_ROOT": "/" if chroot else str(root), **env_extra}
    inside = "/var/lib/mix/tmp/" + script.name if chroot else str(script)
    cmd = [interp, inside] if body.startswith(b"#!") else [SHELL, inside]

    def enter_root() -> None:
        os.chroot(root)
        os.chdir("/")

    try:
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              timeout=TIME_LIMIT, preexec_fn=enter_root if chroot else None,
                              cwd=None if chroot else "/", check=False)
    except subprocess.TimeoutExpired:
        raise TransactionError(f"{package}: {name} script ran longer than {TIME_LIMIT} s") from None
    except OSError as e:
        raise TransactionError(f"{package}: cannot run {name} script ({' '.join(cmd)}): "
                               f"{e.strerror}") from None
    finally:
        script.unlink(missing_ok=True)
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        raise TransactionError(f"{package}: {name} script failed with exit status "
                               f"{proc.returncode}" + (f":\n{out[-2000:]}" if out else ""),
                               "fix the script or pass --no-scripts")
    return out[-MAX_OUTPUT:]
