"""Repository indexes on the client: download + verify (`mix update`), store, load.

A verified index is stored under ROOT/var/lib/mix/repos/NAME/ (index.json + .sig as
received); the solver keeps its .solv cache beside it. A new index replaces the stored
one only after its signature, expiry and creation time (no rollback) check out.
"""

from __future__ import annotations

import json
import posixpath
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mix.config import Config, Repository
from mix.errors import MixError, TrustError, UsageError
from mix.fetch import Fetcher, FetchError, NotServedError
from mix.index import (
    FILES_NAME,
    INDEX_NAME,
    SIG_NAME,
    atomic_write,
    atomic_write_all,
    verify_index,
)
from mix.keys import PublicKey, load_keyring

_CREATED_HEAD = re.compile(rb'\s*{\s*"created":\s*([0-9]+)\s*,')
_VALID_UNTIL_TAIL = re.compile(rb'"valid_until":\s*([0-9]+)\s*}\s*$')


@dataclass(frozen=True)
class StoredRepo:
    repo: Repository
    dir: Path

    @property
    def index_path(self) -> Path:
        return self.dir / INDEX_NAME

    @property
    def cache_path(self) -> Path:
        return self.dir / "index.solv"

    def exists(self) -> bool:
        return self.index_path.exists()

    def created(self) -> int | None:
        try:
            with open(self.index_path, "rb") as f:
                head = f.read(64)
            m = _CREATED_HEAD.match(head)  # keys are sorted: "created" comes first
            if m:
                return int(m.group(1))
            return int(json.loads(self.index_path.read_bytes())["created"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def valid_until(self) -> int | None:
        try:
            with open(self.index_path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 200))
                tail = f.read()
        except OSError:
            return None
        m = _VALID_UNTIL_TAIL.search(tail)  # keys are sorted: "valid_until" comes last
        return int(m.group(1)) if m else None

    def expired(self, now: float | None = None) -> bool:
        until = self.valid_until()
        return until is not None and until < (time.time() if now is None else now)

    def file_lists(self, fetcher: Fetcher) -> dict[str, list[str]] | None:
        """The packages' file lists (package file name -> paths), if the repository
        publishes them (`mix repo index --files`): fetched on first use, checked against
        the sha256 the signed index gives, kept beside the index. None if it does not."""
        try:
            ref = json.loads(self.index_path.read_bytes()).get("files")
        except (OSError, ValueError) as e:
            raise MixError(f"cannot read the stored index of {self.repo.url}: {e}",
                           "run 'mix update'") from None
        if not isinstance(ref, dict) or not isinstance(ref.get("sha256"), str) \
                or not isinstance(ref.get("size"), int) or ref.get("name") != FILES_NAME:
            return None
        import gzip
        import hashlib

        path = self.dir / FILES_NAME
        try:
            packed = path.read_bytes()
        except OSError:
            packed = b""
        if hashlib.sha256(packed).hexdigest() != ref["sha256"]:
            failures: list[MixError] = []
            for base in self.repo.urls:  # the URL, then its mirrors
                try:
                    packed = fetcher.fetch_bytes(f"{base}/{FILES_NAME}", max_size=ref["size"])
                except FetchError as e:
                    failures.append(e)
                    continue
                got = hashlib.sha256(packed).hexdigest()
                if got == ref["sha256"]:
                    break
                failures.append(TrustError(
                    f"{base}/{FILES_NAME}: sha256 {got} does not match the signed index "
                    f"({ref['sha256']})", "run 'mix update'; if it persists the mirror is "
                    "corrupt"))
            else:
                trust = [e for e in failures if isinstance(e, TrustError)]
                first = (trust or failures)[0]
                raise type(first)("; ".join(e.message for e in failures), first.hint)
            atomic_write(path, packed)
        try:
            lists = json.loads(gzip.decompress(packed))["files"]
        except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
            raise TrustError(f"{self.repo.url}/{FILES_NAME} is signed but unreadable: {e}") \
                from None
        return lists if isinstance(lists, dict) else None

    def entries(self) -> list[dict[str, Any]]:
        try:
            doc = json.loads(self.index_path.read_bytes())
        except (OSError, ValueError) as e:
            raise MixError(f"cannot read the stored index of {self.repo.url}: {e}",
                           "run 'mix update'") from None
        packages: list[dict[str, Any]] = doc["packages"]
        for p in packages:
            p["repo"] = self.repo.name
        return packages


def stored(cfg: Config) -> list[StoredRepo]:
    if not cfg.repos:
        raise UsageError("no repositories configured",
                         f"add a URL to {cfg.root / 'etc/mix/repositories'} or pass --repo URL")
    return [StoredRepo(r, cfg.repos_dir / r.name) for r in cfg.repos]


def keyring(cfg: Config) -> dict[str, PublicKey]:
    ring = load_keyring(cfg.keys_dir)
    if not ring:
        raise TrustError(f"no trusted keys in {cfg.keys_dir}",
                         "install the repository's public key (NAME.pub) there, or pass "
                         "--keys-dir DIR")
    return ring


def _unchanged(repo: StoredRepo, data: bytes, sig: bytes) -> bool:
    """The repository serves exactly the index already held (verified when it was stored)
    and that index has not expired: nothing to verify or store again. (A mirror that keeps
    serving one index until it expires is still caught by the expiry check.)"""
    try:
        if repo.index_path.read_bytes() != data or (repo.dir / SIG_NAME).read_bytes() != sig:
            return False
    except OSError:
        return False
    m = _VALID_UNTIL_TAIL.search(data[-200:])
    return m is not None and int(m.group(1)) >= time.time()


def url_key(url: str) -> str:
    """The repository's identity for rollback protection: its URL normalised, so that
    every way of writing it (configured with any name, or given with --repo; a trailing
    slash, '.', '//', the host's case, a default port) is one repository."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    path = posixpath.normpath(unquote(parts.path) or "/")
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    host = (parts.hostname or "").lower()
    port = parts.port
    if port is not None and (parts.scheme, port) not in (("http", 80), ("https", 443)):
        host += f":{port}"
    return f"{parts.scheme.lower()}://{host}{path}"


def _seen_path(cfg: Config) -> Path:
    return cfg.repos_dir / "newest-seen.json"


def newest_seen(cfg: Config, url: str) -> int | None:
    """The creation time of the newest index ever accepted from url on this root."""
    try:
        seen = json.loads(_seen_path(cfg).read_bytes())
        value = seen.get(url_key(url))
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _record_seen(cfg: Config, urls: tuple[str, ...], created: int) -> None:
    path = _seen_path(cfg)
    try:
        seen = json.loads(path.read_bytes())
        if not isinstance(seen, dict):
            seen = {}
    except (OSError, ValueError):
        seen = {}
    changed = False
    for key in {url_key(u) for u in urls}:
        if not (isinstance(seen.get(key), int) and seen[key] >= created):
            seen[key] = created
            changed = True
    if changed:
        atomic_write(path, (json.dumps(seen, indent=1, sort_keys=True) + "\n").encode())


def update(cfg: Config, repo: StoredRepo, ring: dict[str, PublicKey], fetcher: Fetcher
           ) -> int | None:
    """Fetch, verify and store one repository's index; return its package count (None if
    it is unchanged). Rollback protection compares with the newest index accepted from
    this repository under any name or URL (its mirrors included), not only with the copy
    stored under this name. A mirror that fails is skipped for the next one."""
    failures: list[tuple[str, MixError]] = []
    for base in repo.repo.urls:
        try:
            return _update_from(cfg, repo, ring, fetcher, base)
        except (FetchError, TrustError) as e:
            if len(repo.repo.urls) == 1:
                raise
            failures.append((base, e))
            print(f"mix: warning: {base}: {e.message}; trying the next mirror"
                  if base != repo.repo.urls[-1] else f"mix: warning: {base}: {e.message}",
                  file=sys.stderr, flush=True)
    trust: list[MixError] = [e for _b, e in failures if isinstance(e, TrustError)]
    first = (trust or [e for _b, e in failures])[0]
    raise type(first)(f"every mirror of {repo.repo.url} failed:\n  " + "\n  ".join(
        f"{b}: {e.message}" for b, e in failures), first.hint)


def _update_from(cfg: Config, repo: StoredRepo, ring: dict[str, PublicKey], fetcher: Fetcher,
                 base: str) -> int | None:
    data = fetcher.fetch_bytes(f"{base}/{INDEX_NAME}")
    try:
        sig = fetcher.fetch_bytes(f"{base}/{SIG_NAME}", max_size=1 << 16)
    except NotServedError:
        # the repository serves its index but no signature: a trust failure (exit 4)
        raise TrustError(f"index from {base} is not signed: {base}/{SIG_NAME} does not "
                         "exist", "the repository must serve index.json.sig made by "
                         "`mix repo index`") from None
    if _unchanged(repo, data, sig):
        return None
    held = [t for t in (repo.created(), *(newest_seen(cfg, u) for u in repo.repo.urls))
            if t is not None]
    doc = verify_index(data, sig, ring, base, held_created=max(held) if held else None,
                       keys_dir=cfg.keys_dir)
    repo.dir.mkdir(parents=True, exist_ok=True)
    # both written before either replaces the stored pair (a full disk changes neither)
    atomic_write_all([(repo.dir / SIG_NAME, sig), (repo.index_path, data)])
    repo.cache_path.unlink(missing_ok=True)
    _record_seen(cfg, repo.repo.urls, doc["created"])
    return len(doc["packages"])
