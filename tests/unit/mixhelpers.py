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


def make_pkg(base: Path, repo: Path, name: str, version: str = "1.0", **kw: Any) -> Path:
    out = repo / f"{name}-{version}.noarch.mixpkg"
    build_package(stage(base, name, version, **kw), out)
    return out


def make_key(base: Path, name: str = "test") -> tuple[Path, Path]:
    keydir = base / f"keys-{name}"
    keydir.mkdir(exist_ok=True)
    return generate(keydir / name)


def sign_repo(repo: Path, key: Path, **kw: Any) -> None:
    write_index(repo, scan_repo(repo), key, **kw)
