"""An upgrade that replaces mix itself and what it runs on: those go first, in a
transaction of their own, then the new mix (executed anew) does the rest; a SIGKILL at
any checkpoint of either leaves a root on which the next mix recovers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mixhelpers import World

from mix.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"
SITE = "/usr/lib/mix"  # where the mix package puts the mix modules


def mix_files(version: str) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {}
    for f in sorted((SRC / "mix").glob("*.py")):
        files[f"{SITE}/mix/{f.name}"] = f.read_bytes()
    files[f"{SITE}/mix/__init__.py"] = f'"""mix."""\n\n__version__ = "{version}"\n'
    return files


@pytest.fixture
def w(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.pkg("libpy", "1.0", files={"/usr/lib/libpy.so": "py 1"})
    w.pkg("mix", "1.0", files=mix_files("1.0-test"), dependencies=["libpy"])
    w.pkg("other", "1.0", files={"/usr/bin/other": "other 1"})
    w.sign()
    assert main(w.args("install", "mix", "other")) == 0
    w.pkg("libpy", "2.0", files={"/usr/lib/libpy.so": "py 2"})
    w.pkg("mix", "2.0", files=mix_files("2.0-test"), dependencies=["libpy>=2.0"])
    w.pkg("other", "2.0", files={"/usr/bin/other": "other 2"})
    w.sign()
    return w


def root_mix(w: World, root: Path, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    """The mix installed in root, running (its modules from root) on root."""
    return subprocess.run(
        [sys.executable, "-m", "mix", "--root", str(root), "--repo", f"file://{w.repo}",
         "--keys-dir", str(w.keys_dir), "-y", *args],
        env=dict(os.environ, PYTHONPATH=str(root) + SITE, **(env or {})), cwd=root.parent,
        capture_output=True, text=True, timeout=120, check=False)


def installed(root: Path) -> dict[str, str]:
    from mix.database import Database

    db = Database(root / "var/lib/mix/installed.db", readonly=True)
    try:
        return {p["name"]: p["version"] for p in db.packages()}
    finally:
        db.close()


def test_mix_upgrades_itself_first_then_the_new_mix_does_the_rest(w: World) -> None:
    r = root_mix(w, w.root, "upgrade")
    assert r.returncode == 0, r.stderr
    assert "first mix and what it runs on, in a transaction of their own: " in r.stdout
    assert "mix: continuing with the new mix 2.0-test" in r.stderr
    assert installed(w.root) == {"libpy": "2.0", "mix": "2.0", "other": "2.0"}
    from mix.database import Database

    db = Database(w.root / "var/lib/mix/installed.db", readonly=True)
    history = db.history()
    db.close()
    first, second = ({c["name"] for c in h["changes"]} for h in history[-2:])
    assert first == {"libpy", "mix"} and second == {"other"}
    assert root_mix(w, w.root, "verify").returncode == 0


def test_an_upgrade_of_mix_alone_is_one_transaction(w: World) -> None:
    r = root_mix(w, w.root, "upgrade", "mix")
    assert r.returncode == 0, r.stderr
    assert "first mix" not in r.stdout and "continuing" not in r.stderr
    assert installed(w.root) == {"libpy": "2.0", "mix": "2.0", "other": "1.0"}


@pytest.mark.slow
def test_sigkill_at_every_checkpoint_of_a_self_upgrade_recovers(w: World,
                                                                tmp_path: Path) -> None:
    before = {"libpy": "1.0", "mix": "1.0", "other": "1.0"}
    middle = {"libpy": "2.0", "mix": "2.0", "other": "1.0"}
    after = {"libpy": "2.0", "mix": "2.0", "other": "2.0"}
    kills = 0
    for point in range(1, 400):
        root = tmp_path / f"root{point}"
        shutil.copytree(w.root, root, symlinks=True)
        r = root_mix(w, root, "upgrade", env={"MIX_FAILPOINT_KILL": str(point)})
        if r.returncode == 0:
            break
        assert r.returncode == -signal.SIGKILL, r.stderr
        kills += 1
        fixed = root_mix(w, root, "fix")  # whichever mix the root now holds
        assert fixed.returncode == 0, f"checkpoint {point}: {fixed.stderr}"
        assert installed(root) in (before, middle, after), f"checkpoint {point}"
        v = root_mix(w, root, "verify")
        assert v.returncode == 0, f"checkpoint {point}: {v.stdout}{v.stderr}"
        again = root_mix(w, root, "upgrade")  # and the next upgrade completes
        assert again.returncode == 0 and installed(root) == after, again.stderr
        shutil.rmtree(root)
    else:
        pytest.fail("still killed after 400 checkpoints")
    assert kills > 20, kills
    print(f"self-upgrade: killed at {kills} checkpoints, all recovered")


# The named checkpoints of a self-upgrade, in the order it passes them: the first
# transaction (mix and what it runs on), the restart, the second (the rest).
NAMED = [f"{name}@1" for name in ("staging", "staged", "committed", "applying", "applied")] \
    + ["restarting"] + [f"{name}@2" for name in ("staging", "staged", "committed", "applying",
                                                 "applied")]


@pytest.mark.parametrize("point", NAMED)
def test_sigkill_at_a_named_checkpoint_then_the_next_upgrade_completes(
        w: World, tmp_path: Path, point: str) -> None:
    r = root_mix(w, w.root, "upgrade", env={"MIX_FAILPOINT_KILL": point})
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    first = point.endswith("@1")
    assert ("continuing with the new mix" in r.stderr) == (not first and point != "restarting")
    again = root_mix(w, w.root, "upgrade")  # whichever mix the root now holds
    assert again.returncode == 0, again.stderr
    # Completing the first transaction put the new mix in place: the old one, which
    # did it, starts the new one for the rest.
    restarted = "it replaced mix or what it runs on (libpy, mix): starting the new mix"
    assert (restarted in again.stderr) == (point in ("committed@1", "applying@1")), \
        again.stderr
    assert installed(w.root) == {"libpy": "2.0", "mix": "2.0", "other": "2.0"}
    v = root_mix(w, w.root, "verify")
    assert v.returncode == 0, v.stdout + v.stderr


def test_an_unknown_checkpoint_name_is_refused_and_changes_nothing(w: World) -> None:
    r = root_mix(w, w.root, "upgrade", env={"MIX_FAILPOINT_KILL": "comitted"})
    assert r.returncode == 2, r.stderr
    assert "MIX_FAILPOINT_KILL=comitted: not a checkpoint" in r.stderr
    assert installed(w.root) == {"libpy": "1.0", "mix": "1.0", "other": "1.0"}
    v = root_mix(w, w.root, "verify")
    assert v.returncode == 0 and "interrupted" not in v.stderr, v.stderr


def test_the_shell_that_runs_package_scripts_goes_first_too(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.pkg("mix", "1.0", files=mix_files("1.0-test"))
    w.pkg("shell", "1.0", files={"/usr/bin/sh": "shell 1"})
    w.pkg("other", "1.0", files={"/usr/bin/other": "other 1"})
    w.sign()
    assert main(w.args("install", "mix", "shell", "other")) == 0
    (w.root / "bin").symlink_to("usr/bin")
    for name in ("mix", "shell", "other"):
        w.pkg(name, "2.0", files=mix_files("2.0-test") if name == "mix"
              else {f"/usr/bin/{'sh' if name == 'shell' else name}": f"{name} 2"})
    w.sign()
    r = root_mix(w, w.root, "upgrade")
    assert r.returncode == 0, r.stderr
    assert "in a transaction of their own: mix, shell" in r.stdout, r.stdout
    assert installed(w.root) == {"mix": "2.0", "shell": "2.0", "other": "2.0"}
