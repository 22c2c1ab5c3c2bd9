"""The `mix` command line. Imports stay lazy so that `mix --help` starts fast."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn
    return register


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Global options, accepted before or after the sub-command."""
    d: Any = argparse.SUPPRESS if suppress else None
    g = parser.add_argument_group("global options")
    g.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS if suppress else "/",
                   help="operate on the system rooted at DIR (its etc/mix and var/lib/mix)")
    g.add_argument("-y", "--yes", action="store_true",
                   default=argparse.SUPPRESS if suppress else False,
                   help="do not ask for confirmation")
    g.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                   help="machine-readable output (list, info, search, files, owner, plans)")
    g.add_argument("--no-scripts", action="store_true",
                   default=argparse.SUPPRESS if suppress else False,
                   help="do not run package scripts")
    g.add_argument("--repo", metavar="URL", action="append", default=d,
                   help="use this repository instead of ROOT/etc/mix/repositories (repeatable)")
    g.add_argument("--keys-dir", metavar="DIR", default=d,
                   help="trusted public keys instead of ROOT/etc/mix/keys")
    g.add_argument("--timeout", metavar="SECONDS", type=float, default=d,
                   help="network timeout per attempt (default 30)")
    g.add_argument("--simulate", action="store_true",
                   default=argparse.SUPPRESS if suppress else False,
                   help="print the plan and change nothing")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mix", description="mix, the MixOS package manager. Exit codes: see docs/mix.md.")
    _global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common], description=help)

    add("update", "download, verify and store every repository's index")
    p = add("search", "search names and descriptions of available packages")
    p.add_argument("terms", nargs="+", metavar="TERM")
    p = add("install", "install packages and their dependencies")
    p.add_argument("packages", nargs="+", metavar="PKG",
                   help="NAME, NAME>=VERSION or a path to a .mixpkg file")
    p.add_argument("--allow-untrusted", action="store_true",
                   help="accept local .mixpkg files that are not in a signed index")
    p = add("remove", "remove packages (and orphaned dependencies)")
    p.add_argument("packages", nargs="+", metavar="PKG")
    p.add_argument("--cascade", action="store_true",
                   help="also remove installed packages that depend on them")
    p = add("upgrade", "upgrade the given packages, or all")
    p.add_argument("packages", nargs="*", metavar="PKG")
    p = add("list", "list packages")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--installed", action="store_const", dest="which", const="installed")
    which.add_argument("--available", action="store_const", dest="which", const="available")
    which.add_argument("--upgradable", action="store_const", dest="which", const="upgradable")
    p = add("info", "show a package's metadata")
    p.add_argument("package", metavar="PKG")
    p = add("files", "list the files an installed package owns")
    p.add_argument("package", metavar="PKG")
    p = add("owner", "show which installed package owns a path")
    p.add_argument("path", metavar="PATH")
    p = add("verify", "check installed files against the database")
    p.add_argument("packages", nargs="*", metavar="PKG")
    p = add("build", "build a .mixpkg from a staging directory")
    p.add_argument("staging", metavar="DIR")
    p.add_argument("-o", "--output", metavar="OUT.mixpkg", required=True)
    p.add_argument("--compression", choices=("gzip", "zstd"), default="gzip",
                   help="gzip (default: every mix reads it) or zstd (package format 2: "
                   "faster to install, needs python3-zstandard to read)")
    p = add("key", "manage signing keys")
    ksub = p.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    kg = ksub.add_parser("generate", help="write an ed25519 key pair NAME.key and NAME.pub")
    kg.add_argument("name", metavar="NAME")
    p = add("repo", "manage repositories")
    rsub = p.add_subparsers(dest="repo_command", metavar="ACTION", required=True)
    ri = rsub.add_parser("index", help="write and sign DIR/index.json for the packages in DIR")
    ri.add_argument("dir", metavar="DIR")
    ri.add_argument("--key", metavar="NAME.key", required=True)
    ri.add_argument("--valid-days", type=int, default=30, metavar="N",
                    help="days the index stays valid (default 30)")
    _media_commands(add, common)
    from mix import viso  # its arguments only: mixboot is imported when it runs

    viso.add_arguments(add("viso", "inspect and boot MixOS images (VISO, ISO, SDISK)"), common)
    return parser


def _media_commands(add: Callable[[str, str], argparse.ArgumentParser],
                    common: argparse.ArgumentParser) -> None:
    """mix sdisk and mix vram (mix.media)."""
    p = add("sdisk", "the images of an SDISK: list, add, remove, default")
    ssub = p.add_subparsers(dest="sdisk_command", metavar="ACTION", required=True)
    disk_help = ("the SDISK (an image file or a device; default: the one this system "
                 "booted from)")
    sl = ssub.add_parser("list", parents=[common], help="images, versions, sizes, sha256")
    sa = ssub.add_parser("add", parents=[common], help="copy a MixOS image onto the SDISK")
    sa.add_argument("image", metavar="FILE.iso")
    sa.add_argument("--name", help="its file name on the SDISK (default: FILE's)")
    sa.add_argument("--default", action="store_true", help="boot it by default")
    sr = ssub.add_parser("remove", parents=[common], help="remove an image (not the running one "
                         "or the last)")
    sr.add_argument("name", metavar="NAME")
    sd = ssub.add_parser("default", parents=[common], help="boot NAME by default")
    sd.add_argument("name", metavar="NAME")
    for sp in (sl, sa, sr, sd):
        sp.add_argument("--disk", metavar="FILE|DEV", help=disk_help)
    p = add("vram", "run from RAM: this boot's state, and the choice for the next boots")
    vsub = p.add_subparsers(dest="vram_command", metavar="ACTION", required=True)
    vsub.add_parser("status", parents=[common], help="requested and in effect, why, RAM used")
    vsub.add_parser("enable", parents=[common], help="VRAM=on from the next boot (disk, SDISK)")
    vsub.add_parser("disable", parents=[common], help="VRAM=off from the next boot")


@command("build")
def cmd_build(args: argparse.Namespace) -> int:
    from mix.build import build_package

    md = build_package(args.staging, args.output, args.compression)
    print(f"built {args.output}: {md['name']} {md['version']} ({len(md['files'])} entries, "
          f"{args.compression})")
    return 0


@command("key")
def cmd_key(args: argparse.Namespace) -> int:
    from mix.keys import generate

    key, pub = generate(args.name)
    print(f"wrote {key} (secret, mode 0600) and {pub}")
    return 0


@command("repo")
def cmd_repo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mix.index import scan_repo, write_index

    entries = scan_repo(Path(args.dir))
    path = write_index(Path(args.dir), entries, Path(args.key), args.valid_days)
    print(f"wrote {path} ({len(entries)} packages) and {path}.sig")
    return 0


QUERIES = ("list", "search", "info", "files", "owner", "verify")
MEDIA = ("sdisk", "vram")


def _load_commands(name: str) -> None:
    """Commands that act on a root live in mix.changes and mix.queries, those for boot
    media in mix.media (registering with
    @command as they are imported); import only the module the command needs."""
    import importlib

    importlib.import_module("mix.queries" if name in QUERIES else
                            "mix.media" if name in MEDIA else
                            "mix.viso" if name == "viso" else "mix.changes")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.command:
        parser.print_help()
        return 2
    from mix.errors import MixError

    try:
        if args.command not in COMMANDS:
            _load_commands(args.command)
        return COMMANDS[args.command](args)
    except MixError as e:
        print(f"mix: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"mix: hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("mix: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        print(f"mix: error: {e}", file=sys.stderr)
        return 1
