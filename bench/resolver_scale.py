"""mix's resolver at Debian scale, side by side with apt.

    PYTHONPATH=src .venv/bin/python bench/resolver_scale.py [--runs 5] [--targets 0ad ...]

1. converts apt's lists (/var/lib/apt/lists/*_Packages*, ~65,000 packages) into a
   signed mix index (bench/debian_index.py) under artifacts/bench/debian/;
2. times `mix update` of that whole index into an empty root (download,
   signature check, .solv cache);
3. for each target, times `mix --simulate install X` against
   `apt-get install -s --no-install-recommends X`, both from an empty system
   (apt is given an empty dpkg status and its own binary cache directory),
   cold (mix: first run after update; apt: first run after its caches were
   deleted) and warm (median of --runs runs);
4. checks every mix plan with bench/plan_check.py (mix's rules and Debian's
   original relations) and compares the package set with apt's;
5. times `mix search` over the whole index.

Prints a table and writes artifacts/bench/resolver_scale.json. Nothing here is a
pass/fail test; the ratios are the result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = ROOT / "artifacts" / "bench" / "debian"
TARGETS = ["0ad", "gnome-core", "kde-standard", "texlive-latex-extra", "libreoffice-writer"]
SEARCH_TERMS = ["editor", "python3-nacl", "libssl", "zzzz-no-such-thing"]


def run(
    cmd: list[str], env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)
) -> tuple[float, str]:
    """Run a command, return (wall seconds, stdout); on failure print the exact command."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, check=False
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode not in ok:
        raise SystemExit(
            f"resolver_scale: command failed ({proc.returncode}):\n  {' '.join(cmd)}\n"
            f"{proc.stderr[-3000:]}"
        )
    return elapsed, proc.stdout


def mix_cmd(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mix", "--root", str(root), *args]


def mix_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


class Apt:
    """apt-get -s against an empty dpkg status, with its binary caches in our own dir."""

    def __init__(self, work: Path) -> None:
        self.dir = work / "apt"
        (self.dir / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        self.status = self.dir / "status"
        self.status.write_text("")

    def drop_caches(self) -> None:
        for name in ("pkgcache.bin", "srcpkgcache.bin"):
            (self.dir / "cache" / name).unlink(missing_ok=True)

    def simulate(self, target: str) -> tuple[float, set[str]]:
        cmd = [
            "apt-get", "install", "-s", "--no-install-recommends", "-q",
            "-o", f"Dir::State::status={self.status}",
            "-o", f"Dir::Cache={self.dir / 'cache'}",
            "-o", "Dir::Cache::pkgcache=pkgcache.bin",
            "-o", "Dir::Cache::srcpkgcache=srcpkgcache.bin",
            "-o", "Debug::NoLocking=1",
            target,
        ]  # fmt: skip
        env = dict(os.environ, LC_ALL="C")
        elapsed, out = run(cmd, env)
        names = {line.split()[1] for line in out.splitlines() if line.startswith("Inst ")}
        return elapsed, names


def setup_root(work: Path) -> Path:
    """An empty MixOS root whose only repository is the converted Debian index."""
    root = work / "root"
    shutil.rmtree(root, ignore_errors=True)
    (root / "etc/mix/keys").mkdir(parents=True)
    (root / "etc/mix/repositories").write_text(f"file://{work / 'repo'} name=debian\n")
    shutil.copy(work / "keys" / "debian.pub", root / "etc/mix/keys" / "debian.pub")
    return root


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="warm runs per measurement (median)")
    ap.add_argument("--targets", nargs="+", default=TARGETS)
    ap.add_argument("--reconvert", action="store_true", help="rebuild the index from apt's lists")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from plan_check import check_debian, check_mix, final_set

    env = mix_env()
    results: dict[str, Any] = {"load_before": os.getloadavg(), "targets": {}}
    if args.reconvert or not (WORK / "repo" / "index.json").exists():
        elapsed, out = run([sys.executable, str(HERE / "debian_index.py"), str(WORK)], env)
        print(out.strip())
        results["convert_s"] = elapsed
    index = json.loads((WORK / "repo" / "index.json").read_bytes())["packages"]
    results["packages"] = len(index)

    root = setup_root(WORK)
    results["update_s"], _ = run(mix_cmd(root, "update"), env)
    print(f"mix update of {len(index)} packages: {results['update_s']:.2f} s")

    # Without the .solv cache (what a first command would cost if update did not build it).
    cache = root / "var/lib/mix/repos/debian/index.solv"
    apt = Apt(WORK)
    print(f"{'target':22} {'pkgs mix/apt':>13} {'mix cold':>9} {'apt cold':>9} "
          f"{'mix warm':>9} {'apt warm':>9} {'warm x':>7}  check")  # fmt: skip
    for target in args.targets:
        r: dict[str, Any] = {}
        sim = mix_cmd(root, "--json", "--simulate", "install", target)
        r["mix_cold_s"], out = run(sim, env)
        plan = json.loads(out)["plan"]
        apt.drop_caches()
        r["apt_cold_s"], apt_names = apt.simulate(target)
        mix_warm, apt_warm = [], []
        for _ in range(args.runs):  # interleaved, so load from others hits both alike
            mix_warm.append(run(sim, env)[0])
            apt_warm.append(apt.simulate(target)[0])
        r["mix_warm_s"], r["apt_warm_s"] = median(mix_warm), median(apt_warm)
        r["warm_ratio"] = r["apt_warm_s"] / r["mix_warm_s"]
        packages = final_set(index, [], plan)
        mix_names = {p["name"] for p in packages}
        problems = check_mix(packages) + check_debian(packages, "/var/lib/apt/lists/*_Packages*")
        r.update(
            mix_packages=len(mix_names),
            apt_packages=len(apt_names),
            only_mix=sorted(mix_names - apt_names),
            only_apt=sorted(apt_names - mix_names),
            problems=problems,
        )
        results["targets"][target] = r
        print(
            f"{target:22} {len(mix_names):>6}/{len(apt_names):<6} {r['mix_cold_s']:>8.2f}s "
            f"{r['apt_cold_s']:>8.2f}s {r['mix_warm_s']:>8.3f}s {r['apt_warm_s']:>8.3f}s "
            f"{r['warm_ratio']:>6.1f}x  {'valid' if not problems else f'{len(problems)} PROBLEMS'}"
        )
        if r["only_mix"] or r["only_apt"]:
            print(f"    only mix: {' '.join(r['only_mix'][:12])}{' ...' if len(r['only_mix']) > 12 else ''}")
            print(f"    only apt: {' '.join(r['only_apt'][:12])}{' ...' if len(r['only_apt']) > 12 else ''}")

    # No cache: the JSON index parsed and the pool built in the command itself.
    cache.unlink()
    results["mix_nocache_s"], _ = run(mix_cmd(root, "--simulate", "install", args.targets[0]), env)
    print(f"mix --simulate install {args.targets[0]} with no .solv cache (rebuilt): "
          f"{results['mix_nocache_s']:.2f} s")  # fmt: skip

    search: dict[str, Any] = {}
    for term in SEARCH_TERMS:
        # `mix search` exits 9 when nothing matches.
        times = [run(mix_cmd(root, "search", term), env, ok=(0, 9))[0] for _ in range(args.runs)]
        search[term] = median(times)
    results["search_s"] = search
    results["search_inprocess_s"] = inprocess_search(root)
    print("mix search (whole command, median): "
          + ", ".join(f"{t!r} {s * 1000:.0f} ms" for t, s in search.items()))  # fmt: skip
    print("  of which load + search in the process: "
          + ", ".join(f"{t!r} {s * 1000:.0f} ms" for t, s in results["search_inprocess_s"].items()))
    results["load_after"] = os.getloadavg()
    out_path = ROOT / "artifacts" / "bench" / "resolver_scale.json"
    out_path.write_text(json.dumps(results, indent=1))
    print(f"load average before/after: {results['load_before'][0]:.1f} / "
          f"{results['load_after'][0]:.1f} (2 cores, shared); details: {out_path}")  # fmt: skip
    return 0


def inprocess_search(root: Path) -> dict[str, float]:
    """Cache load + Solver.search inside one process, as `mix search` does after imports."""
    sys.path.insert(0, str(ROOT / "src"))
    from mix.solver import Solver

    cache = root / "var/lib/mix/repos/debian/index.solv"
    if not cache.exists():
        run(mix_cmd(root, "search", "x"), mix_env())  # rebuilds the cache
    out = {}
    for term in SEARCH_TERMS:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            s = Solver()
            s.add_repo("debian", None, cache=cache)
            s.search(term)
            times.append(time.perf_counter() - t0)
        out[term] = median(times)
    return out


if __name__ == "__main__":
    sys.exit(main())
