"""mix's resolver at Debian scale, side by side with apt.

    PYTHONPATH=src .venv/bin/python bench/resolver_scale.py [--runs 5] [--targets 0ad ...]

1. converts apt's lists (/var/lib/apt/lists/*_Packages*, ~65,000 packages) into a
   signed mix index (bench/debian_index.py) under artifacts/bench/debian/;
2. times `mix update` of that whole index into an empty root (download from
   file:// and from HTTP on 127.0.0.1, signature check, .solv cache);
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
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = ROOT / "artifacts" / "bench" / "debian"
TARGETS = ["0ad", "gnome-core", "kde-standard", "texlive-latex-extra", "libreoffice-writer"]
SEARCH_TERMS = ["editor", "python3-nacl", "libssl", "zzzz-no-such-thing"]


class Timing(NamedTuple):
    """Wall-clock and CPU (user + system) seconds of one command.

    The build host is shared: wall time swings with other people's builds,
    CPU time much less, so both are reported.
    """

    wall: float
    cpu: float


def run(
    cmd: list[str], env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)
) -> tuple[Timing, str]:
    """Run a command, return its timing and stdout; on failure print the exact command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, check=False
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in ok:
        raise SystemExit(
            f"resolver_scale: command failed ({proc.returncode}):\n  {' '.join(cmd)}\n"
            f"{proc.stderr[-3000:]}"
        )
    return Timing(wall, cpu), proc.stdout


def mix_cmd(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mix", "--root", str(root), *args]


def mix_env() -> dict[str, str]:
    """mix as installed: its modules byte-compiled (an installed package ships .pyc files)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
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

    def simulate(self, target: str) -> tuple[Timing, set[str]]:
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


def setup_root(work: Path, url: str, name: str = "root") -> Path:
    """An empty MixOS root whose only repository is the converted Debian index at ``url``."""
    root = work / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "etc/mix/keys").mkdir(parents=True)
    (root / "etc/mix/repositories").write_text(f"{url} name=debian\n")
    shutil.copy(work / "keys" / "debian.pub", root / "etc/mix/keys" / "debian.pub")
    return root


def http_update(work: Path, env: dict[str, str]) -> Timing:
    """`mix update` from the same repository served over HTTP on 127.0.0.1."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(work / "repo"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        root = setup_root(work, f"http://127.0.0.1:{server.server_address[1]}", "root-http")
        timing, _ = run(mix_cmd(root, "--timeout", "60", "update"), env)
    finally:
        server.shutdown()
        thread.join(timeout=10)
    return timing


def median(xs: list[Timing]) -> Timing:
    return Timing(statistics.median(t.wall for t in xs), statistics.median(t.cpu for t in xs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="warm runs per measurement (median)")
    ap.add_argument("--targets", nargs="+", default=TARGETS)
    ap.add_argument("--reconvert", action="store_true", help="rebuild the index from apt's lists")
    ap.add_argument("--sample", type=int, default=500, help="random packages to solve and check")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from plan_check import check_debian, check_mix, final_set

    env = mix_env()
    run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "mix")], env)
    results: dict[str, Any] = {"load_before": os.getloadavg(), "targets": {}}
    if args.reconvert or not (WORK / "repo" / "index.json").exists():
        timing, out = run([sys.executable, str(HERE / "debian_index.py"), str(WORK)], env)
        print(out.strip())
        results["convert"] = timing._asdict()
    index = json.loads((WORK / "repo" / "index.json").read_bytes())["packages"]
    results["packages"] = len(index)

    root = setup_root(WORK, f"file://{WORK / 'repo'}")
    update, _ = run(mix_cmd(root, "update"), env)
    results["update"] = update._asdict()
    print(f"mix update of {len(index)} packages (file://): {update.wall:.2f} s wall, "
          f"{update.cpu:.2f} s CPU")  # fmt: skip
    update_http = http_update(WORK, env)
    results["update_http"] = update_http._asdict()
    print(f"mix update of {len(index)} packages (http://127.0.0.1): {update_http.wall:.2f} s "
          f"wall, {update_http.cpu:.2f} s CPU of mix (the server runs in this process)")  # fmt: skip

    apt = Apt(WORK)
    print("times: wall s (CPU s); warm = median of", args.runs, "runs, mix and apt interleaved")
    print(f"{'target':20} {'pkgs mix/apt':>12} {'mix cold':>13} {'apt cold':>13} "
          f"{'mix warm':>13} {'apt warm':>13} {'x wall':>6} {'x CPU':>6}  check")  # fmt: skip
    for target in args.targets:
        r: dict[str, Any] = {}
        sim = mix_cmd(root, "--json", "--simulate", "install", target)
        mix_cold, out = run(sim, env)
        plan = json.loads(out)["plan"]
        apt.drop_caches()
        apt_cold, apt_names = apt.simulate(target)
        mix_runs, apt_runs = [], []
        for _ in range(args.runs):  # interleaved, so load from others hits both alike
            mix_runs.append(run(sim, env)[0])
            apt_runs.append(apt.simulate(target)[0])
        mix_warm, apt_warm = median(mix_runs), median(apt_runs)
        packages = final_set(index, [], plan)
        mix_names = {p["name"] for p in packages}
        problems = check_mix(packages) + check_debian(packages, "/var/lib/apt/lists/*_Packages*")
        r.update(
            mix_cold=mix_cold._asdict(),
            apt_cold=apt_cold._asdict(),
            mix_warm=mix_warm._asdict(),
            apt_warm=apt_warm._asdict(),
            warm_ratio_wall=apt_warm.wall / mix_warm.wall,
            warm_ratio_cpu=apt_warm.cpu / mix_warm.cpu,
            mix_packages=len(mix_names),
            apt_packages=len(apt_names),
            only_mix=sorted(mix_names - apt_names),
            only_apt=sorted(apt_names - mix_names),
            problems=problems,
        )
        results["targets"][target] = r

        def fmt(t: Timing) -> str:
            return f"{t.wall:6.2f} ({t.cpu:4.2f})"

        print(
            f"{target:20} {len(mix_names):>5}/{len(apt_names):<6} {fmt(mix_cold)} {fmt(apt_cold)} "
            f"{fmt(mix_warm)} {fmt(apt_warm)} {r['warm_ratio_wall']:>5.1f}x "
            f"{r['warm_ratio_cpu']:>5.1f}x  {'valid' if not problems else f'{len(problems)} PROBLEMS'}"
        )
        for who, names in (("mix", r["only_mix"]), ("apt", r["only_apt"])):
            if names:
                more = f" ... ({len(names)})" if len(names) > 12 else ""
                print(f"    only {who}: {' '.join(names[:12])}{more}")

    if args.sample:
        results["sample"] = sample_plans(root, index, args.sample)

    # No cache: the command parses the JSON index and builds the pool itself.
    (root / "var/lib/mix/repos/debian/index.solv").unlink()
    nocache, _ = run(mix_cmd(root, "--simulate", "install", args.targets[0]), env)
    results["mix_nocache"] = nocache._asdict()
    print(f"mix --simulate install {args.targets[0]} without a .solv cache (rebuilds it): "
          f"{nocache.wall:.2f} s ({nocache.cpu:.2f} s CPU)")  # fmt: skip

    search: dict[str, Any] = {}
    for term in SEARCH_TERMS:
        # `mix search` exits 9 when nothing matches.
        runs = [run(mix_cmd(root, "search", term), env, ok=(0, 9))[0] for _ in range(args.runs)]
        search[term] = median(runs)._asdict()
    results["search"] = search
    # The floor of `mix search` with the light index: interpreter + mix.search + load + search.
    cache = root / "var/lib/mix/repos/debian/index.solv"
    if not cache.exists():
        run(mix_cmd(root, "search", "x"), env, ok=(0, 9))  # rebuilds the caches
    fast: dict[str, Any] = {}
    for term in SEARCH_TERMS:
        code = (
            "import sys; from pathlib import Path; from mix.search import SearchIndex; "
            "print(len(SearchIndex.load(Path(sys.argv[1])).search(sys.argv[2])))"
        )
        cmd = [sys.executable, "-c", code, str(cache), term]
        fast[term] = median([run(cmd, env)[0] for _ in range(args.runs)])._asdict()
    results["search_index_command"] = fast
    baseline = median([run([sys.executable, "-c", "pass"], env)[0] for _ in range(args.runs)])
    results["python_startup"] = baseline._asdict()
    results["search_inprocess_s"] = inprocess_search(root)
    print("mix search, whole command, median wall (CPU) ms: " + ", ".join(
        f"{t!r} {v['wall'] * 1000:.0f} ({v['cpu'] * 1000:.0f})" for t, v in search.items()))  # fmt: skip
    print("SearchIndex as a command (python + mix.search + load + search), wall (CPU) ms: "
          + ", ".join(f"{t!r} {v['wall'] * 1000:.0f} ({v['cpu'] * 1000:.0f})"
                      for t, v in fast.items()))  # fmt: skip
    print(f"  python -c pass alone: {baseline.wall * 1000:.0f} ({baseline.cpu * 1000:.0f}) ms; "
          "cache load + Solver.search in one process: " + ", ".join(
        f"{t!r} {s * 1000:.0f} ms" for t, s in results["search_inprocess_s"].items()))  # fmt: skip
    results["load_after"] = os.getloadavg()
    out_path = ROOT / "artifacts" / "bench" / "resolver_scale.json"
    out_path.write_text(json.dumps(results, indent=1))
    print(f"load average before/after: {results['load_before'][0]:.1f} / "
          f"{results['load_after'][0]:.1f} (2 cores, shared); details: {out_path}")  # fmt: skip
    return 0


def sample_plans(root: Path, index: list[dict[str, Any]], count: int) -> dict[str, Any]:
    """Install each of `count` random packages (fixed seed) into an empty system and check
    every plan with both rule sets; unsatisfiable requests are listed for inspection."""
    import random

    sys.path.insert(0, str(ROOT / "src"))
    from plan_check import DebianLists, check_debian, check_mix

    from mix.solver import Request, Solver, SolverError

    names = sorted({e["name"] for e in index})
    chosen = random.Random(1).sample(names, min(count, len(names)))
    solver = Solver()
    solver.add_repo("debian", None, cache=root / "var/lib/mix/repos/debian/index.solv")
    lists = DebianLists("/var/lib/apt/lists/*_Packages*")
    solved, invalid, unsat, sizes, times = 0, [], [], [], []
    for name in chosen:
        t0 = time.perf_counter()
        try:
            plan = solver.solve(Request(install=[name]))
        except SolverError as e:
            unsat.append((name, str(e).splitlines()[1] if "\n" in str(e) else str(e)))
            continue
        times.append(time.perf_counter() - t0)
        solved += 1
        packages = list(plan.install)
        sizes.append(len(packages))
        problems = check_mix(packages) + check_debian(packages, lists)
        if problems:
            invalid.append((name, problems[:3]))
    print(
        f"random sample: {len(chosen)} packages; {solved} solved, all plans checked: "
        f"{len(invalid)} invalid; {len(unsat)} unsatisfiable; plan size median "
        f"{statistics.median(sizes) if sizes else 0:.0f}, max {max(sizes, default=0)}; "
        f"solve time median {statistics.median(times) * 1000 if times else 0:.0f} ms, "
        f"max {max(times, default=0) * 1000:.0f} ms (in-process, cache loaded once)"
    )
    for name, why in unsat[:10]:
        print(f"    unsatisfiable: {name}: {why}")
    for name, problems in invalid[:10]:
        print(f"    INVALID: {name}: {problems}")
    return {
        "count": len(chosen),
        "solved": solved,
        "invalid": invalid,
        "unsatisfiable": unsat,
        "plan_size_median": statistics.median(sizes) if sizes else 0,
        "solve_s_median": statistics.median(times) if times else 0,
    }


def inprocess_search(root: Path) -> dict[str, float]:
    """Cache load + Solver.search inside this process (what `mix search` costs after imports)."""
    sys.path.insert(0, str(ROOT / "src"))
    from mix.solver import Solver

    cache = root / "var/lib/mix/repos/debian/index.solv"
    if not cache.exists():
        run(mix_cmd(root, "search", "x"), mix_env(), ok=(0, 9))  # rebuilds the cache
    out = {}
    for term in SEARCH_TERMS:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            s = Solver()
            s.add_repo("debian", None, cache=cache)
            s.search(term)
            times.append(time.perf_counter() - t0)
        out[term] = statistics.median(times)
    return out


if __name__ == "__main__":
    sys.exit(main())
