"""The commands that only look: list, search, info, files, owner, verify."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mix.cli import command
from mix.errors import MixError, NotFoundError, VerifyError
from mix.session import Session, emit_json, human_size, say, warn

if TYPE_CHECKING:
    from mix.search import SearchIndex
    from mix.solver import Solver


def _available(s: Session) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in s.repos():
        out.extend(r.entries())
    return out


def _newest(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    from mix.version import compare

    best: dict[str, dict[str, Any]] = {}
    for e in entries:
        cur = best.get(e["name"])
        if cur is None or compare(e["version"], cur["version"]) > 0:
            best[e["name"]] = e
    return best


def _priorities(s: Session) -> dict[str, int]:
    return {r.name: r.priority for r in s.cfg.repos}


def _candidates(s: Session, entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per name, the version `install NAME` picks: from the repository of highest
    priority, and the newest there (as the solver chooses)."""
    from functools import cmp_to_key

    from mix.version import compare

    prio = _priorities(s)

    def better(a: dict[str, Any], b: dict[str, Any]) -> int:
        pa, pb = prio.get(a.get("repo", ""), 0), prio.get(b.get("repo", ""), 0)
        return (pa > pb) - (pa < pb) or compare(a["version"], b["version"])

    best: dict[str, dict[str, Any]] = {}
    key = cmp_to_key(better)
    for e in entries:
        cur = best.get(e["name"])
        if cur is None or key(e) > key(cur):
            best[e["name"]] = e
    return best


def _dependency_names(text: str) -> set[str]:
    """The package names a dependency ("a | b>=2", "libc.so.6") can be met by."""
    import re

    out = set()
    for term in text.split("|"):
        m = re.match(r"\s*([^\s<>=!]+)", term)
        if m:
            out.add(m.group(1))
    return out


def _required_by(s: Session, names: set[str]) -> list[str]:
    """Installed packages with a dependency that one of names meets."""
    return sorted(p["name"] for p in s.db.packages()
                  if any(_dependency_names(d) & names for d in p.get("dependencies") or ()))


def _public(e: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in e.items() if not k.startswith("_")}


@command("list")
def cmd_list(args: argparse.Namespace) -> int:
    which = args.which or "installed"
    with Session(args, write=False) as s:
        if which in ("installed", "held"):
            held = s.db.holds()
            rows = [{"name": p["name"], "version": p["version"], "reason": p["reason"],
                     "held": p["name"] in held}
                    for p in s.db.packages() if which == "installed" or p["name"] in held]
        elif which == "available":
            entries = _available(s)
            if not args.all_versions:
                entries = list(_candidates(s, entries).values())
            rows = [{"name": e["name"], "version": e["version"], "repo": e["repo"]}
                    for e in sorted(entries, key=lambda e: (e["name"], e["version"]))]
        else:
            from mix.version import compare

            newest = _newest(_available(s))
            rows = [{"name": p["name"], "version": newest[p["name"]]["version"],
                     "old_version": p["version"]}
                    for p in s.db.packages()
                    if p["name"] in newest and compare(newest[p["name"]]["version"],
                                                       p["version"]) > 0]
    if args.json:
        emit_json(rows)
    else:
        for r in rows:
            if "old_version" in r:
                print(f"{r['name']} {r['old_version']} -> {r['version']}")
                continue
            extra = f" [{r['reason']}]" if r.get("reason") == "dependency" else ""
            extra += " [held]" if r.get("held") else ""
            print(f"{r['name']} {r['version']}{extra}")
    return 0


def _search_indexes(s: Session) -> list[SearchIndex] | None:
    """The light search index of every stored repository, or None if one is not usable.

    Names and descriptions only: loading them skips the dependency data of the
    full solver cache, which keeps a search over a distribution-sized index fast.
    """
    from mix.search import SearchIndex

    out: list[SearchIndex] = []
    for r in s.repos():
        idx = SearchIndex.load(r.cache_path, r.index_path)
        if idx is None:
            return None
        out.append(idx)
    return out


@command("search")
def cmd_search(args: argparse.Namespace) -> int:
    with Session(args, write=False) as s:
        searchers: list[SearchIndex] | list[Solver] | None = _search_indexes(s)
        # the light indexes are one per repository, in the order of s.repos(); the
        # solver's entries name their repository themselves
        repo_of = [r.repo.name for r in s.repos()]
        if searchers is None:  # a cache is missing or stale: the solver rebuilds it
            searchers = [s.solver(installed=False)]
            repo_of = []
        found: dict[tuple[str, str, str], dict[str, Any]] | None = None
        for term in args.terms:
            hits = {}
            for i, x in enumerate(list[Any](searchers)):
                for e in x.search(term):
                    e = dict(e)
                    e.setdefault("repo", repo_of[i] if i < len(repo_of) else "")
                    hits[(e["name"], e["version"], e["repo"])] = e
            found = hits if found is None else {k: v for k, v in found.items() if k in hits}
        results = list((found or {}).values())
        if not args.all_versions:
            results = list(_candidates(s, results).values())
        installed = {p["name"]: p["version"] for p in s.db.packages()}
    results.sort(key=lambda e: (e["name"], e["version"]))
    if args.json:
        emit_json([{"name": e["name"], "version": e["version"], "repo": e.get("repo", ""),
                    "description": e.get("description", ""),
                    "installed_version": installed.get(e["name"])} for e in results])
    else:
        for e in results:
            mark = " [installed]" if installed.get(e["name"]) == e["version"] else ""
            print(f"{e['name']} {e['version']}{mark} - {e.get('description', '')}")
    return 0 if results else 9


@command("info")
def cmd_info(args: argparse.Namespace) -> int:
    from mix.search import provided_names

    with Session(args, write=False) as s:
        inst = s.db.package(args.package)
        held = args.package in s.db.holds()
        everything: list[dict[str, Any]] = []
        if s.cfg.repos:
            try:
                everything = _available(s)
            except MixError as e:
                if inst is None:
                    raise
                warn(str(e))
        avail = [e for e in everything if e["name"] == args.package]
        providers = [] if inst is not None or avail else [
            e for e in everything
            if args.package in provided_names(e.get("provides") or (), e["name"])]
        candidate = _candidates(s, avail).get(args.package)
        shown = inst or candidate
        required_by = _required_by(s, {args.package} | set(
            provided_names((shown or {}).get("provides") or (), args.package)))
        installed_providers = sorted(p["name"] for p in s.db.packages()
                                     if args.package in provided_names(
                                         p.get("provides") or (), p["name"]))
    if shown is None and providers:
        return _info_virtual(args, providers, installed_providers, required_by)
    if shown is None:
        raise NotFoundError(f"no package named {args.package!r} is installed or available",
                            "check the name with 'mix search'")
    from functools import cmp_to_key

    from mix.version import compare

    info = _public(dict(shown))
    info["installed_version"] = inst["version"] if inst else None
    info["candidate_version"] = candidate["version"] if candidate else None
    info["available_versions"] = sorted({e["version"] for e in avail},
                                        key=cmp_to_key(compare))
    info["required_by"] = required_by
    info["held"] = held
    if args.json:
        emit_json(info)
        return 0
    for key in ("name", "version", "description", "arch", "license", "url", "dependencies",
                "provides", "conflicts", "replaces", "installed_size", "reason", "repo",
                "installed_version", "candidate_version", "available_versions",
                "required_by", "held"):
        value = info.get(key)
        if value in (None, "", [], False):
            continue
        if isinstance(value, list):
            value = ", ".join(value)
        if key == "installed_size":
            value = human_size(int(value))
        if value is True:
            value = "yes"
        label = {"candidate_version": "Candidate"}.get(key, key.replace("_", " ").capitalize())
        print(f"{label + ':':20} {value}")
    return 0


def _info_virtual(args: argparse.Namespace, providers: list[dict[str, Any]],
                  installed: list[str], required_by: list[str]) -> int:
    """info on a name that only packages provide (a virtual name, such as libc.so.6)."""
    rows = [{"name": e["name"], "version": e["version"], "repo": e.get("repo", "")}
            for e in sorted(providers, key=lambda e: (e["name"], e["version"]))]
    if args.json:
        emit_json({"name": args.package, "virtual": True, "provided_by": rows,
                   "installed_providers": installed, "required_by": required_by})
        return 0
    print(f"{args.package} is a virtual name, provided by:")
    for r in rows:
        mark = " [installed]" if r["name"] in installed else ""
        print(f"  {r['name']} {r['version']} ({r['repo']}){mark}")
    if required_by:
        print(f"{'Required by:':20} {', '.join(required_by)}")
    return 0


@command("provides")
def cmd_provides(args: argparse.Namespace) -> int:
    """Which available package ships PATH (from the repositories' file lists) or provides
    NAME (its own name or one it provides)."""
    from mix.search import provided_names

    what = args.what
    hits: list[dict[str, Any]] = []
    with Session(args, write=False) as s:
        if what.startswith("/"):
            path = os.path.normpath(what)
            without: list[str] = []
            for r in s.repos():
                lists = r.file_lists(s.fetcher)
                if lists is None:
                    without.append(r.repo.url)
                    continue
                owners = {f for f, paths in lists.items() if path in paths}
                hits += [e for e in r.entries() if e["filename"] in owners]
            if not hits and without and len(without) == len(s.cfg.repos):
                raise NotFoundError(f"no repository publishes file lists, so no package can "
                                    f"be found for {path}",
                                    "a repository publishes them with 'mix repo index "
                                    "--files'")
        else:
            hits = [e for e in _available(s) if e["name"] == what
                    or what in provided_names(e.get("provides") or (), e["name"])]
    rows = [{"name": e["name"], "version": e["version"], "repo": e.get("repo", "")}
            for e in sorted(hits, key=lambda e: (e["name"], e["version"]))]
    if not rows:
        raise NotFoundError(f"no available package ships or provides {what}",
                            "check the name with 'mix search'")
    if args.json:
        emit_json(rows)
    else:
        for row in rows:
            print(f"{what}: {row['name']} {row['version']} ({row['repo']})")
    return 0


@command("files")
def cmd_files(args: argparse.Namespace) -> int:
    with Session(args, write=False) as s:
        if s.db.package(args.package) is None:
            raise NotFoundError(f"{args.package} is not installed")
        files = s.db.files(args.package)
    if args.json:
        emit_json([{**f, "config": bool(f["config"])} for f in files])
    else:
        for f in files:
            print(f["path"] + ("/" if f["type"] == "dir" else
                               f" -> {f['target']}" if f["type"] == "symlink" else ""))
    return 0


@command("owner")
def cmd_owner(args: argparse.Namespace) -> int:
    path = os.path.normpath("/" + args.path.lstrip("/")) if args.path.startswith("/") \
        else os.path.normpath(os.path.join(os.getcwd(), args.path))
    with Session(args, write=False) as s:
        root = str(s.cfg.root)
        if root != "/" and (path == root or path.startswith(root + "/")):
            path = path[len(root):] or "/"
        owners = s.db.owners(path)
    if not owners:
        raise NotFoundError(f"no installed package owns {path}")
    if args.json:
        emit_json([{"path": path, "package": o["package"]} for o in owners])
    else:
        for o in owners:
            print(f"{path} is owned by {o['package']}")
    return 0


def verify_files(root: Path, files: list[dict[str, Any]]
                 ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(problems, modified config files) for installed file rows; each one a
    {"package", "path", "problem"} object."""
    from mix.package import sha256_file
    from mix.rootpath import RootResolver

    resolver = RootResolver(root)
    problems: list[dict[str, str]] = []
    modified: list[dict[str, str]] = []

    def problem(f: dict[str, Any], what: str, into: list[dict[str, str]] = problems) -> None:
        into.append({"package": f["package"], "path": f["path"], "problem": what})

    for f in files:
        path = f["path"]
        try:
            disk = str(root) + resolver.target(path, path)
            st = os.lstat(disk)
        except (MixError, FileNotFoundError, NotADirectoryError):
            problem(f, "missing")
            continue
        import stat as st_mod

        if f["type"] == "dir":
            if not st_mod.S_ISDIR(st.st_mode) and not (
                    st_mod.S_ISLNK(st.st_mode) and os.path.isdir(disk)):
                problem(f, "not a directory")
        elif f["type"] == "symlink":
            if not st_mod.S_ISLNK(st.st_mode) or os.readlink(disk) != f["target"]:
                problem(f, "symlink changed")
        else:
            if not st_mod.S_ISREG(st.st_mode):
                problem(f, "not a regular file")
            elif sha256_file(Path(disk)) != f["sha256"]:
                if f["config"]:
                    problem(f, "modified configuration", modified)
                else:
                    problem(f, "content differs (sha256)")
            elif st_mod.S_IMODE(st.st_mode) != f["mode"]:
                problem(f, f"mode {st_mod.S_IMODE(st.st_mode):o}, expected {f['mode']:o}")
    return problems, modified


def problem_text(p: dict[str, str]) -> str:
    return f"{p['package']}: {p['path']}: {p['problem']}"


@command("verify")
def cmd_verify(args: argparse.Namespace) -> int:
    with Session(args, write=False) as s:
        names = args.packages or [p["name"] for p in s.db.packages()]
        files: list[dict[str, Any]] = []
        for n in names:
            if s.db.package(n) is None:
                raise NotFoundError(f"{n} is not installed")
            files.extend(s.db.files(n))
        problems, modified = verify_files(s.cfg.root, files)
    if args.json:
        emit_json({"problems": problems, "modified_config": modified})
    else:
        for m in modified:
            print(problem_text(m))
        for p in problems:
            print(problem_text(p))
    if problems:
        names = " ".join(sorted({p["package"] for p in problems}))
        raise VerifyError(f"{len(problems)} of {len(files)} installed entries differ from the "
                          "database", f"reinstall the affected packages: mix fix {names}")
    if not args.json:
        say(f"{len(names)} packages, {len(files)} entries: ok")
    return 0
