"""One root opened for a command: configuration, database, lock, repositories, solver;
plus the output helpers shared by the command modules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from mix.config import Config, load
from mix.database import Database
from mix.errors import MixError, NotFoundError, UsageError
from mix.lock import RootLock

# Modules for downloading, verifying and transactions are imported where they are needed,
# so that read-only commands (list, files, owner, info, search) start fast.
if TYPE_CHECKING:
    from mix import repos as repos_mod
    from mix.fetch import Fetcher
    from mix.solver import Solver


def config(args: argparse.Namespace) -> Config:
    return load(args.root, args.repo, args.keys_dir, args.timeout, not args.no_scripts)


def emit_json(value: object) -> None:
    """Every --json output: one document on stdout, indented by one space, keys sorted."""
    import json

    global json_emitted
    print(json.dumps(value, indent=1, sort_keys=True), flush=True)
    json_emitted = True


# Whether this command printed its JSON document (then an error adds no second one).
json_emitted = False


def require_mixboot(*modules: str) -> Any:
    """The mixboot modules the boot-media commands (viso, sdisk, vram) run on; the
    last one is returned. Missing (mix without mixos-boot, or a mixos-boot older
    than the command) is a package not found: exit 9, naming it."""
    import importlib

    try:
        return [importlib.import_module(f"mixboot.{m}") for m in modules][-1]
    except ImportError:
        names = ", ".join(f"mixboot.{m}" for m in modules)
        raise NotFoundError(f"this command needs MixOS's boot library ({names}), which the "
                            "package mixos-boot installs",
                            "run 'mix install mixos-boot' (or 'mix upgrade mixos-boot')") \
            from None


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


def _created_text(r: repos_mod.StoredRepo) -> str:
    from mix.index import utc_date

    created = r.created()
    return utc_date(created) if created is not None else "at an unknown time"


class Session:
    """A root opened for a command: config, database, and (for changes) the lock."""

    def __init__(self, args: argparse.Namespace, write: bool) -> None:
        self.args = args
        self.cfg = config(args)
        self.write = write
        # Only a command that changes the root takes the lock; readers never wait for it.
        self.lock = RootLock(self.cfg.state_dir, getattr(args, "wait", None)) if write else None
        self._fetcher: Fetcher | None = None
        # The repositories once fetched for this command (see repos()).
        self.fetched: list[repos_mod.StoredRepo] | None = None

    def __enter__(self) -> Self:
        if self.lock is not None:
            self.lock.__enter__()
        try:
            self.db = Database(self.cfg.db_path, readonly=not self.write)
            journal = self.db.journal()
            if journal is None:
                pass
            elif self.write:
                from mix.transaction import recover

                done = recover(self.cfg.root, self.db)
                if done:
                    warn(done)
                if journal[0] == "committed":
                    self._restart_if_replaced(journal[1])
            elif RootLock.holder(self.cfg.state_dir) is None:
                # A reader shows the last committed state and leaves the journal to the
                # next writer; while a writer is at work, that is simply how it should be.
                warn("a transaction on this root was interrupted; the next mix command that "
                     "changes it ('mix fix', for one) completes or undoes it, and until then "
                     "files on disk may differ from what is shown")
        except BaseException:
            if self.lock is not None:
                self.lock.__exit__(None, None, None)
            raise
        return self

    def _restart_if_replaced(self, journal: dict[str, Any]) -> None:
        """The transaction just completed replaced mix or what it runs on: this process
        runs the old code and would import new modules; mix starts anew (from the
        command line; called as a library it goes on)."""
        if not getattr(self.args, "from_cli", False):
            return
        from mix.selfupgrade import replaced_runtime, restart

        replaced = replaced_runtime(self.cfg.root, self.db, journal)
        if replaced:
            warn(f"it replaced mix or what it runs on ({', '.join(replaced)}): starting the "
                 "new mix")
            self.__exit__()
            restart()

    @property
    def fetcher(self) -> Fetcher:
        if self._fetcher is None:
            from mix.fetch import Fetcher

            self._fetcher = Fetcher(self.cfg.timeout)
        return self._fetcher

    def __exit__(self, *exc: object) -> None:
        self.db.close()
        if self.lock is not None:
            self.lock.__exit__(None, None, None)

    # --- repositories ------------------------------------------------------------------
    def repos(self) -> list[repos_mod.StoredRepo]:
        """Stored repositories; fetched first when never fetched or given by --repo.

        At most once per command: a command may ask several times (search's fallback to
        the solver, a local package's trust check before solving), and an index given by
        --repo is downloaded and verified on every fetch.
        """
        if self.fetched is not None:
            return self.fetched
        from mix import repos as repos_mod

        stored = repos_mod.stored(self.cfg)
        need = [r for r in stored if self.args.repo or not r.exists()]
        if need:
            ring = repos_mod.keyring(self.cfg)
            try:
                self.cfg.repos_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot store repository indexes in {self.cfg.repos_dir}: "
                                 f"{e.strerror}", "run 'mix update' as root") from None
            for r in need:
                if self.write or not r.exists() or r.expired():
                    repos_mod.update(self.cfg, r, ring, self.fetcher)
                    continue
                # A read-only command with --repo holds a valid copy: one attempt (not the
                # retries a change deserves), then that copy, so that a query does not
                # wait minutes for a stalled server.
                from mix.errors import FetchError
                from mix.fetch import Fetcher

                try:
                    repos_mod.update(self.cfg, r, ring, Fetcher(self.cfg.timeout, retries=0))
                except FetchError as e:
                    warn(f"{e.message}; answering from the index of {r.repo.url} stored "
                         f"before (created {_created_text(r)})")
        for r in stored:
            if r.expired():
                warn(f"the stored index of {r.repo.url} has expired; 'mix update' fetches a "
                     "fresh one (mix installs nothing from an expired index)")
        self.fetched = stored
        return stored

    def refuse_expired(self, entries: list[dict[str, Any]]) -> None:
        """Packages are installed only from an index that is still valid: an expired one
        may be a replay that keeps security updates away (exit 4)."""
        by_name = {r.repo.name: r for r in self.fetched or ()}
        for e in entries:
            r = by_name.get(e.get("repo", ""))
            if r is not None and r.expired():
                from mix.errors import TrustError
                from mix.index import utc_date

                raise TrustError(f"{e['name']} {e['version']} comes from the index of "
                                 f"{r.repo.url}, which expired on {utc_date(r.valid_until() or 0)}",
                                 "run 'mix update' to fetch a fresh index (the repository "
                                 "must be re-signed if it is stale)")

    def solver(self, installed: bool = True, repositories: bool = True) -> Solver:
        """A solver over the stored repositories (each from its .solv cache when fresh) and
        the installed packages; either left out when its flag is False."""
        from mix.solver import Solver

        s = Solver(arch="x86_64")  # the one architecture MixOS is built for
        for r in self.repos() if repositories else ():
            s.add_repo(r.repo.name, r.entries, r.repo.priority, cache=r.cache_path,
                       index=r.index_path)
        if installed:
            s.set_installed(self.db.packages())
        return s

    def download_size(self, entry: dict[str, Any]) -> int:
        """Bytes package_file(entry) will download into the cache (0: read in place or
        already there)."""
        if entry.get("_local"):
            return 0
        repo = next((r for r in self.cfg.repos if r.name == entry.get("repo")), None)
        if repo is None or all(u.startswith("file://") for u in repo.urls):
            return 0
        try:
            if (self.cfg.cache_dir / entry["filename"]).stat().st_size == entry.get("size"):
                return 0
        except OSError:
            pass
        return int(entry.get("size") or 0)

    def package_file(self, entry: dict[str, Any]) -> Path:
        """The local path of a planned package: the repo file itself, or a verified download."""
        if entry.get("_local"):
            return Path(entry["_local"])
        repo = next((r for r in self.cfg.repos if r.name == entry.get("repo")), None)
        if repo is None:
            raise MixError(f"{entry['name']}: its repository {entry.get('repo')!r} is no "
                           "longer configured", "run 'mix update'")
        from mix.errors import FetchError, TrustError
        from mix.package import sha256_file

        dest = self.cfg.cache_dir / entry["filename"]
        failures: list[tuple[str, MixError]] = []
        for base in repo.urls:  # the repository's URL, then its mirrors
            url = repo.file_url(entry["filename"], base)
            if url.startswith("file://"):
                from urllib.parse import unquote, urlsplit

                path = Path(unquote(urlsplit(url).path))
                if path.exists() or len(repo.urls) == 1:
                    return path  # read in place (and checked against the index then)
                failures.append((base, FetchError(f"{path} does not exist")))
                continue
            if dest.exists() and sha256_file(dest) == entry["sha256"]:
                return dest
            try:
                return self.fetcher.fetch_file(url, dest, entry["sha256"], entry.get("size"))
            except (FetchError, TrustError) as e:
                if len(repo.urls) == 1:
                    raise
                failures.append((base, e))
                warn(f"{base}: {e.message}"
                     + ("; trying the next mirror" if base != repo.urls[-1] else ""))
        trust: list[MixError] = [e for _b, e in failures if isinstance(e, TrustError)]
        first = (trust or [e for _b, e in failures])[0]
        raise type(first)(f"{entry['filename']}: every mirror of {repo.url} failed:\n  "
                          + "\n  ".join(f"{b}: {e.message}" for b, e in failures), first.hint)
