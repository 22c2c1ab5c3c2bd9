"""What the running mix is made of and runs on, and starting mix anew once those changed.

An upgrade that changes them does them first, in a transaction of their own, then
executes the same command line again (mix.changes.continue_upgrade): the rest is done by
the new interpreter with the new modules. A mix that completes an interrupted
transaction that replaced them (mix.session, on opening the root) starts anew the same
way, so that no process runs old code that has begun to import new modules.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from mix.database import Database


def runs_on(root: Path, db: Database) -> set[str]:
    """The installed packages the running mix is made of and runs on: the owners of its
    own files, of the Python interpreter and of the shell that runs package scripts,
    with everything they depend on. Empty when this mix does not run from ROOT."""
    import mix
    from mix.queries import _dependency_names
    from mix.scripts import SHELL
    from mix.search import provided_names

    root = root.resolve()

    def inside(f: Path) -> str | None:
        try:
            return "/" + str(f.resolve().relative_to(root))
        except ValueError:
            return None

    mine = [path for f in (Path(mix.__file__), Path(sys.executable)) if (path := inside(f))]
    names = {o["package"] for path in mine for o in db.owners(path)}
    if not names:
        return set()
    shell = inside(root / SHELL.lstrip("/"))
    names |= {o["package"] for o in db.owners(shell)} if shell else set()
    packages = {p["name"]: p for p in db.packages()}
    providers: dict[str, set[str]] = {}
    for p in packages.values():
        for n in (p["name"], *provided_names(p.get("provides") or (), p["name"])):
            providers.setdefault(n, set()).add(p["name"])
    todo = list(names)
    while todo:
        for dep in packages[todo.pop()].get("dependencies") or ():
            for n in _dependency_names(dep):
                for provider in providers.get(n, ()):
                    if provider not in names:
                        names.add(provider)
                        todo.append(provider)
    return names


def replaced_runtime(root: Path, db: Database, journal: dict[str, Any]) -> list[str]:
    """The packages of what mix runs on whose files the (completed) transaction
    JOURNAL put in place."""
    touched = {r["pkg"] for r in journal.get("renames", ())}
    return sorted(touched & runs_on(root, db))


def restart(env: dict[str, str] | None = None) -> NoReturn:
    """Execute this command line again with the interpreter and mix now on disk (ENV
    added to the environment); the checkpoint count goes along (mix.failpoint)."""
    from mix import failpoint

    sys.stdout.flush()
    sys.stderr.flush()
    new_env = dict(os.environ, **(env or {}))
    if failpoint.KILL in new_env:
        new_env[failpoint.DONE] = failpoint.passed().carried()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], new_env)
