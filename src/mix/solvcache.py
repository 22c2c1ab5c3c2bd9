"""The ``.solv`` cache of a repository: what it stores, how it is written and read,
when it is fresh.

``mix update`` (or the first command after it) writes each repository's package
entries, dependencies and favour hints (see ``Solver._favor_for``) as a libsolv
``.solv`` file beside the stored index; later commands load it instead of parsing
the JSON index when it is at least as new as that index. A cache of another
``CACHE_FORMAT`` is ignored and rebuilt.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import solv

if TYPE_CHECKING:  # only for annotations: `mix search` imports no more than it needs
    from mix.solvables import Entry

__all__ = [
    "CACHE_FORMAT",
    "EntryAttributes",
    "Favor",
    "add_meta",
    "cache_is_fresh",
    "load",
    "mark_format",
    "read_solv",
    "write_solv",
]

# Bumped whenever what the .solv cache stores changes; older caches are rebuilt.
CACHE_FORMAT = "mix-solv-7"  # 7: provided names in the search index

# In the cache, entry fields live in libsolv's own attributes, so that loading
# stays as small as the dependency data: descriptions and checksums are stored
# "vertically" and paged in only when read. Fields mix does not know travel as
# JSON under "mix:extra"; "mix:inrepo" marks an entry whose "repo" field was
# the repository's own name.
_STR_ATTRS = {
    "description": solv.SOLVABLE_DESCRIPTION,
    "license": solv.SOLVABLE_LICENSE,
    "url": solv.SOLVABLE_URL,
    "filename": solv.SOLVABLE_MEDIAFILE,
}
_NUM_ATTRS = {
    "size": solv.SOLVABLE_DOWNLOADSIZE,
    "installed_size": solv.SOLVABLE_INSTALLSIZE,
    "build_date": solv.SOLVABLE_BUILDTIME,
}
_DEP_ATTRS = {
    "dependencies": solv.SOLVABLE_REQUIRES,
    "provides": solv.SOLVABLE_PROVIDES,
    "conflicts": solv.SOLVABLE_CONFLICTS,
    "replaces": solv.SOLVABLE_OBSOLETES,
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_KEY_EXTRA = "mix:extra"
_ABSENT = (1 << 64) - 1  # lookup_num's "not found"; stored numbers stay below 1 << 63
_KEY_INREPO = "mix:inrepo"
_KEY_FILENAME = "mix:stdfilename"
_KEY_FORMAT = "mix:cacheformat"
_KEY_COUNT = "mix:count"
_KEY_FAVORED = "mix:favored"

# Favour levels of one repository: (favoured, favoured more, disfavoured) solvable ids.
Favor = tuple[list[int], list[int], list[int]]


def cache_is_fresh(cache: Path, index: Path | None) -> bool:
    """Whether ``cache`` exists and is at least as new as the ``index`` it was made from."""
    try:
        cache_mtime = cache.stat().st_mtime_ns
    except FileNotFoundError:
        return False
    if index is None:
        return True
    try:
        return cache_mtime >= index.stat().st_mtime_ns
    except FileNotFoundError:
        return True


def write_solv(repo: solv.Repo, path: Path) -> None:
    """Write ``repo`` as a .solv file atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # only when writing: keeps `mix search` imports small

    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        f = solv.xfopen(tmp, "w")
        if f is None:
            raise OSError(f"cannot open {tmp} for writing")
        repo.write(f)
        f.close()
        os.chmod(tmp, 0o644)  # readers (mix search as a user) need it, like the index
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_solv(repo: solv.Repo, path: Path) -> bool:
    """Load the .solv file ``path`` into ``repo`` if it is of this ``CACHE_FORMAT``.

    False (and ``repo`` left empty) when it cannot be read or is of another format.
    """
    f = solv.xfopen(str(path))
    if f is None:
        return False
    ok = repo.add_solv(f)
    f.close()
    if not ok or repo.meta.lookup_str(repo.pool.str2id(_KEY_FORMAT)) != CACHE_FORMAT:
        repo.empty()
        return False
    return True


def mark_format(repo: solv.Repo, data: solv.Repodata) -> None:
    """Record this ``CACHE_FORMAT`` in ``data``, ``repo``'s repodata for metadata."""
    data.set_str(solv.SOLVID_META, repo.pool.str2id(_KEY_FORMAT), CACHE_FORMAT)


def add_meta(repo: solv.Repo, count: int, favor: Favor) -> None:
    """Record the format, the entry count and the favour levels in ``repo``'s metadata,
    ready for ``write_solv``.

    The favour levels are stored as offsets from the repository's first solvable, since
    ids change when the cache is loaded into another pool.
    """
    pool = repo.pool
    meta = repo.add_repodata()
    mark_format(repo, meta)
    meta.set_num(solv.SOLVID_META, pool.str2id(_KEY_COUNT), count)
    base = next(iter(repo.solvables)).id if repo.nsolvables else 0
    meta.set_str(
        solv.SOLVID_META,
        pool.str2id(_KEY_FAVORED),
        "\n".join(" ".join(str(sid - base) for sid in level) for level in favor),
    )
    meta.internalize()


def load(repo: solv.Repo, cache: Path, index: Path | None) -> Favor | None:
    """Load ``cache`` into ``repo`` if it is fresh against ``index``; its favour levels.

    None (and ``repo`` left empty) when the cache is missing, stale or of another format.
    """
    if not cache_is_fresh(cache, index) or not read_solv(repo, cache):
        return None
    favored = repo.meta.lookup_str(repo.pool.str2id(_KEY_FAVORED)) or "\n\n"
    base = next(iter(repo.solvables)).id if repo.nsolvables else 0
    low, high, standins = (
        [base + int(offset) for offset in line.split()] for line in favored.split("\n", 2)
    )
    return (low, high, standins)


def _default_filename(entry: Entry) -> str:
    """The package file name ``mix repo index`` gives: NAME-VERSION.ARCH.mixpkg."""
    return f"{entry['name']}-{entry['version']}.{entry.get('arch') or 'noarch'}.mixpkg"


class EntryAttributes:
    """An entry's fields kept in a cached solvable's libsolv attributes, and read back."""

    def __init__(self, pool: solv.Pool) -> None:
        self.pool = pool
        self._key_extra = pool.str2id(_KEY_EXTRA)
        self._key_inrepo = pool.str2id(_KEY_INREPO)
        self._key_inrepo_filename = pool.str2id(_KEY_FILENAME)

    def store(self, data: solv.Repodata, sid: int, entry: Entry, repo_name: str) -> None:
        """Keep an entry's fields in libsolv attributes for the cache (see _STR_ATTRS)."""
        extra: dict[str, Any] = {}
        for key, value in entry.items():
            if key in ("name", "version", "arch") or key in _DEP_ATTRS:
                continue
            if key == "filename" and value == _default_filename(entry):
                # Rebuilt on load: saves a string per package in the cache.
                data.set_void(sid, self._key_inrepo_filename)
                continue
            if key in _STR_ATTRS and isinstance(value, str):
                if value:  # an absent string comes back as "" (as mix.index fills it in)
                    data.set_str(sid, _STR_ATTRS[key], value)
            elif (
                key in _NUM_ATTRS
                and isinstance(value, int)
                and not isinstance(value, bool)
                and 0 <= value < 1 << 63
            ):
                data.set_num(sid, _NUM_ATTRS[key], value)
            elif key == "sha256" and isinstance(value, str) and _SHA256.fullmatch(value):
                data.set_checksum(
                    sid, solv.SOLVABLE_CHECKSUM, solv.Chksum(solv.REPOKEY_TYPE_SHA256, value)
                )
            elif key == "repo" and value == repo_name:
                data.set_void(sid, self._key_inrepo)
            else:
                extra[key] = value
        if extra:
            import json

            data.set_str(sid, self._key_extra, json.dumps(extra, separators=(",", ":")))

    def restore(self, s: solv.XSolvable, dep_str: Callable[[int], str]) -> Entry:
        """The entry a cached solvable was built from (dependencies as ``dep_str`` gives
        them: normalised mix syntax)."""
        pool = self.pool
        entry: Entry = {"name": s.name, "version": s.evr, "arch": s.arch}
        itself = pool.rel2id(s.nameid, s.evrid, solv.REL_EQ)
        for key, attr in _DEP_ATTRS.items():
            # Skip the implicit "name=version" that every package provides.
            deps = s.lookup_deparray(attr)
            entry[key] = [dep_str(d.id) for d in deps if key != "provides" or d.id != itself]
        for key, attr in _STR_ATTRS.items():
            text = s.lookup_str(attr)
            if text is not None or key != "filename":
                entry[key] = text or ""
        if "filename" not in entry and s.lookup_void(self._key_inrepo_filename):
            entry["filename"] = _default_filename(entry)
        for key, attr in _NUM_ATTRS.items():
            number = s.lookup_num(attr, _ABSENT)
            if number != _ABSENT:
                entry[key] = number
        checksum = s.lookup_checksum(solv.SOLVABLE_CHECKSUM)
        if checksum is not None:
            entry["sha256"] = checksum.hex()
        if s.lookup_void(self._key_inrepo):
            entry["repo"] = s.repo.name
        extra = s.lookup_str(self._key_extra)
        if extra:
            import json

            entry.update(json.loads(extra))
        return entry
