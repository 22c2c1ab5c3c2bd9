"""Packages stage: package recipes -> the signed repository (artifacts/repo/).

    recipe.py        packages/<name>/recipe.toml parsed and validated into dataclasses
    staging.py       one recipe's sources applied into the tree `mix build` packs
    repo.py          `make packages`: every recipe -> a signed .mixpkg, then the signed index
    debian.py        Debian binary packages as inputs: apt candidates, download, unpack
    debsource.py     Debian source packages as inputs: fetched, patched, built by a script
    wheel.py         PyPI wheels as inputs: pinned cp311 wheels, downloaded and unpacked
    pyruntime.py     the target's Python: CPython trimmed to the stdlib mix imports
    elf.py           ELF linkage of a staged tree: sonames provided and needed
    elfhardening.py  compiler hardening of every ELF file, checked against a baseline
    apparmor.py      AppArmor profiles precompiled on the build host
"""
