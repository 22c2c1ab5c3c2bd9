"""Helpers for the mix tests: make staging trees, packages and signed repositories."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mix.build import build_package
from mix.index import scan_repo, write_index
from mix.keys import generate


def stage(base: Path, name: str, version: str = "1.0", files: dict[str, str | bytes] | None = None,
          scripts: dict[str, str] | None = None, **meta: Any) -> Path:
    """A staging dir: files maps '/usr/bin/x' -> content ('->target' makes a symlink)."""
    d = base / f"stage-{name}-{version}"
    (d / "files").mkdir(parents=True, exist_ok=True)
    for path, content in (files or {}).items():
        p = d / "files" / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str) and content.startswith("->"):
            os.symlink(content[2:], p)
        else:
            p.write_bytes(content.encode() if isinstance(content, str) else content)
            p.chmod(0o755 if "/bin/" in path else 0o644)
    if scripts:
        (d / "scripts").mkdir(exist_ok=True)
        for sname, text in scripts.items():
            (d / "scripts" / sname).write_text(text)
    md = {"name": name, "version": version, "description": f"the {name} package",
          "arch": "noarch", **meta}
    (d / "metadata.json").write_text(json.dumps(md))
    return d


def make_pkg(base: Path, repo: Path, name: str, version: str = "1.0",
             compression: str = "gzip", **kw: Any) -> Path:
    out = repo / f"{name}-{version}.noarch.mixpkg"
    build_package(stage(base, name, version, **kw), out, compression)
    return out


def make_key(base: Path, name: str = "test") -> tuple[Path, Path]:
    keydir = base / f"keys-{name}"
    keydir.mkdir(exist_ok=True)
    return generate(keydir / name)


def sign_repo(repo: Path, key: Path, **kw: Any) -> None:
    write_index(repo, scan_repo(repo), key, **kw)


class World:
    """A signed file:// repository, a key and an empty root, driven through mix's CLI."""

    def __init__(self, base: Path, compression: str = "gzip") -> None:
        self.base = base
        self.compression = compression  # of the packages pkg() builds
        self.repo = base / "repo"
        self.repo.mkdir()
        self.root = base / "root"
        self.root.mkdir()
        self.key, self.pub = make_key(base)
        self.keys_dir = self.pub.parent

    def pkg(self, name: str, version: str = "1.0", **kw: Any) -> Path:
        return make_pkg(self.base, self.repo, name, version, self.compression, **kw)

    def sign(self, **kw: Any) -> None:
        sign_repo(self.repo, self.key, **kw)

    def args(self, *args: str) -> list[str]:
        return ["--root", str(self.root), "--repo", f"file://{self.repo}",
                "--keys-dir", str(self.keys_dir), "-y", *args]

    def mix(self, *args: str, capsys: Any = None) -> tuple[int, str, str]:
        from mix.cli import main

        rc = main(self.args(*args))
        if capsys is not None:
            out, err = capsys.readouterr()
            return rc, out, err
        return rc, "", ""

    def installed(self) -> dict[str, str]:
        from mix.database import Database

        db = Database(self.root / "var/lib/mix/installed.db", readonly=True)
        try:
            return {p["name"]: p["version"] for p in db.packages()}
        finally:
            db.close()

    def tree(self) -> dict[str, str]:
        """Everything under the root except mix's own state: path -> kind/content digest."""
        import hashlib

        out: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            if rel.startswith(("var/lib/mix", "var/cache/mix")):
                continue
            for n in dirnames + filenames:
                p = Path(dirpath) / n
                key = "/" + os.path.normpath(os.path.join(rel, n))
                if p.is_symlink():
                    out[key] = "-> " + os.readlink(p)
                elif p.is_dir():
                    out[key] = "dir"
                else:
                    out[key] = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        return out


def journal(w: World) -> Any:
    """The root's transaction journal, as a reader sees it (mix.database)."""
    from mix.database import Database

    db = Database(w.root / "var/lib/mix/installed.db", readonly=True)
    try:
        return db.journal()
    finally:
        db.close()
