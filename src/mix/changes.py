"""The commands that change a root: update, install, remove, upgrade — and how a plan is
shown, confirmed and carried out."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mix.cli import command
from mix.database import Database
from mix.errors import DeclinedError, MixError, NotFoundError, TrustError
from mix.session import Session, emit_json, human_size, say, warn

if TYPE_CHECKING:
    from mix.transaction import Change, Outcome


# --- plans ---------------------------------------------------------------------------------
def plan_changes(plan: Any) -> list[Change]:
    from mix.transaction import Change
    from mix.version import compare

    changes = []
    for kind, old, new in plan.steps:
        name = (new or old)["name"]
        if kind == "remove":
            reason = plan.removals.get(name, "requested")
        else:
            reason = plan.reasons.get(name, (old or {}).get("reason", "dependency"))
        if kind == "upgrade" and compare(new["version"], old["version"]) < 0:
            kind = "downgrade"
        changes.append(Change(kind, name, new=new, old=old, reason=reason,
                              repo=(new or {}).get("repo", "")))
    return changes


def plan_json(changes: list[Change]) -> list[dict[str, Any]]:
    """One object per change: action (install, upgrade, downgrade, reinstall, remove),
    name, version, old_version (of what it replaces, else null), reason (install and
    replacing actions: explicit or dependency; remove: why it goes)."""
    from mix.transaction import REPLACING

    return [{"action": c.kind, "name": c.name,
             "version": (c.new or c.old or {}).get("version"),
             "old_version": (c.old or {}).get("version") if c.kind in REPLACING else None,
             "reason": c.reason} for c in changes]


def show_plan(changes: list[Change], as_json: bool) -> None:
    if as_json:
        emit_json({"plan": plan_json(changes)})
        return
    download = sum(int((c.new or {}).get("size", 0)) for c in changes if c.new)
    delta = sum(int((c.new or {}).get("installed_size", 0)) for c in changes if c.new) \
        - sum(int((c.old or {}).get("installed_size", 0)) for c in changes if c.old)
    say("Plan:")
    for c in changes:
        old, new = (c.old or {}).get("version"), (c.new or {}).get("version")
        if c.kind == "install":
            note = " (dependency)" if c.reason == "dependency" else ""
            say(f"  install  {c.name} {new}{note}")
        elif c.kind == "upgrade":
            say(f"  upgrade  {c.name} {old} -> {new}")
        elif c.kind == "downgrade":
            say(f"  downgrade {c.name} {old} -> {new}")
        elif c.kind == "reinstall":
            say(f"  reinstall {c.name} {new}")
        else:
            note = f" ({c.reason})" if c.reason != "requested" else ""
            say(f"  remove   {c.name} {old}{note}")
    sign = "+" if delta >= 0 else "-"
    sizes = ([f"download {human_size(download)}"] if download else []) \
        + [f"installed size {sign}{human_size(abs(delta))}"]
    say(f"{len(changes)} package{'s' if len(changes) != 1 else ''}; " + ", ".join(sizes))


# Global options left out of the history: where and how mix ran (paths of the host that
# built an image, for one), not what was asked.
_UNRECORDED = {"-y", "--yes", "--json", "--no-scripts", "--simulate"}
_UNRECORDED_WITH_VALUE = {"--root", "--repo", "--keys-dir", "--timeout"}


def command_line(args: argparse.Namespace) -> str:
    """The command as given, for the history: the command and its own arguments."""
    import shlex

    words, skip = [], False
    for word in getattr(args, "argv", None) or [args.command]:
        if skip:
            skip = False
        elif word in _UNRECORDED_WITH_VALUE:
            skip = True
        elif word in _UNRECORDED or word.startswith("--wait") or \
                word.split("=", 1)[0] in _UNRECORDED_WITH_VALUE:
            continue
        else:
            words.append(word)
    return "mix " + shlex.join(words)


def confirm(args: argparse.Namespace) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise DeclinedError("confirmation needed but standard input is not a terminal",
                            "pass -y to proceed without asking")
    answer = input("Proceed? [Y/n] ").strip().lower()
    if answer not in ("", "y", "yes"):
        raise DeclinedError("cancelled; nothing was changed")


def show_script_output(outcome: Outcome, to_stderr: bool) -> None:
    """What scripts printed, each line prefixed with its package and script: a
    post-install notice is how a package talks to the admin."""
    for package, script, text in outcome.script_output:
        for line in text.splitlines():
            print(f"{package} {script}: {line}", file=sys.stderr if to_stderr else sys.stdout,
                  flush=True)


def report(outcome: Outcome) -> None:
    show_script_output(outcome, to_stderr=False)
    for path in outcome.mixnew:
        say(f"config {path} was changed locally: kept; the new version is {path}.mixnew")
    for path in outcome.kept:
        say(f"config {path} was changed locally: kept after removing its package")
    for w in outcome.warnings:
        warn(w)
    parts = [f"{len(v)} {k}" for k, v in (("installed", outcome.installed),
                                          ("upgraded", outcome.upgraded),
                                          ("downgraded", outcome.downgraded),
                                          ("reinstalled", outcome.reinstalled),
                                          ("removed", outcome.removed)) if v]
    say("done: " + (", ".join(parts) if parts else "nothing to do"))


def execute(s: Session, plan: Any, named: list[str]) -> int:
    """Show the plan, confirm, fetch, run the transaction."""
    changes = plan_changes(plan)
    reason_flips = {n: r for n, r in plan.reasons.items()
                    if n not in {c.name for c in changes}}
    return carry_out(s, changes, reason_flips, named)


def carry_out(s: Session, changes: list[Change], reason_flips: dict[str, str],
              named: list[str]) -> int:
    args = s.args
    if not changes:
        if reason_flips and not args.simulate:
            with s.db.transaction() as c:
                for n, r in reason_flips.items():
                    Database.set_reason(c, n, r)
        if args.json:
            emit_json({"plan": []})
        else:
            say("nothing to do" + (f": {', '.join(named)} already installed" if named else ""))
        return 0
    show_plan(changes, args.json)
    if args.simulate:
        return 0
    s.refuse_expired([ch.new for ch in changes if ch.new is not None])
    confirm(args)
    from mix.transaction import PostScriptError, Transaction, check_space

    sizes = [s.download_size(ch.new) for ch in changes if ch.new is not None]
    if any(sizes):
        # the partial download beside its target takes the space until it is renamed
        check_space({str(s.cfg.cache_dir): (sum(sizes), 2 * len(sizes))},
                    "downloading the packages")
    from mix.progress import Progress

    bar = Progress("downloading", sum(1 for size in sizes if size), sum(sizes),
                   enabled=s.fetcher.progress)
    s.fetcher.overall = bar
    try:
        for ch in changes:
            if ch.new is not None:
                if s.download_size(ch.new):
                    bar.next_item(ch.name)
                ch.path = s.package_file(ch.new)
    finally:
        bar.close()
        s.fetcher.overall = None
    if getattr(args, "download_only", False):
        fetched = sum(1 for size in sizes if size)
        if args.json:
            return 0  # the plan was the document
        say(f"downloaded {fetched} package{'s' if fetched != 1 else ''} "
            f"({human_size(sum(sizes))}) into {s.cfg.cache_dir}; nothing else was changed"
            + ("" if fetched == len(sizes) else
               f" ({len(sizes) - fetched} already there or read in place from file://)"))
        return 0

    labels = {r.name: r.label or r.name for r in s.cfg.repos}
    for ch in changes:
        ch.repo = labels.get(ch.repo, ch.repo)
    tx = Transaction(s.cfg.root, s.db, changes, run_scripts=s.cfg.run_scripts,
                     command=command_line(args))
    try:
        outcome = tx.run()
    except PostScriptError as e:
        show_script_output(e.outcome, to_stderr=True)
        if not e.failed_installs:
            raise
        undo_failed_installs(s, e)
    if reason_flips:
        with s.db.transaction() as c:
            for n, r in reason_flips.items():
                Database.set_reason(c, n, r)
    if not args.json:
        report(outcome)
    else:
        show_script_output(outcome, to_stderr=True)  # stdout is the JSON plan
    prune_cache(s)
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
            candidate = s.solver(repositories=False).solve(
                Request(remove=e.failed_installs, remove_dependents=True,
                        held=sorted(s.db.holds()),
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
    Transaction(s.cfg.root, s.db, changes, run_scripts=False,
                command=f"{command_line(s.args)} (failed post-install: removed again)").run()
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
        stored = repos_mod.stored(s.cfg)
        rows: list[dict[str, Any]] = []
        for r in stored:
            row: dict[str, Any] = {"name": r.repo.name, "url": r.repo.url, "packages": None,
                                   "unchanged": False, "error": None}
            rows.append(row)
            try:
                n = repos_mod.update(s.cfg, r, ring, s.fetcher)
                row.update(packages=n, unchanged=n is None)
                if not args.json:
                    say(f"{r.repo.url}: " + ("unchanged" if n is None else f"{n} packages"))
            except MixError as e:
                failures.append(e)
                row["error"] = e.message
                kept = " (kept the previous index)" if r.exists() else ""
                print(f"mix: error: {r.repo.url}: {e.message}{kept}", file=sys.stderr)
        if args.json:
            emit_json({"repositories": rows})
        if failures:
            raise type(failures[0])(f"{len(failures)} of {len(s.cfg.repos)} repositories "
                                    "could not be updated", failures[0].hint)
        s.fetched = stored  # just fetched: the solver below must not fetch --repo again
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

    if args.reinstall:
        with Session(args, write=not args.simulate) as s:
            return carry_out(s, reinstall_changes(s, args.packages), {}, [])
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
        if len(local) < len(specs):
            s.repos()  # names to look up: without repositories, a usage error (exit 2)
        solver = s.solver(repositories=bool(s.cfg.repos))
        if local:
            solver.add_repo("@local", local, priority=1000)
        refuse_held(s, [name for name, spec in ((parse_spec_name(x), x) for x in specs)
                        if name and not _installed_meets(s, name, spec)])
        plan = solver.solve(Request(install=specs, held=sorted(s.db.holds())))
        return execute(s, plan, [a for a in args.packages])


@command("remove")
def cmd_remove(args: argparse.Namespace) -> int:
    from mix.solver import Request

    with Session(args, write=not args.simulate) as s:
        for name in args.packages:
            if s.db.package(name) is None:
                raise NotFoundError(f"{name} is not installed", "see 'mix list --installed'")
        solver = s.solver(repositories=bool(s.cfg.repos))
        refuse_held(s, args.packages)
        plan = solver.solve(Request(remove=args.packages, remove_dependents=args.cascade,
                                    held=sorted(s.db.holds())))
        return execute(s, plan, [])


@command("upgrade")
def cmd_upgrade(args: argparse.Namespace) -> int:
    from mix.solver import Request

    restart = False
    with Session(args, write=not args.simulate) as s:
        for name in args.packages:
            if s.db.package(name) is None:
                raise NotFoundError(f"{name} is not installed", f"use 'mix install {name}'")
        solver = s.solver()
        refuse_held(s, args.packages)
        held = sorted(s.db.holds())
        req = Request(upgrade=args.packages, held=held) if args.packages \
            else Request(upgrade_all=True, held=held)
        if held and not args.packages and not args.json:
            say(f"held, not upgraded: {', '.join(held)}")
        plan = solver.solve(req)
        first = self_first(s, plan, held)
        if first is None:
            return execute(s, plan, [])
        if not args.json:
            say("first mix and what it runs on, in a transaction of their own: "
                + ", ".join(c.name for c in first))
        carry_out(s, first, {}, [])
        restart = True
    if restart:
        return continue_upgrade(args)
    return 0


def self_first(s: Session, plan: Any, held: list[str]) -> list[Change] | None:
    """When an upgrade changes mix itself or what it runs on (python3, glibc, libsqlite3,
    ...) along with other packages, those go first in a transaction of their own, and mix
    starts again, new, for the rest. None: nothing to do first."""
    from mix.selfupgrade import runs_on
    from mix.solver import Request

    args = s.args
    if args.simulate or getattr(args, "download_only", False) \
            or os.environ.get("MIX_SELF_UPGRADED"):
        return None
    changes = plan_changes(plan)
    core = runs_on(s.cfg.root, s.db)
    own = sorted({c.name for c in changes if c.name in core and c.kind != "remove"})
    if not own or len(own) == len(changes):
        return None
    first = plan_changes(s.solver().solve(Request(upgrade=own, held=held)))
    return first if first and len(first) < len(changes) else None


def continue_upgrade(args: argparse.Namespace) -> int:
    """The rest of the upgrade, by the mix just installed: the same command line,
    executed anew (the new interpreter, the new modules). Called as a library, mix
    goes on in this process instead."""
    from mix import failpoint
    from mix.selfupgrade import restart

    failpoint.checkpoint("restarting")
    if not getattr(args, "from_cli", False):
        os.environ["MIX_SELF_UPGRADED"] = "1"
        try:
            return cmd_upgrade(args)
        finally:
            del os.environ["MIX_SELF_UPGRADED"]
    restart({"MIX_SELF_UPGRADED": "1"})


# --- reinstalling --------------------------------------------------------------------------
def reinstall_changes(s: Session, names: list[str]) -> list[Change]:
    """Each installed package again, at its installed version, from the repository of
    highest priority that offers that version."""
    from mix.transaction import Change

    wanted: dict[str, dict[str, Any]] = {}
    for name in names:
        inst = s.db.package(name)
        if inst is None:
            raise NotFoundError(f"{name} is not installed", f"use 'mix install {name}'")
        wanted[name] = inst
    found: dict[str, tuple[int, dict[str, Any]]] = {}
    for r in s.repos():
        for e in r.entries():
            inst = wanted.get(e["name"])
            if inst is None or (e["version"], e.get("arch")) != (inst["version"], inst["arch"]):
                continue
            if e["name"] not in found or r.repo.priority > found[e["name"]][0]:
                found[e["name"]] = (r.repo.priority, e)
    missing = [n for n in names if n not in found]
    if missing:
        raise NotFoundError("cannot reinstall " + ", ".join(
            f"{n} {wanted[n]['version']}" for n in missing) + ": no repository offers "
            "that version any more", "upgrade instead: mix upgrade " + " ".join(missing))
    return [Change("reinstall", n, new=found[n][1], old=wanted[n], reason=wanted[n]["reason"],
                   repo=found[n][1].get("repo", "")) for n in names]


@command("fix")
def cmd_fix(args: argparse.Namespace) -> int:
    """Complete or undo an interrupted transaction (as every writer does), then reinstall
    the packages whose files differ from the database."""
    from mix.queries import problem_text, verify_files

    with Session(args, write=not args.simulate) as s:
        names = args.packages or [p["name"] for p in s.db.packages()]
        files: list[dict[str, Any]] = []
        for n in names:
            if s.db.package(n) is None:
                raise NotFoundError(f"{n} is not installed", "see 'mix list --installed'")
            files.extend(s.db.files(n))
        problems, _modified = verify_files(s.cfg.root, files)
        broken = sorted({p["package"] for p in problems})
        if not broken:
            if args.json:
                emit_json({"plan": []})
            else:
                say(f"{len(names)} packages, {len(files)} entries: nothing to fix")
            return 0
        if not args.json:
            for p in problems:
                say(problem_text(p))
        return carry_out(s, reinstall_changes(s, broken), {}, [])


# --- the download cache --------------------------------------------------------------------
def cache_contents(s: Session, keep_installed: bool) -> list[Path]:
    """What `cache clean` removes: partial downloads, and the package files that are not
    an installed package's (every package file without keep_installed)."""
    try:
        files = sorted(p for p in s.cfg.cache_dir.iterdir() if p.is_file() or p.is_symlink())
    except FileNotFoundError:
        return []
    partial = [p for p in files if p.name.startswith(".") and ".part" in p.name]
    packages = [p for p in files if p.name.endswith(".mixpkg") and not p.name.startswith(".")]
    if keep_installed and packages:
        installed = {(p["name"], p["version"]) for p in s.db.packages()}
        keep = set()
        try:
            repos = s.repos() if s.cfg.repos else []
        except MixError:
            repos = []  # without its indexes nothing can be told installed: keep all
            keep = {p.name for p in packages}
        for r in repos:
            keep |= {e["filename"] for e in r.entries() if (e["name"], e["version"]) in installed}
        packages = [p for p in packages if p.name not in keep]
    return partial + packages


def prune_cache(s: Session) -> None:
    """After a transaction the cache keeps only installed packages' files: what an
    upgrade or removal superseded goes."""
    try:
        for p in cache_contents(s, keep_installed=True):
            if not p.name.startswith("."):  # a partial download stays for resuming
                p.unlink(missing_ok=True)
    except (OSError, MixError) as e:
        warn(f"cannot tidy the download cache: {e}")


@command("cache")
def cmd_cache(args: argparse.Namespace) -> int:
    with Session(args, write=not args.simulate) as s:
        doomed = cache_contents(s, keep_installed=not args.all)
        freed = 0
        for p in doomed:
            freed += p.lstat().st_size
            if args.simulate:
                if not args.json:
                    say(f"would remove {p}")
            else:
                p.unlink(missing_ok=True)
        verb = "would free" if args.simulate else "freed"
        if args.json:
            emit_json({"removed": [str(p) for p in doomed], "bytes": freed,
                       "simulate": bool(args.simulate)})
        else:
            say(f"{s.cfg.cache_dir}: {len(doomed)} files, {verb} {human_size(freed)}")
    return 0


# --- holds and marks -----------------------------------------------------------------------
def parse_spec_name(spec: str) -> str:
    """The package name of an install spec (NAME, NAME>=1.0, NAME=1.0-r1)."""
    import re

    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9+._-]*)", spec)
    return m.group(1) if m else ""


def _installed_meets(s: Session, name: str, spec: str) -> bool:
    """Whether the installed package name already is what spec asks for (so that
    installing it changes nothing, held or not)."""
    from mix.version import InvalidDependency, parse_dependency

    inst = s.db.package(name)
    if inst is None:
        return False
    try:
        return parse_dependency(spec).matches(name, inst["version"])
    except InvalidDependency:
        return False


def refuse_held(s: Session, names: list[str]) -> None:
    from mix.errors import ResolveError

    held = sorted(set(names) & s.db.holds())
    if held:
        raise ResolveError(f"{', '.join(held)} {'is' if len(held) == 1 else 'are'} held: "
                           "mix changes held packages in no way",
                           f"release with 'mix unhold {' '.join(held)}' first")


def _installed_names(s: Session, names: list[str]) -> None:
    for name in names:
        if s.db.package(name) is None:
            raise NotFoundError(f"{name} is not installed", "see 'mix list --installed'")


@command("hold")
def cmd_hold(args: argparse.Namespace) -> int:
    with Session(args, write=True) as s:
        _installed_names(s, args.packages)
        with s.db.transaction() as c:
            for name in args.packages:
                Database.set_hold(c, name, True)
    if args.json:
        emit_json({"held": args.packages})
    else:
        say(f"held: {', '.join(args.packages)} (upgrade leaves them alone; "
            "install and remove refuse them)")
    return 0


@command("unhold")
def cmd_unhold(args: argparse.Namespace) -> int:
    with Session(args, write=True) as s:
        held = s.db.holds()
        for name in args.packages:
            if name not in held:
                raise NotFoundError(f"{name} is not held", "see 'mix list --held'")
        with s.db.transaction() as c:
            for name in args.packages:
                Database.set_hold(c, name, False)
    if args.json:
        emit_json({"released": args.packages})
    else:
        say(f"released: {', '.join(args.packages)}")
    return 0


@command("mark")
def cmd_mark(args: argparse.Namespace) -> int:
    """Set why packages are installed: explicit ones stay, dependencies go once nothing
    needs them (the next remove or upgrade takes them away)."""
    with Session(args, write=True) as s:
        _installed_names(s, args.packages)
        with s.db.transaction() as c:
            for name in args.packages:
                Database.set_reason(c, name, args.reason)
    if args.json:
        emit_json({"marked": args.packages, "reason": args.reason})
    else:
        say(f"marked {args.reason}: {', '.join(args.packages)}")
    return 0


@command("history")
def cmd_history(args: argparse.Namespace) -> int:
    import time

    with Session(args, write=False) as s:
        entries = s.db.history()
    if args.json:
        emit_json(entries)
        return 0
    for h in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(h["time"]))
        say(f"{h['id']:4}  {when} UTC  {h['command']}")
        for ch in h["changes"]:
            old = f"{ch['old_version']} -> " if ch.get("old_version") else ""
            say(f"        {ch['action']:9} {ch['name']} {old}{ch['version']}")
    return 0
