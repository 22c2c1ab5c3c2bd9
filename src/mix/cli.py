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


def _wait_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"--wait={text}: expected a number of seconds >= 0")
    return value


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
                   help="machine-readable output: one JSON document on stdout, errors included")
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
    g.add_argument("--wait", metavar="[=SECONDS]", type=_wait_seconds, default=d,
                   help="a command that changes the root waits for another mix to finish "
                   "(at most SECONDS; without a value, as long as it takes) instead of failing")


def build_parser() -> argparse.ArgumentParser:
    from mix.errors import exit_codes_text

    parser = argparse.ArgumentParser(
        prog="mix", description="mix, the MixOS package manager.",
        epilog=exit_codes_text() + "\n\n'mix help COMMAND' or 'mix COMMAND --help': a "
        "command's options.", formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_options(parser, suppress=False)
    from mix import __version__

    parser.add_argument("--version", action="version", version=f"mix {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common], description=help)

    p = add("help", "help on a command, or on exit codes")
    p.add_argument("topic", nargs="?", metavar="COMMAND|exit-codes",
                   help="a command, or exit-codes (default: the list of commands)")
    add("update", "download, verify and store every repository's index")
    p = add("search", "search names, descriptions and provided names of available packages")
    p.add_argument("terms", nargs="+", metavar="TERM", help="words every result contains")
    p.add_argument("--all-versions", action="store_true",
                   help="every available version, not only the one install would pick")
    p = add("install", "install packages and their dependencies")
    p.add_argument("packages", nargs="+", metavar="PKG",
                   help="NAME, NAME>=VERSION or a path to a .mixpkg file")
    p.add_argument("--allow-untrusted", action="store_true",
                   help="accept local .mixpkg files that are not in a signed index")
    p.add_argument("--reinstall", action="store_true",
                   help="install the named installed packages again (same version)")
    p.add_argument("--download-only", action="store_true",
                   help="download the plan's packages into the cache and change nothing")
    p = add("remove", "remove packages (and orphaned dependencies)")
    p.add_argument("packages", nargs="+", metavar="PKG", help="installed packages to remove")
    p.add_argument("--cascade", action="store_true",
                   help="also remove installed packages that depend on them")
    p = add("upgrade", "upgrade the given packages, or all")
    p.add_argument("packages", nargs="*", metavar="PKG",
                   help="installed packages to upgrade (default: all but the held ones)")
    p.add_argument("--download-only", action="store_true",
                   help="download the plan's packages into the cache and change nothing")
    p = add("list", "list packages")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--installed", action="store_const", dest="which", const="installed",
                       help="installed packages, with why (the default)")
    which.add_argument("--available", action="store_const", dest="which", const="available",
                       help="what the repositories offer")
    which.add_argument("--upgradable", action="store_const", dest="which", const="upgradable",
                       help="installed packages with a newer candidate")
    which.add_argument("--held", action="store_const", dest="which", const="held",
                       help="packages 'mix hold' keeps as they are")
    p.add_argument("--all-versions", action="store_true",
                   help="with --available: every version, not only the one install would pick")
    p = add("info", "show a package's metadata")
    p.add_argument("package", metavar="PKG", help="a package name, or a name packages provide")
    p = add("files", "list the files an installed package owns")
    p.add_argument("package", metavar="PKG", help="an installed package")
    p = add("owner", "show which installed package owns a path")
    p.add_argument("path", metavar="PATH", help="a path on the system (inside --root)")
    p = add("verify", "check installed files against the database")
    p.add_argument("packages", nargs="*", metavar="PKG",
                   help="installed packages to check (default: all)")
    p = add("hold", "keep installed packages as they are: upgrade skips them, install and "
            "remove refuse them")
    p.add_argument("packages", nargs="+", metavar="PKG", help="installed packages to hold")
    p = add("unhold", "release held packages")
    p.add_argument("packages", nargs="+", metavar="PKG", help="held packages to release")
    p = add("mark", "set why packages are installed")
    mark = p.add_mutually_exclusive_group(required=True)
    mark.add_argument("--explicit", action="store_const", dest="reason", const="explicit",
                      help="asked for: stays until removed")
    mark.add_argument("--dependency", action="store_const", dest="reason", const="dependency",
                      help="goes once nothing installed needs it")
    p.add_argument("packages", nargs="+", metavar="PKG", help="installed packages to mark")
    p = add("provides", "which available package ships a file or provides a name")
    p.add_argument("what", metavar="PATH|NAME",
                   help="an absolute path (needs the repository's file lists) or a name")
    p = add("history", "the transactions made on this root: time, command, changes")
    p = add("fix", "reinstall installed packages whose files differ from the database "
            "(and complete an interrupted transaction)")
    p.add_argument("packages", nargs="*", metavar="PKG", help="only these (default: all)")
    p = add("cache", "manage the download cache")
    csub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    cc = csub.add_parser("clean", parents=[common],
                         help="remove partial downloads and packages that are not installed")
    cc.add_argument("--all", action="store_true", help="remove every cached package")
    p = add("build", "build a .mixpkg from a staging directory")
    p.add_argument("staging", metavar="DIR",
                   help="staging directory: metadata.json, files/, scripts/")
    p.add_argument("-o", "--output", metavar="OUT.mixpkg", required=True,
                   help="the package file to write")
    p.add_argument("--compression", choices=("gzip", "zstd"), default="gzip",
                   help="gzip (default: every mix reads it) or zstd (package format 2: "
                   "faster to install, needs python3-zstandard to read)")
    p = add("key", "manage signing keys")
    ksub = p.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    kg = ksub.add_parser("generate", help="write an ed25519 key pair NAME.key and NAME.pub")
    kg.add_argument("name", metavar="NAME", help="path prefix of NAME.key and NAME.pub")
    p = add("repo", "manage repositories")
    rsub = p.add_subparsers(dest="repo_command", metavar="ACTION", required=True)
    ri = rsub.add_parser("index", help="write and sign DIR/index.json for the packages in DIR")
    ri.add_argument("dir", metavar="DIR", help="the repository: a directory of .mixpkg files")
    ri.add_argument("--key", metavar="NAME.key", required=True,
                    help="the secret key to sign with ('mix key generate')")
    ri.add_argument("--valid-days", type=int, default=30, metavar="N",
                    help="days the index stays valid, at least 1 (default 30)")
    ri.add_argument("--files", action="store_true",
                    help="also write files.json.gz, the packages' file lists (for mix provides)")
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
    sa.add_argument("image", metavar="FILE.iso", help="the MixOS image (an ISO built by make iso)")
    sa.add_argument("--name", help="its file name on the SDISK (default: FILE's)")
    sa.add_argument("--default", action="store_true", help="boot it by default")
    sr = ssub.add_parser("remove", parents=[common], help="remove an image (not the running one "
                         "or the last)")
    sr.add_argument("name", metavar="NAME", help="the image's file name on the SDISK")
    sd = ssub.add_parser("default", parents=[common], help="boot NAME by default")
    sd.add_argument("name", metavar="NAME", help="the image's file name on the SDISK")
    for sp in (sl, sa, sr, sd):
        sp.add_argument("--disk", metavar="FILE|DEV", help=disk_help)
    p = add("vram", "run from RAM: this boot's state, and the choice for the next boots")
    vsub = p.add_subparsers(dest="vram_command", metavar="ACTION", required=True)
    vsub.add_parser("status", parents=[common], help="requested and in effect, why, RAM used")
    vsub.add_parser("enable", parents=[common], help="VRAM=on from the next boot (disk, SDISK)")
    vsub.add_parser("disable", parents=[common], help="VRAM=off from the next boot")


@command("help")
def cmd_help(args: argparse.Namespace) -> int:
    from mix.errors import UsageError, exit_codes_text

    parser = build_parser()
    if args.topic in (None, "commands"):
        parser.print_help()
        return 0
    if args.topic in ("exit-codes", "exit-status"):
        print(exit_codes_text())
        return 0
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if args.topic not in sub.choices:
        raise UsageError(f"no help on {args.topic!r}",
                         "'mix help' lists the commands; 'mix help exit-codes' the exit codes")
    sub.choices[args.topic].print_help()
    return 0


@command("build")
def cmd_build(args: argparse.Namespace) -> int:
    from mix.build import build_package

    md = build_package(args.staging, args.output, args.compression)
    _report(args, f"built {args.output}: {md['name']} {md['version']} ({len(md['files'])} "
            f"entries, {args.compression})",
            {"built": str(args.output), "name": md["name"], "version": md["version"],
             "entries": len(md["files"]), "compression": args.compression})
    return 0


def _report(args: argparse.Namespace, text: str, doc: dict[str, Any]) -> None:
    """A command's result: text for people, or with --json the document."""
    if getattr(args, "json", False):
        from mix.session import emit_json

        emit_json(doc)
    else:
        print(text)


@command("key")
def cmd_key(args: argparse.Namespace) -> int:
    from mix.keys import generate

    key, pub = generate(args.name)
    _report(args, f"wrote {key} (secret, mode 0600) and {pub}",
            {"key": str(key), "public_key": str(pub)})
    return 0


@command("repo")
def cmd_repo(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from mix.index import next_created, scan_repo, write_index

    if args.valid_days <= 0:
        from mix.errors import UsageError

        raise UsageError(f"--valid-days {args.valid_days}: the index would have expired "
                         "when it is written", "give a number of days of at least 1")
    files: dict[str, list[str]] | None = {} if args.files else None
    entries = scan_repo(Path(args.dir), files)
    created = next_created(Path(args.dir), entries, int(time.time()))
    path = write_index(Path(args.dir), entries, Path(args.key), args.valid_days, created=created,
                       files=files)
    _report(args, f"wrote {path} ({len(entries)} packages) and {path}.sig",
            {"index": str(path), "signature": f"{path}.sig", "packages": len(entries),
             "files": str(path.with_name("files.json.gz")) if files is not None else None})
    return 0


QUERIES = ("list", "search", "info", "files", "owner", "verify", "provides")
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
    called_from_cli = argv is None
    argv = sys.argv[1:] if argv is None else argv
    # --wait takes its value only as --wait=SECONDS: a bare --wait waits without a limit
    # (argparse would otherwise take the next word, the command or a package, as SECONDS).
    args = parser.parse_args(["--wait=inf" if a == "--wait" else a for a in argv])
    args.argv = list(argv)  # the command as given, for the history
    args.from_cli = called_from_cli
    if called_from_cli and os.environ.get("MIX_SELF_UPGRADED"):
        from mix import __version__

        print(f"mix: continuing with the new mix {__version__}", file=sys.stderr, flush=True)
    if "mix.session" in sys.modules:  # (main called again in one process: tests)
        setattr(sys.modules["mix.session"], "json_emitted", False)  # noqa: B010
    if not args.command:
        parser.print_help()
        return 2
    import signal

    from mix.errors import MixError

    # SIGTERM ends mix the way Ctrl-C does: an unfinished transaction is rolled back.
    try:
        previous: Any = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (mix called as a library): leave it alone
        previous = None
    try:
        if args.command not in COMMANDS:
            _load_commands(args.command)
        return COMMANDS[args.command](args)
    except MixError as e:
        return _fail(args, e.exit_code, e.message, e.hint)
    except Terminated:
        return _fail(args, 143, "terminated (SIGTERM)")
    except KeyboardInterrupt:
        return _fail(args, 130, "interrupted")
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        import errno

        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return _fail(args, 7, f"disk full: {e}", "free some space, then run mix again")
        return _fail(args, 1, str(e))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _fail(args: argparse.Namespace, code: int, message: str, hint: str = "") -> int:
    """Report an error on stderr and, with --json, as {"error": {...}, "exit": N} on stdout
    too (a program reading the JSON learns what failed without parsing stderr)."""
    print(f"mix: error: {message}" if code not in (130, 143) else f"mix: {message}",
          file=sys.stderr)
    if hint:
        print(f"mix: hint: {hint}", file=sys.stderr)
    session = sys.modules.get("mix.session")
    if getattr(args, "json", False) and not getattr(session, "json_emitted", False):
        # (a command that printed its document already, verify with problems, adds none)
        import json

        print(json.dumps({"error": {"message": message, "hint": hint or None},
                          "exit": code}, indent=1, sort_keys=True), flush=True)
    return code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where mix is, so that it unwinds (and rolls back) as for Ctrl-C."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()
