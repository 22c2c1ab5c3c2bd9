"""mix install vs pacman -U: the same ~50 real Debian packages into an empty root.

    PYTHONPATH=src .venv/bin/python bench/mix_vs_pacman.py [--runs 5] [--work DIR]

Each Debian package (binaries and libraries, a few MB each) is unpacked once and
repackaged three times with the same file tree: as a .mixpkg with zstd (package format 2)
and as a .mixpkg with gzip (`mix build --compression zstd|gzip`), each set in its own
signed mix repository, and as a .pkg.tar.zst (.PKGINFO + tree) for pacman. Both zstd
sets use level 10 (mix's fixed level; `zstd -10` for pacman). Then, for each run and in
rotating order, each installs all of them into a fresh empty root:

    mix --root R --repo file://REPO --keys-dir K -y install P1 ... P50
    pacman -U --root R --dbpath R/var/lib/pacman --config C --noconfirm F1 ... F50

mix's time includes reading and verifying the signed index, building the solver cache,
resolving, verifying every package's sha256, extraction and its two filesystem syncs;
pacman runs with SigLevel = Never (no signature checks) and does not sync, so a second
pacman figure adds one `sync` after it. Prints medians and the ratios mix/pacman.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from mix.build import ZSTD_LEVEL, build_package
from mix.index import scan_repo, write_index
from mix.keys import generate
from mixbuild.common import ARTIFACTS, PACKAGES_DIR, cache_dir
from mixbuild.packages import debian
from mixbuild.packages.recipe import load_recipes

# Binaries and libraries, 1-5 MB each as .deb, ~115 MB together.
PACKAGES = ["ripgrep", "qemu-utils", "openssl", "udev", "cmake", "systemd", "grub-common", "perl-base", "librpm9", "libssl3", "libpython3.11", "libpython3.11-stdlib", "python3.11-minimal", "libglib2.0-0", "libqt5core5a", "libqt5gui5", "libqt5widgets5", "libgtk-3-0", "libavcodec59", "libavfilter8", "libaom3", "libpoppler126", "libmagickcore-6.q16-6", "libgs10", "libtesseract5", "libproj25", "libhdf5-103-1", "libsystemd-shared", "libharfbuzz-icu0", "libtorrent-rasterbar2.0", "mariadb-client", "xvfb", "gstreamer1.0-plugins-good", "texinfo", "netpbm", "iverilog", "ngspice", "ledger", "wabt", "lld-14", "libqt6core6", "libqt6gui6", "libqt6widgets6", "libopencv-imgproc406", "libmfx1", "libplacebo208", "librados2", "librbd1", "libperl5.36", "libgraphicsmagick-q16-3"]

PACMAN_CONF = """[options]
Architecture = auto
SigLevel = Never
LocalFileSigLevel = Never
"""


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if r.returncode != 0:
        sys.exit(f"bench: command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return r


def seed_debs() -> None:
    """Use debs apt already holds, so only missing ones are downloaded."""
    target = debian.debs_dir()
    target.mkdir(parents=True, exist_ok=True)
    for pkg in debian.candidates(PACKAGES).values():
        src = Path("/var/cache/apt/archives") / pkg.filename
        if src.exists() and not (target / pkg.filename).exists():
            shutil.copy(src, target / pkg.filename)


def staging(name: str, version: str, tree: Path, work: Path) -> Path:
    d = work / "stage" / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    shutil.copytree(tree, d / "files", symlinks=True,
                    ignore=shutil.ignore_patterns(".complete"))
    setuid = [f"/{p.relative_to(d / 'files')}" for p in (d / "files").rglob("*")
              if p.is_file() and not p.is_symlink() and p.stat().st_mode & 0o6000]
    md = {"name": name, "version": version, "description": f"Debian's {name}",
          "arch": "x86_64", "setuid": setuid}
    (d / "metadata.json").write_text(json.dumps(md))
    return d


def pacman_pkg(name: str, stage: Path, out: Path) -> None:
    files = stage / "files"
    size = sum(p.lstat().st_size for p in files.rglob("*") if p.is_file())
    pkginfo = (f"pkgname = {name}\npkgbase = {name}\npkgver = 1.0-1\npkgdesc = Debian's {name}\n"
               f"builddate = {os.environ.get('SOURCE_DATE_EPOCH', '0')}\npackager = MixOS bench\n"
               f"size = {size}\narch = x86_64\nlicense = custom\n").encode()
    tar_path = out.with_suffix("")  # .pkg.tar
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as t:
        info = tarfile.TarInfo(".PKGINFO")
        info.size = len(pkginfo)
        import io

        t.addfile(info, io.BytesIO(pkginfo))
        for p in sorted(files.iterdir()):
            t.add(p, arcname=p.name, recursive=True)
    run(["zstd", "-q", "-f", "-T2", f"-{ZSTD_LEVEL}", "--rm", str(tar_path), "-o", str(out)])


COMPRESSIONS = ("zstd", "gzip")


def prepare(work: Path) -> tuple[dict[str, Path], Path, list[Path]]:
    """The mix repositories (by compression), the keys dir and pacman's package files."""
    repos = {c: work / f"mix-repo-{c}" for c in COMPRESSIONS}
    pacdir, keys = work / "pacman-pkgs", work / "keys"
    stamp = work / ".prepared"
    pac_files = [pacdir / f"{n}-1.0-1-x86_64.pkg.tar.zst" for n in PACKAGES]
    recipe = f"zstd-{ZSTD_LEVEL} gzip " + " ".join(PACKAGES)
    if stamp.exists() and stamp.read_text() == recipe:
        return repos, keys, pac_files
    seed_debs()
    fetched = debian.fetch(PACKAGES)
    for d in (*repos.values(), pacdir, keys):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    generate(keys / "bench")
    for n in PACKAGES:
        deb, tree = fetched[n]
        version = debian.mix_version(deb.version)
        st = staging(n, version, tree, work)
        for c, repo in repos.items():
            build_package(st, repo / f"{n}-{version.replace(':', '%3a')}.x86_64.mixpkg", c)
        pacman_pkg(n, st, pacdir / f"{n}-1.0-1-x86_64.pkg.tar.zst")
        shutil.rmtree(st)
        print(f"  packaged {n}", file=sys.stderr)
    for repo in repos.values():
        write_index(repo, scan_repo(repo), keys / "bench.key")
    stamp.write_text(recipe)
    return repos, keys, pac_files


def prepare_collection(work: Path, repo: Path
                       ) -> tuple[dict[str, Path], Path, list[Path], list[str]]:
    """The collection's names, the built repository, a keys dir with its public key,
    and pacman's packages of the same closure (made again when the index changes)."""
    names = sorted(n for n, r in load_recipes(PACKAGES_DIR).items() if r.compact)
    if not (repo / "index.json").is_file():
        sys.exit(f"bench: no repository in {repo}; run 'make packages' first")
    keys, pacdir = work / "collection-keys", work / "collection-pacman"
    keys.mkdir(parents=True, exist_ok=True)
    shutil.copy(cache_dir() / "keys/mixos-repo.pub", keys / "mixos-repo.pub")
    index = (repo / "index.json").read_bytes()
    stamp = work / ".collection-prepared"
    listed = pacdir / "closure.json"
    if not (stamp.exists() and stamp.read_bytes() == index and listed.exists()):
        shutil.rmtree(pacdir, ignore_errors=True)
        pacdir.mkdir(parents=True)
        # mix resolves the closure once; pacman then gets exactly what mix installed.
        root = work / "collection-closure"
        fresh(root)
        time_mix(root, repo, keys, names=names, no_scripts=True)
        out = run([sys.executable, "-m", "mix", "--root", str(root), "--json", "list",
                   "--installed"], env=dict(os.environ, PYTHONPATH=str(PROJECT / "src"))).stdout
        installed = sorted(p["name"] for p in json.loads(out))
        files = {p["name"]: p["filename"] for p in json.loads(index)["packages"]}
        for n in installed:
            st = work / "stage" / n
            shutil.rmtree(st, ignore_errors=True)
            st.mkdir(parents=True)
            run(["tar", "--zstd", "-xf", str(repo / files[n]), "-C", str(st)])
            (st / "files").mkdir(exist_ok=True)
            pacman_pkg(n, st, pacdir / f"{n}-1.0-1-x86_64.pkg.tar.zst")
            shutil.rmtree(st)
        shutil.rmtree(root)
        listed.write_text(json.dumps(installed))
        stamp.write_bytes(index)
    installed = json.loads(listed.read_text())
    pac_files = [pacdir / f"{n}-1.0-1-x86_64.pkg.tar.zst" for n in installed]
    return {"zstd": repo}, keys, pac_files, names


def closure_files(repo: Path, pac_files: list[Path]) -> list[Path]:
    """The .mixpkg files of REPO that pacman's packages were made from."""
    files = {p["name"]: p["filename"]
             for p in json.loads((repo / "index.json").read_bytes())["packages"]}
    return [repo / files[p.name.removesuffix("-1.0-1-x86_64.pkg.tar.zst")] for p in pac_files]


def quiesce(max_wait: float = 30.0) -> None:
    """Flush, then wait until the kernel has no dirty or in-flight pages left (bounded):
    writing or deleting ~500 MB just before a run slowed whichever tool ran next by up
    to 3x on the (virtual) disk here."""
    os.sync()
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        pending_kb = int(meminfo["Dirty"].split()[0]) + int(meminfo["Writeback"].split()[0])
        if pending_kb < 4096:
            break
        time.sleep(0.5)
    time.sleep(3)


def fresh(root: Path) -> None:
    """A new empty root. Every run gets its own; all are deleted only at the end."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    quiesce()


def cpu_children() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_mix(root: Path, repo: Path, keys: Path, src: Path = PROJECT / "src",
             names: list[str] = PACKAGES, no_scripts: bool = False) -> tuple[float, float]:
    fresh(root)
    cmd = [sys.executable, "-m", "mix", "--root", str(root), "--repo", f"file://{repo}",
           "--keys-dir", str(keys), *(["--no-scripts"] if no_scripts else []), "-y",
           "install", *names]
    env = dict(os.environ, PYTHONPATH=str(src))
    c0, t0 = cpu_children(), time.perf_counter()
    run(cmd, env=env)
    return time.perf_counter() - t0, cpu_children() - c0


def time_pacman(root: Path, conf: Path, files: list[Path]) -> tuple[float, float, float]:
    fresh(root)
    (root / "var/lib/pacman").mkdir(parents=True)
    cmd = ["pacman", "-U", "--root", str(root), "--dbpath", str(root / "var/lib/pacman"),
           "--cachedir", str(root / "var/cache/pacman"), "--config", str(conf),
           "--logfile", str(root / "pacman.log"), "--noconfirm", "--noprogressbar",
           "--noscriptlet", *map(str, files)]
    c0, t0 = cpu_children(), time.perf_counter()
    run(cmd)
    t1, c1 = time.perf_counter(), cpu_children()
    os.sync()
    return t1 - t0, time.perf_counter() - t0, c1 - c0


def time_tar(root: Path, files: list[Path], flag: str) -> tuple[float, float]:
    """The floor for each format: GNU tar extracting every package, nothing else."""
    fresh(root)
    c0, t0 = cpu_children(), time.perf_counter()
    for f in files:
        run(["tar", flag, "-xf", str(f), "-C", str(root)])
    return time.perf_counter() - t0, cpu_children() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed runs of each tool first (page cache, pending disk work)")
    ap.add_argument("--work", type=Path,
                    default=Path(os.environ.get("MIXOS_CACHE", "/var/cache/mixos")) / "bench/mix-vs-pacman")
    ap.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                    help="also time the mix of another checkout (e.g. an earlier version) on "
                    "the gzip repository, as the tool 'baseline'")
    ap.add_argument("--collection", nargs="?", type=Path, const=ARTIFACTS / "repo",
                    metavar="REPO", help="install MixOS's package collection from REPO "
                    "(default artifacts/repo) instead of the ~50 Debian packages")
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    if args.collection:
        print(f"preparing the collection of {args.collection} in {work} ...", file=sys.stderr)
        repos, keys, pac_files, names = prepare_collection(work, args.collection)
    else:
        print(f"preparing {len(PACKAGES)} packages in {work} ...", file=sys.stderr)
        repos, keys, pac_files = prepare(work)
        names = PACKAGES
    conf = work / "pacman.conf"
    conf.write_text(PACMAN_CONF)
    if args.collection:
        mixpkgs = {"zstd": closure_files(args.collection, pac_files)}
    else:
        mixpkgs = {c: sorted(repo.glob("*.mixpkg")) for c, repo in repos.items()}
    sizes = {c: sum(p.stat().st_size for p in files) for c, files in mixpkgs.items()}
    pac_size = sum(p.stat().st_size for p in pac_files)
    tools = [f"mix-{c}" for c in repos] + (["baseline"] if args.baseline else []) \
        + ["pacman"]

    def once(tool: str, root: Path) -> tuple[float, float]:
        if tool == "pacman":
            a, b, cpu = time_pacman(root, conf, pac_files)
            pac_sync_t.append(b)
            return a, cpu
        if tool == "baseline":
            return time_mix(root, repos["gzip"], pub_dir(keys), args.baseline / "src", names)
        return time_mix(root, repos[tool.removeprefix("mix-")], pub_dir(keys), names=names,
                        no_scripts=bool(args.collection))

    pac_sync_t: list[float] = []
    for i in range(args.warmup):
        for tool in tools:
            once(tool, work / f"warmup-{tool}-{i}")
    pac_sync_t.clear()
    wall: dict[str, list[float]] = {t: [] for t in tools}
    cpu: dict[str, list[float]] = {t: [] for t in tools}
    loads: list[float] = []
    for i in range(args.runs):
        order = tools[i % len(tools):] + tools[:i % len(tools)]  # each tool goes first in turn
        for tool in order:
            w, c = once(tool, work / f"root-{tool}-{i}")
            wall[tool].append(w)
            cpu[tool].append(c)
            loads.append(os.getloadavg()[0])
        print(f"  run {i + 1}: " + ", ".join(f"{t} {wall[t][-1]:.2f} s (cpu {cpu[t][-1]:.2f})"
                                             for t in tools)
              + f", pacman+sync {pac_sync_t[-1]:.2f} s", file=sys.stderr)
    floors = {}
    for name, files, flag in ([(f"mix-{c}", mixpkgs[c], "--zstd" if c == "zstd" else "-z")
                               for c in repos] + [("pacman", pac_files, "--zstd")]):
        floors[name] = time_tar(work / f"root-tar-{name}", files, flag)
        shutil.rmtree(work / f"root-tar-{name}")
    entries = {t: sum(1 for _ in (work / f"root-{t}-0").rglob("*")) for t in tools}
    med = {t: statistics.median(wall[t]) for t in tools}
    med_cpu = {t: statistics.median(cpu[t]) for t in tools}
    ps = statistics.median(pac_sync_t)
    print(f"packages: {len(names)} named, {len(pac_files)} installed; mix packages "
          + ", ".join(f"{sizes[c] / 1e6:.0f} MB ({c})" for c in sizes) + "; pacman packages "
          f"{pac_size / 1e6:.0f} MB (zstd -{ZSTD_LEVEL}); entries in root: "
          + ", ".join(f"{t} {n}" for t, n in entries.items()))
    for t in tools:
        print(f"{t:<16} median {med[t]:.2f} s  cpu {med_cpu[t]:.2f} s  "
              f"(runs: {', '.join(f'{x:.2f}' for x in wall[t])})")
    print(f"pacman + sync    median {ps:.2f} s")
    print("floor, GNU tar extracting the packages (one run): "
          + ", ".join(f"{t} {w:.2f} s (cpu {c:.2f})" for t, (w, c) in floors.items()))
    print(f"load average (1 min) during the runs: median {statistics.median(loads):.1f}, "
          f"max {max(loads):.1f} on {os.cpu_count()} CPUs")
    for t in tools[:-1]:
        # The same run's pair: a host that slows down for a while (other work, CPU
        # steal: CPU seconds of both tools rise together) hits both tools of a run.
        paired = statistics.median(w / p for w, p in zip(wall[t], wall["pacman"], strict=True))
        print(f"ratio {t}/pacman: {med[t] / med['pacman']:.2f} (/(pacman+sync): "
              f"{med[t] / ps:.2f}; cpu {med_cpu[t] / med_cpu['pacman']:.2f}; "
              f"median of the runs' own ratios {paired:.2f})")
    print("below 1.0 means mix is faster")
    for i in range(args.runs):
        for t in tools:
            shutil.rmtree(work / f"root-{t}-{i}", ignore_errors=True)
    for i in range(args.warmup):
        for t in tools:
            shutil.rmtree(work / f"warmup-{t}-{i}", ignore_errors=True)
    return 0


def pub_dir(keys: Path) -> Path:
    """The keys dir holds bench.key too; mix only reads *.pub."""
    return keys


if __name__ == "__main__":
    sys.exit(main())
