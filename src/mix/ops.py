"""The commands that act on a root: update, search, install, remove, upgrade, list, info,
files, owner, verify. cli.py parses; this module does."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from mix.config import Config, load
from mix.database import Database
from mix.errors import (
    DeclinedError,
    MixError,
    NotFoundError,
    PackageError,
    TrustError,
    UsageError,
    VerifyError,
)
from mix.lock import RootLock

# Modules for downloading, verifying and transactions are imported where they are needed,
# so that read-only commands (list, files, owner, info) start fast.
if TYPE_CHECKING:
    from mix import repos as repos_mod
    from mix.fetch import Fetcher
    from mix.transaction import Change, Outcome

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]],
                                   Callable[[argparse.Namespace], int]]:
    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn
    return register


def config(args: argparse.Namespace) -> Config:
    return load(args.root, args.repo, args.keys_dir, args.timeout, not args.no_scripts)


def say(msg: str) -> None:
    print(msg, flush=True)


def warn(msg: str) -> None:
    print(f"mix: warning: {msg}", file=sys.stderr, flush=True)


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Session:
    """A root opened for a command: config, database, and (for changes) the lock."""

    def __init__(self, args: argparse.Namespace, write: bool) -> None:
        self.args = args
        self.cfg = config(args)
        self.write = write
        self.lock = RootLock(self.cfg.state_dir) if write else None
        self._fetcher: Fetcher | None = None

    def __enter__(self) -> Self:
        if self.lock is not None:
            self.lock.__enter__()
        try:
            self.db = Database(self.cfg.db_path, readonly=not self.write)
            if self.write and self.db.journal() is not None:
                from mix.transaction import recover

                done = recover(self.cfg.root, self.db)
                if done:
                    warn(done)
            elif self.db.journal() is not None:
                self._recover_for_reader()
        except BaseException:
            if self.lock is not None:
                self.lock.__exit__(None, None, None)
            raise
        return self

    @property
    def fetcher(self) -> Fetcher:
        if self._fetcher is None:
            from mix.fetch import Fetcher

            self._fetcher = Fetcher(self.cfg.timeout)
        return self._fetcher

    def _recover_for_reader(self) -> None:
        """A read-only command found an interrupted transaction: finish it first if allowed,
        so that what it reports matches the disk."""
        if not os.access(self.cfg.state_dir, os.W_OK):
            warn("an interrupted transaction is pending; run any mix command as root to "
                 "complete or undo it")
            return
        from mix.transaction import recover

        self.db.close()
        with RootLock(self.cfg.state_dir):
            db = Database(self.cfg.db_path)
            done = recover(self.cfg.root, db)
            db.close()
        if done:
            warn(done)
        self.db = Database(self.cfg.db_path, readonly=True)

    def __exit__(self, *exc: object) -> None:
        self.db.close()
        if self.lock is not None:
            self.lock.__exit__(None, None, None)

    # --- repositories ------------------------------------------------------------------
    def repos(self, refresh: bool = False) -> list[repos_mod.StoredRepo]:
        """Stored repositories; fetched first when asked, never fetched, or given by --repo."""
        from mix import repos as repos_mod

        stored = repos_mod.stored(self.cfg)
        need = [r for r in stored if refresh or self.args.repo or not r.exists()]
        if need:
            ring = repos_mod.keyring(self.cfg)
            try:
                self.cfg.repos_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot store repository indexes in {self.cfg.repos_dir}: "
                                 f"{e.strerror}", "run 'mix update' as root") from None
            for r in need:
                repos_mod.update(self.cfg, r, ring, self.fetcher)
        return stored

    def solver(self, installed: bool = True) -> Any:
        from mix.solver import Solver

        s = Solver(arch=os.uname().machine if os.uname().machine == "x86_64" else "x86_64")
        for r in self.repos():
            s.add_repo(r.repo.name, r.entries_loader(), r.repo.priority, cache=r.cache_path,
                       index=r.index_path)
        if installed:
            s.set_installed(self.db.packages())
        return s

    def package_file(self, entry: dict[str, Any]) -> Path:
        """The local path of a planned package: the repo file itself, or a verified download."""
        if entry.get("_local"):
            return Path(entry["_local"])
        repo = next((r for r in self.cfg.repos if r.name == entry.get("repo")), None)
        if repo is None:
            raise MixError(f"{entry['name']}: its repository {entry.get('repo')!r} is no "
                           "longer configured", "run 'mix update'")
        url = repo.file_url(entry["filename"])
        if url.startswith("file://"):
            from urllib.parse import unquote, urlsplit

            return Path(unquote(urlsplit(url).path))
        from mix.package import sha256_file

        dest = self.cfg.cache_dir / entry["filename"]
        if dest.exists() and sha256_file(dest) == entry["sha256"]:
            return dest
        return self.fetcher.fetch_file(url, dest, entry["sha256"], entry.get("size"))


# --- plans ---------------------------------------------------------------------------------
def plan_changes(plan: Any) -> list[Change]:
    from mix.transaction import Change

    changes = []
    for kind, old, new in plan.steps:
        name = (new or old)["name"]
        reason = plan.reasons.get(name, (old or {}).get("reason", "dependency"))
        changes.append(Change(kind, name, new=new, old=old, reason=reason,
                              repo=(new or {}).get("repo", "")))
    return changes


def plan_json(changes: list[Change]) -> list[dict[str, Any]]:
    return [{"action": c.kind, "name": c.name,
             "version": (c.new or c.old or {}).get("version"),
             "old_version": (c.old or {}).get("version") if c.kind == "upgrade" else None,
             "reason": c.reason if c.kind != "remove" else None} for c in changes]


def show_plan(changes: list[Change], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"plan": plan_json(changes)}, indent=1))
        return
    download = sum(int((c.new or {}).get("size", 0)) for c in changes if c.new)
    delta = sum(int((c.new or {}).get("installed_size", 0)) for c in changes if c.new) \
        - sum(int((c.old or {}).get("installed_size", 0)) for c in changes if c.old)
    say("Plan:")
    for c in changes:
        if c.kind == "install":
            note = " (dependency)" if c.reason == "dependency" else ""
            say(f"  install  {c.name} {c.new['version'] if c.new else ''}{note}")
        elif c.kind == "upgrade":
            say(f"  upgrade  {c.name} {(c.old or {}).get('version')} -> "
                f"{(c.new or {}).get('version')}")
        else:
            say(f"  remove   {c.name} {(c.old or {}).get('version')}")
    sign = "+" if delta >= 0 else "-"
    say(f"{len(changes)} package{'s' if len(changes) != 1 else ''}; download {human_size(download)}, installed size "
        f"{sign}{human_size(abs(delta))}")


def confirm(args: argparse.Namespace) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise DeclinedError("confirmation needed but standard input is not a terminal",
                            "pass -y to proceed without asking")
    answer = input("Proceed? [Y/n] ").strip().lower()
    if answer not in ("", "y", "yes"):
        raise DeclinedError("cancelled; nothing was changed")


def report(outcome: Outcome) -> None:
    for path in outcome.mixnew:
        say(f"config {path} was changed locally: kept; the new version is {path}.mixnew")
    for path in outcome.kept:
        say(f"config {path} was changed locally: kept after removing its package")
    for w in outcome.warnings:
        warn(w)
    parts = [f"{len(v)} {k}" for k, v in (("installed", outcome.installed),
                                          ("upgraded", outcome.upgraded),
                                          ("removed", outcome.removed)) if v]
    say("done: " + (", ".join(parts) if parts else "nothing to do"))


def execute(s: Session, plan: Any, named: list[str]) -> int:
    """Show the plan, confirm, fetch, run the transaction."""
    args = s.args
    changes = plan_changes(plan)
    reason_flips = {n: r for n, r in plan.reasons.items()
                    if n not in {c.name for c in changes}}
    if not changes:
        if reason_flips and not args.simulate:
            with s.db.transaction() as c:
                for n, r in reason_flips.items():
                    Database.set_reason(c, n, r)
        if args.json:
            print(json.dumps({"plan": []}))
        else:
            say("nothing to do" + (f": {', '.join(named)} already installed" if named else ""))
        return 0
    show_plan(changes, args.json)
    if args.simulate:
        return 0
    confirm(args)
    for ch in changes:
        if ch.new is not None:
            ch.path = s.package_file(ch.new)
    from mix.transaction import PostScriptError, Transaction

    tx = Transaction(s.cfg.root, s.db, changes, run_scripts=s.cfg.run_scripts)
    try:
        outcome = tx.run()
    except PostScriptError as e:
        if not e.failed_installs:
            raise
        undo_failed_installs(s, e)
    if reason_flips:
        with s.db.transaction() as c:
            for n, r in reason_flips.items():
                Database.set_reason(c, n, r)
    if not args.json:
        report(outcome)
    return 0


def undo_failed_installs(s: Session, e: Any) -> None:
    """A new package whose post-install failed is removed again (with what came in only
    for it, and what in this transaction needs it), so that a failed script leaves no
    half-configured package behind. Packages that were there before are never touched:
    if removing it would need that, it stays installed and the error says so."""
    from mix.solver import Request, SolverError
    from mix.transaction import Transaction

    new = set(e.outcome.installed)
    plan = None
    for drop_orphans in (True, False):
        try:
            candidate = _bare_solver(s).solve(Request(remove=e.failed_installs,
                                                      remove_dependents=True,
                                                      drop_orphans=drop_orphans))
        except SolverError:
            continue
        if not candidate.install and not candidate.upgrade \
                and {p["name"] for p in candidate.remove} <= new:
            plan = candidate
            break
    if plan is None:
        raise type(e)(f"{e.message}\n{', '.join(e.failed_installs)} stayed installed: packages "
                      "installed before depend on it", e.hint, e.failed_installs, e.outcome)
    changes = plan_changes(plan)
    Transaction(s.cfg.root, s.db, changes, run_scripts=False).run()
    removed = ", ".join(c.name for c in changes)
    raise type(e)(f"{e.message}\nremoved again: {removed}; the rest of the transaction stays",
                  e.hint, e.failed_installs, e.outcome)


# --- commands ------------------------------------------------------------------------------
@command("update")
def cmd_update(args: argparse.Namespace) -> int:
    from mix import repos as repos_mod

    with Session(args, write=True) as s:
        ring = repos_mod.keyring(s.cfg)
        failures = []
        for r in repos_mod.stored(s.cfg):
            try:
                n = repos_mod.update(s.cfg, r, ring, s.fetcher)
                say(f"{r.repo.url}: " + ("unchanged" if n is None else f"{n} packages"))
            except MixError as e:
                failures.append(e)
                print(f"mix: error: {r.repo.url}: {e.message} (kept the previous index)",
                      file=sys.stderr)
        if failures:
            raise type(failures[0])(f"{len(failures)} of {len(s.cfg.repos)} repositories "
                                    "could not be updated", failures[0].hint)
        s.solver(installed=False)  # refresh the solver caches now, not on first use
    return 0


def _local_packages(s: Session, specs: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Split install args into specs and local .mixpkg files (as solver entries)."""
    from mix.index import entry_from_metadata
    from mix.package import read_metadata, sha256_file

    names, local = [], []
    for spec in specs:
        if spec.endswith(".mixpkg") and ("/" in spec or os.path.exists(spec)):
            path = Path(spec).absolute()
            if not path.exists():
                raise NotFoundError(f"{spec}: no such file")
            md = read_metadata(path)
            sha = sha256_file(path)
            entry = entry_from_metadata(md, path.name, path.stat().st_size, sha)
            entry.update(_local=str(path), repo="@local")
            local.append(entry)
            names.append(f"{md.name}={md.version}")
        else:
            names.append(spec)
    return names, local


@command("install")
def cmd_install(args: argparse.Namespace) -> int:
    from mix.solver import Request

    with Session(args, write=not args.simulate) as s:
        specs, local = _local_packages(s, args.packages)
        if local and not args.allow_untrusted:
            trusted = set()
            if s.cfg.repos:
                for r in s.repos():
                    trusted |= {(e["name"], e["version"], e["sha256"]) for e in r.entries()}
            for e in local:
                if (e["name"], e["version"], e["sha256"]) not in trusted:
                    raise TrustError(f"{e['_local']} is not in any signed repository index",
                                     "pass --allow-untrusted to install it anyway")
        elif local:
            for e in local:
                e["_untrusted"] = True
        solver = s.solver() if s.cfg.repos else _bare_solver(s)
        if local:
            solver.add_repo("@local", local, priority=1000)
        plan = solver.solve(Request(install=specs))
        return execute(s, plan, [a for a in args.packages])


def _bare_solver(s: Session) -> Any:
    from mix.solver import Solver

    solver = Solver(arch="x86_64")
    solver.set_installed(s.db.packages())
    return solver


@command("remove")
def cmd_remove(args: argparse.Namespace) -> int:
    from mix.solver import Request

    with Session(args, write=not args.simulate) as s:
        for name in args.packages:
            if s.db.package(name) is None:
                raise NotFoundError(f"{name} is not installed", "see 'mix list --installed'")
        solver = s.solver() if s.cfg.repos else _bare_solver(s)
        plan = solver.solve(Request(remove=args.packages, remove_dependents=args.cascade))
        return execute(s, plan, [])


@command("upgrade")
def cmd_upgrade(args: argparse.Namespace) -> int:
    from mix.solver import Request

    with Session(args, write=not args.simulate) as s:
        for name in args.packages:
            if s.db.package(name) is None:
                raise NotFoundError(f"{name} is not installed", f"use 'mix install {name}'")
        solver = s.solver()
        req = Request(upgrade=args.packages) if args.packages else Request(upgrade_all=True)
        return execute(s, solver.solve(req), [])


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


def _public(e: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in e.items() if not k.startswith("_")}


@command("list")
def cmd_list(args: argparse.Namespace) -> int:
    which = args.which or "installed"
    with Session(args, write=False) as s:
        if which == "installed":
            rows = [{"name": p["name"], "version": p["version"], "reason": p["reason"]}
                    for p in s.db.packages()]
        elif which == "available":
            rows = [{"name": e["name"], "version": e["version"], "repo": e["repo"]}
                    for e in sorted(_available(s), key=lambda e: (e["name"], e["version"]))]
        else:
            from mix.version import compare

            newest = _newest(_available(s))
            rows = [{"name": p["name"], "version": p["version"],
                     "new_version": newest[p["name"]]["version"]}
                    for p in s.db.packages()
                    if p["name"] in newest and compare(newest[p["name"]]["version"],
                                                       p["version"]) > 0]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            extra = f" -> {r['new_version']}" if "new_version" in r else \
                f" [{r['reason']}]" if r.get("reason") == "dependency" else ""
            print(f"{r['name']} {r['version']}{extra}")
    return 0


@command("search")
def cmd_search(args: argparse.Namespace) -> int:
    with Session(args, write=False) as s:
        solver = s.solver(installed=False)
        found: dict[tuple[str, str], dict[str, Any]] | None = None
        for term in args.terms:
            hits = {(e["name"], e["version"]): e for e in solver.search(term)}
            found = hits if found is None else {k: v for k, v in found.items() if k in hits}
        installed = {p["name"]: p["version"] for p in s.db.packages()}
    results = sorted((found or {}).values(), key=lambda e: (e["name"], e["version"]))
    if args.json:
        print(json.dumps([{"name": e["name"], "version": e["version"],
                           "description": e.get("description", ""),
                           "installed": installed.get(e["name"])} for e in results], indent=1))
    else:
        for e in results:
            mark = " [installed]" if installed.get(e["name"]) == e["version"] else ""
            print(f"{e['name']} {e['version']}{mark} - {e.get('description', '')}")
    return 0 if results else 9


@command("info")
def cmd_info(args: argparse.Namespace) -> int:
    with Session(args, write=False) as s:
        inst = s.db.package(args.package)
        avail: list[dict[str, Any]] = []
        if s.cfg.repos:
            try:
                avail = [e for e in _available(s) if e["name"] == args.package]
            except MixError as e:
                if inst is None:
                    raise
                warn(str(e))
    if inst is None and not avail:
        raise NotFoundError(f"no package named {args.package!r} is installed or available",
                            "check the name with 'mix search'")
    from mix.version import compare

    info = dict(inst) if inst else dict(_newest(avail)[args.package])
    info = _public(info)
    info["installed_version"] = inst["version"] if inst else None
    info["available_versions"] = sorted({e["version"] for e in avail},
                                        key=__import__("functools").cmp_to_key(compare))
    if args.json:
        print(json.dumps(info, indent=1, sort_keys=True))
        return 0
    for key in ("name", "version", "description", "arch", "license", "url", "dependencies",
                "provides", "conflicts", "replaces", "installed_size", "reason", "repo",
                "installed_version", "available_versions"):
        value = info.get(key)
        if value in (None, "", []):
            continue
        if isinstance(value, list):
            value = ", ".join(value)
        if key == "installed_size":
            value = human_size(int(value))
        print(f"{key.replace('_', ' ').capitalize() + ':':20} {value}")
    return 0


@command("files")
def cmd_files(args: argparse.Namespace) -> int:
    with Session(args, write=False) as s:
        if s.db.package(args.package) is None:
            raise NotFoundError(f"{args.package} is not installed")
        files = s.db.files(args.package)
    if args.json:
        print(json.dumps(files, indent=1))
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
        print(json.dumps([{"path": path, "package": o["package"]} for o in owners]))
    else:
        for o in owners:
            print(f"{path} is owned by {o['package']}")
    return 0


def verify_files(root: Path, files: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(problems, modified config files) for installed file rows."""
    from mix.package import sha256_file
    from mix.rootpath import RootResolver

    resolver = RootResolver(root)
    problems: list[str] = []
    modified: list[str] = []
    for f in files:
        path = f["path"]
        try:
            disk = str(root) + resolver.target(path, path)
            st = os.lstat(disk)
        except (MixError, FileNotFoundError, NotADirectoryError):
            problems.append(f"{f['package']}: {path}: missing")
            continue
        import stat as st_mod

        if f["type"] == "dir":
            if not st_mod.S_ISDIR(st.st_mode) and not (
                    st_mod.S_ISLNK(st.st_mode) and os.path.isdir(disk)):
                problems.append(f"{f['package']}: {path}: not a directory")
        elif f["type"] == "symlink":
            if not st_mod.S_ISLNK(st.st_mode) or os.readlink(disk) != f["target"]:
                problems.append(f"{f['package']}: {path}: symlink changed")
        else:
            if not st_mod.S_ISREG(st.st_mode):
                problems.append(f"{f['package']}: {path}: not a regular file")
            elif sha256_file(Path(disk)) != f["sha256"]:
                (modified if f["config"] else problems).append(
                    f"{f['package']}: {path}: " + ("modified configuration" if f["config"]
                                                   else "content differs (sha256)"))
            elif st_mod.S_IMODE(st.st_mode) != f["mode"]:
                problems.append(f"{f['package']}: {path}: mode {st_mod.S_IMODE(st.st_mode):o},"
                                f" expected {f['mode']:o}")
    return problems, modified


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
        print(json.dumps({"problems": problems, "modified_config": modified}, indent=1))
    else:
        for m in modified:
            print(m)
        for p in problems:
            print(p)
    if problems:
        raise VerifyError(f"{len(problems)} of {len(files)} installed entries differ from the "
                          "database", "reinstall the affected packages")
    if not args.json:
        say(f"{len(names)} packages, {len(files)} entries: ok")
    return 0


_ = PackageError  # re-exported for callers catching package errors from ops
