"""Help and messages: every option explained, exit codes in `mix --help` and `mix help
exit-codes`, hints that name the paths of this root, errors that say what is wrong."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from mixhelpers import World, make_key

from mix.cli import build_parser, main

DOCS = Path(__file__).resolve().parents[2] / "docs/mix.md"


def commands() -> dict[str, argparse.ArgumentParser]:
    out: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    out[f"{path} {name}".strip()] = sub
                    walk(sub, f"{path} {name}")

    walk(build_parser(), "")
    return out


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_option_of_every_command_is_explained(name: str) -> None:
    parser = commands()[name]
    text = parser.format_help()
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            continue
        assert a.help, f"mix {name}: {a.option_strings or a.dest} has no help"
        for opt in a.option_strings:
            assert re.search(rf"(^|[\s,]){re.escape(opt)}\b", text), f"mix {name}: {opt}"


def documented_codes() -> set[int]:
    table = DOCS.read_text().split("## Exit status", 1)[1].split("\n## ", 1)[0]
    return {int(c) for c in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}


def test_exit_codes_are_in_mix_help(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert main(["help", "exit-codes"]) == 0
    topic = capsys.readouterr().out
    for text in (top, topic):
        listed = {int(c) for c in re.findall(r"^\s+(\d+)  ", text.split("exit status:")[1],
                                             re.MULTILINE)}
        assert listed == documented_codes()
    assert main(["help", "install"]) == 0
    assert "--reinstall" in capsys.readouterr().out
    assert main(["help", "nonsense"]) == 2


def test_an_unknown_key_names_the_keys_directory_of_the_root(tmp_path: Path,
                                                             capsys: Any) -> None:
    w = World(tmp_path)
    w.pkg("a", files={"/a": "a"})
    other, _ = make_key(tmp_path, "other")
    from mixhelpers import sign_repo

    sign_repo(w.repo, other)
    keys = w.root / "etc/mix/keys"
    keys.mkdir(parents=True)
    shutil.copy(w.pub, keys)
    (w.root / "etc/mix/repositories").write_text(f"file://{w.repo}\n")
    assert main(["--root", str(w.root), "update"]) == 4
    err = capsys.readouterr().err
    assert f"in {keys}/ if you trust it" in err
    assert "(kept the previous index)" not in err  # there was none
    w.sign()
    assert main(["--root", str(w.root), "update"]) == 0
    sign_repo(w.repo, other)
    assert main(["--root", str(w.root), "update"]) == 4
    assert "(kept the previous index)" in capsys.readouterr().err


@pytest.mark.parametrize(("spec", "says"), [
    ("a==", "invalid dependency 'a==': the version after '==' is missing (e.g. 'a==1.0')"),
    ("a>=", "the version after '>=' is missing"),
    ("a>>1", "unknown comparison '>>'"),
    ("a=1-2-3", "invalid version '1-2-3': more than one '-'")])
def test_a_bad_version_in_a_spec_says_what_is_wrong(tmp_path: Path, capsys: Any, spec: str,
                                                    says: str) -> None:
    w = World(tmp_path)
    w.pkg("a", files={"/a": "a"})
    w.sign()
    rc, _, err = w.mix("install", spec, capsys=capsys)
    assert rc == 3 and says in err
    assert err.count("(expected") <= 1
