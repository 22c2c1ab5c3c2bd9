"""--json: one document per command, one style (indent 1, keys sorted), booleans as
booleans, the field names of plans used by lists too, and errors as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mixhelpers import World


@pytest.fixture
def w(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.pkg("libc", files={"/usr/lib/libc.so.6": "libc"}, provides=["libc.so.6"])
    w.pkg("tool", files={"/usr/bin/tool": "tool", "/etc/tool.conf": "a=1\n"},
          dependencies=["libc.so.6"])
    w.pkg("broken", files={"/usr/bin/broken": "b"}, dependencies=["ghost"])
    w.sign()
    return w


def doc(w: World, capsys: Any, *args: str, rc: int = 0) -> Any:
    got, out, err = w.mix("--json", *args, capsys=capsys)
    assert got == rc, (args, err)
    value = json.loads(out)  # exactly one document
    assert out == json.dumps(value, indent=1, sort_keys=True) + "\n", f"{args}: style"
    return value


def test_every_command_prints_one_document_in_one_style(w: World, capsys: Any) -> None:
    assert doc(w, capsys, "--simulate", "install", "tool")["plan"][0] == {
        "action": "install", "name": "libc", "version": "1.0", "old_version": None,
        "reason": "dependency"}
    doc(w, capsys, "install", "tool")
    w.pkg("tool", "1.1", files={"/usr/bin/tool": "tool 1.1", "/etc/tool.conf": "a=1\n"},
          dependencies=["libc.so.6"])
    w.sign()
    assert doc(w, capsys, "list") == [
        {"name": "libc", "version": "1.0", "reason": "dependency", "held": False},
        {"name": "tool", "version": "1.0", "reason": "explicit", "held": False}]
    # the field names of plans: version is the one to come, old_version the installed
    assert doc(w, capsys, "list", "--upgradable") == [
        {"name": "tool", "version": "1.1", "old_version": "1.0"}]
    assert {r["name"] for r in doc(w, capsys, "list", "--available")} == {
        "libc", "tool", "broken"}
    found = doc(w, capsys, "search", "tool")
    assert found == [{"name": "tool", "version": "1.1", "repo": found[0]["repo"],
                      "description": "the tool package", "installed_version": "1.0"}]
    info = doc(w, capsys, "info", "tool")
    assert info["held"] is False and info["installed_version"] == "1.0"
    files = doc(w, capsys, "files", "tool")
    assert {f["path"]: f["config"] for f in files if f["type"] == "file"} == {
        "/etc/tool.conf": True, "/usr/bin/tool": False}
    assert doc(w, capsys, "owner", "/usr/bin/tool") == [{"path": "/usr/bin/tool",
                                                         "package": "tool"}]
    assert doc(w, capsys, "verify") == {"problems": [], "modified_config": []}
    assert doc(w, capsys, "provides", "libc.so.6")[0]["name"] == "libc"
    assert [h["command"].split()[-1] for h in doc(w, capsys, "history")] == ["tool"]
    assert doc(w, capsys, "upgrade")["plan"][0]["action"] == "upgrade"
    assert doc(w, capsys, "install", "tool") == {"plan": []}
    assert doc(w, capsys, "fix") == {"plan": []}
    assert doc(w, capsys, "update")["repositories"][0]["unchanged"] is True
    assert doc(w, capsys, "hold", "tool") == {"held": ["tool"]}
    assert doc(w, capsys, "unhold", "tool") == {"released": ["tool"]}
    assert doc(w, capsys, "mark", "--explicit", "libc") == {"marked": ["libc"],
                                                            "reason": "explicit"}
    assert doc(w, capsys, "cache", "clean") == {"removed": [], "bytes": 0, "simulate": False}
    assert [p["name"] for p in doc(w, capsys, "remove", "tool")["plan"]] == ["tool"]


def test_the_commands_without_a_root_print_documents_too(tmp_path: Path, capsys: Any) -> None:
    from mixhelpers import stage

    from mix.cli import main

    def run(*args: str) -> Any:
        assert main(["--json", *args]) == 0
        out = capsys.readouterr().out
        value = json.loads(out)
        assert out == json.dumps(value, indent=1, sort_keys=True) + "\n"
        return value

    keys = tmp_path / "keys"
    keys.mkdir()
    assert run("key", "generate", str(keys / "k")) == {"key": f"{keys}/k.key",
                                                       "public_key": f"{keys}/k.pub"}
    repo = tmp_path / "repo"
    repo.mkdir()
    built = run("build", str(stage(tmp_path, "x", files={"/x": "x"})), "-o",
                str(repo / "x-1.0.noarch.mixpkg"))
    assert built["name"] == "x" and built["entries"] == 1
    assert run("repo", "index", str(repo), "--key", str(keys / "k.key"))["packages"] == 1


def test_every_command_is_in_the_json_tests() -> None:
    """Each package-manager command of `mix help` appears in a --json test above (help
    itself prints help, not a document; the image and medium commands viso, sdisk and
    vram have their own tests: test_viso_*.py, test_boot_sdisk.py, test_boot_vram.py)."""
    from test_mix_help import commands

    text = Path(__file__).read_text()
    for name in commands():
        if name.split()[0] in ("help", "viso", "sdisk", "vram") or name in ("key", "repo",
                                                                             "cache"):
            continue
        assert f'"{name.split()[-1]}"' in text, f"mix {name} has no --json test"


def test_errors_are_json_on_stdout_too(w: World, capsys: Any) -> None:
    assert doc(w, capsys, "info", "ghost", rc=9) == {
        "error": {"message": "no package named 'ghost' is installed or available",
                  "hint": "check the name with 'mix search'"}, "exit": 9}
    err = doc(w, capsys, "install", "broken", rc=3)
    assert err["exit"] == 3 and "ghost" in err["error"]["message"]
    _rc, _out, stderr = w.mix("--json", "info", "ghost", capsys=capsys)
    assert "mix: error: no package named 'ghost'" in stderr  # and for people, as always


def test_verify_problems_are_objects_in_the_one_document(w: World, capsys: Any) -> None:
    doc(w, capsys, "install", "tool")
    (w.root / "usr/bin/tool").write_text("changed")
    (w.root / "etc/tool.conf").write_text("a=2\n")
    assert doc(w, capsys, "verify", rc=11) == {
        "problems": [{"package": "tool", "path": "/usr/bin/tool",
                      "problem": "content differs (sha256)"}],
        "modified_config": [{"package": "tool", "path": "/etc/tool.conf",
                             "problem": "modified configuration"}]}
