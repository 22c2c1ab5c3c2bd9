"""The partition plan: fixed partition numbers, the "rest" partition last, sizes
checked against the disk with the numbers in the message; and sfdisk writes it."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mixboot import layout
from mixinstall import config as c
from mixinstall.plan import PlanError, make_plan, sfdisk_script


def cfg(parts: str = "") -> c.InstallConfig:
    return c.parse("version: 1\ndisk: /dev/vda\n" + (f"partitions:\n{parts}" if parts else ""))


def test_default_plan_is_bios_esp_root_with_root_last() -> None:
    plan = make_plan(cfg(), 2048)
    assert [(p.number, p.start_mib, p.size_mib) for p in plan.partitions] == \
        [(1, 1, 1), (2, 2, 32), (3, 34, 2048 - 2 - 33)]
    assert plan.root_last


def test_swap_and_data_go_before_a_rest_root() -> None:
    plan = make_plan(cfg("  swap: {size: 256MiB}\n  data: {size: 10%}\n"), 4096)
    names = [p.name for p in sorted(plan.partitions, key=lambda p: p.start_mib)]
    assert names == ["bios", "esp", "swap", "data", "root"]
    data = plan.get(layout.DATA)
    assert data is not None and data.size_mib == 409
    ends = sorted((p.start_mib, p.end_mib) for p in plan.partitions)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(ends))  # no overlap
    assert ends[-1][1] <= 4096 - 1  # the last MiB stays for the backup GPT


def test_data_rest_makes_root_fixed_and_not_last() -> None:
    plan = make_plan(cfg("  root: {size: 1GiB}\n  data: {size: rest}\n"), 4096)
    assert not plan.root_last
    assert plan.get(layout.ROOT).size_mib == 1024  # type: ignore[union-attr]


def test_two_rest_partitions_are_refused() -> None:
    with pytest.raises(PlanError, match="only one partition"):
        make_plan(cfg("  data: {size: rest}\n"), 4096)


def test_too_small_disk_gives_the_numbers() -> None:
    with pytest.raises(PlanError, match="disk is 200 MiB.*at least 256 MiB"):
        make_plan(cfg(), 200)
    with pytest.raises(PlanError, match=r"need \d+ MiB .* but the disk is 1024 MiB"):
        make_plan(cfg("  root: {size: 512MiB}\n  swap: {size: 1GiB}\n"), 1024)


def test_fixed_root_below_the_minimum_is_refused() -> None:
    with pytest.raises(PlanError, match="root partition is 100 MiB"):
        make_plan(cfg("  root: {size: 100MiB}\n"), 4096)


@pytest.mark.skipif(shutil.which("sfdisk") is None, reason="sfdisk not installed")
def test_sfdisk_writes_the_plan_with_layout_numbers_and_types(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    with image.open("wb") as f:
        f.truncate(1024 * 1024 * 1024)
    plan = make_plan(cfg("  swap: {size: 64MiB}\n"), 1024)
    subprocess.run(["sfdisk", "--quiet", str(image)], input=sfdisk_script(plan, str(image)),
                   text=True, check=True, capture_output=True)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    got = {int(p["node"].rsplit(str(image), 1)[1]): p for p in table["partitions"]}
    for placed in plan.partitions:
        part = got[placed.number]
        assert part["start"] == placed.start_mib * 2048
        assert part["size"] == placed.size_mib * 2048
        assert part["type"] == layout.TYPE_GUIDS[placed.number]
        assert part["name"] == layout.PART_LABELS[placed.number]
