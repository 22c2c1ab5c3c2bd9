"""Where mix finds things for one root: repositories, trusted keys, database, caches.

ROOT/etc/mix/repositories lists one repository a line:

    URL [MIRROR-URL...] [priority=N] [name=NAME]   # file:///srv/repo, https://a/mixos https://b/mixos

Mirrors serve the same signed files; a mirror that fails (unreachable, a file missing,
a stale or bad index, a corrupt package) is skipped for the next one.

Higher priority wins when several repositories offer a package (default 0). The
command line (--repo, --keys-dir) overrides the files.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from mix.errors import MixError, UsageError

SCHEMES = ("file://", "http://", "https://")


@dataclass(frozen=True)
class Repository:
    name: str
    url: str
    priority: int = 0
    mirrors: tuple[str, ...] = ()
    label: str = ""  # what the database records as the package's repository (default: name)

    @property
    def urls(self) -> tuple[str, ...]:
        """The URL, then its mirrors: the order in which they are tried."""
        return (self.url, *self.mirrors)

    def file_url(self, filename: str, base: str | None = None) -> str:
        from urllib.parse import quote

        return (base or self.url).rstrip("/") + "/" + quote(filename, safe="")


@dataclass(frozen=True)
class Config:
    root: Path
    repos: tuple[Repository, ...]
    keys_dir: Path
    timeout: float = 30.0
    run_scripts: bool = True

    def inside(self, logical: str) -> Path:
        """Where mix's own state at the logical path (e.g. /var/lib/mix) is on disk: resolved
        inside the root as package paths are (symlinks followed, absolute targets
        re-rooted), refused if a symlink on the way leads out of the root."""
        from mix.errors import TransactionError
        from mix.rootpath import RootResolver

        try:
            return Path(str(self.root).rstrip("/") + RootResolver(self.root).resolve_dir(
                logical, f"--root {self.root}: mix's state directory {logical}"))
        except TransactionError as e:
            raise UsageError(e.message, f"mix keeps its state ({logical}) inside the root; "
                             "make that path a directory of the root (not a symlink "
                             "leading out of it)") from None

    @cached_property
    def state_dir(self) -> Path:
        return self.inside("/var/lib/mix")

    @property
    def db_path(self) -> Path:
        return self.state_dir / "installed.db"

    @property
    def repos_dir(self) -> Path:
        return self.state_dir / "repos"

    @property
    def script_dir(self) -> Path:
        """Where package scripts are written before they run (/var/lib/mix/tmp in the root)."""
        return self.state_dir / "tmp"

    @cached_property
    def cache_dir(self) -> Path:
        return self.inside("/var/cache/mix/packages")


def repo_name(url: str) -> str:
    """A stable directory name for a repository URL."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", url.split("://", 1)[-1]).strip("_")[-48:]
    return f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def repo_label(url: str) -> str:
    """How the database names a repository given with --repo: a file:// one by its
    directory's name (the rest of the path is the build host's business, and would make
    two builds of one image differ), any other by its URL."""
    if url.startswith("file://"):
        return "file:" + url.rstrip("/").rsplit("/", 1)[-1]
    return url.rstrip("/")


def check_url(url: str, where: str) -> str:
    if not url.startswith(SCHEMES):
        raise UsageError(f"{where}: repository URL {url!r} must start with file://, http:// "
                         "or https://")
    if url.startswith("file://") and not url.startswith("file:///"):
        raise UsageError(f"{where}: {url!r}: a file:// URL needs an absolute path "
                         "(file:///path/to/repo)")
    return url.rstrip("/")


def parse_repositories(text: str, where: str) -> list[Repository]:
    repos = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        url, *rest = line.split()
        loc = f"{where}:{lineno}"
        url = check_url(url, loc)
        mirrors = []
        while rest and "://" in rest[0]:
            mirrors.append(check_url(rest.pop(0), loc))
        opts = rest
        priority, name = 0, repo_name(url)
        for opt in opts:
            key, _, value = opt.partition("=")
            if key == "priority" and re.fullmatch(r"-?[0-9]+", value):
                priority = int(value)
            elif key == "name" and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
                name = value
            else:
                raise UsageError(f"{loc}: unknown option {opt!r}",
                                 "options are priority=N and name=NAME")
        repos.append(Repository(name, url, priority, tuple(mirrors)))
    names = [r.name for r in repos]
    if len(set(names)) != len(names):
        raise UsageError(f"{where}: two repositories share a name")
    return repos


def load(root: str | Path = "/", repo_urls: list[str] | None = None,
         keys_dir: str | Path | None = None, timeout: float | None = None,
         run_scripts: bool = True) -> Config:
    root = Path(root).absolute()
    if not root.is_dir():
        raise UsageError(f"--root {root}: not a directory", "create it first (mkdir -p)")
    if repo_urls:
        repos = [Repository(repo_name(u), check_url(u, "--repo"), 0, label=repo_label(u))
                 for u in repo_urls]
    else:
        path = root / "etc/mix/repositories"
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        except OSError as e:
            raise MixError(f"cannot read {path}: {e.strerror}") from None
        repos = parse_repositories(text, str(path))
    keys = Path(keys_dir).absolute() if keys_dir else root / "etc/mix/keys"
    return Config(root, tuple(repos), keys, 30.0 if timeout is None else timeout, run_scripts)
