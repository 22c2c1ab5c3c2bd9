"""The partition plan: where each partition of mixboot.layout goes on a disk of a
given size, from install.yaml's sizes.

On the disk, in this order: BIOS boot, EFI system, swap, then root and data.
The one partition sized "rest" (root by default) comes last, so that the first
boot of a grown disk (VISO after `qemu-img resize`) can extend it in place.
Every partition starts on a MiB boundary; the last MiB of the disk is left for
GPT's backup header.
"""

from __future__ import annotations

from dataclasses import dataclass

from mixboot import layout
from mixinstall.config import InstallConfig, Size


class PlanError(ValueError):
    """The partitions do not fit the disk; the message gives the numbers."""


@dataclass(frozen=True)
class Placed:
    number: int  # layout.BIOS_BOOT, ESP, ROOT, SWAP or DATA
    start_mib: int
    size_mib: int

    @property
    def name(self) -> str:
        return layout.NAMES[self.number]

    @property
    def end_mib(self) -> int:
        return self.start_mib + self.size_mib


@dataclass(frozen=True)
class Plan:
    disk_mib: int
    partitions: tuple[Placed, ...]

    def get(self, number: int) -> Placed | None:
        return next((p for p in self.partitions if p.number == number), None)

    @property
    def root_last(self) -> bool:
        """The root partition ends the disk's partitions (it can grow in place)."""
        return max(self.partitions, key=lambda p: p.start_mib).number == layout.ROOT

    def describe(self) -> list[str]:
        return [f"{p.number}  {p.name:<5} {p.start_mib:>7} MiB  {p.size_mib:>7} MiB"
                for p in self.partitions]


def _mib(size: Size, disk_mib: int) -> int | None:
    if size.rest:
        return None
    if size.percent is not None:
        return disk_mib * size.percent // 100
    return size.mib


def make_plan(config: InstallConfig, disk_mib: int) -> Plan:
    """Place the partitions of CONFIG on a disk of DISK_MIB MiB, or raise PlanError."""
    usable = disk_mib - 2 * layout.ALIGN_MIB  # the first MiB, and the last for the backup GPT
    wanted: list[tuple[int, Size]] = [(layout.BIOS_BOOT, Size(mib=layout.BIOS_BOOT_MIB)),
                                      (layout.ESP, Size(mib=layout.ESP_MIB))]
    if config.swap_size is not None:
        wanted.append((layout.SWAP, config.swap_size))
    tail = [(layout.ROOT, config.root_size)]
    if config.data_size is not None:
        tail.append((layout.DATA, config.data_size))
    # The "rest" partition last; otherwise root before data.
    tail.sort(key=lambda t: t[1].rest)
    wanted += tail
    rests = [layout.NAMES[n] for n, s in wanted if s.rest]
    if len(rests) > 1:
        raise PlanError(f"only one partition can take the rest of the disk; {' and '.join(rests)} "
                        "both do: give one of them a size")
    sizes = {n: _mib(s, disk_mib) for n, s in wanted}
    fixed = sum(v for v in sizes.values() if v is not None)
    for n, v in sizes.items():
        if v is None:
            sizes[n] = usable - fixed
    need = fixed + (layout.MIN_ROOT_MIB if sizes[layout.ROOT] is None else 0)
    root = sizes[layout.ROOT]
    if root is not None and root < layout.MIN_ROOT_MIB:
        if rests:
            raise PlanError(f"the disk is {disk_mib} MiB: after the other partitions "
                            f"({fixed} MiB) the root partition would get {max(root, 0)} MiB; "
                            f"it needs at least {layout.MIN_ROOT_MIB} MiB")
        raise PlanError(f"the root partition is {root} MiB; it needs at least "
                        f"{layout.MIN_ROOT_MIB} MiB")
    total = sum(v for v in sizes.values() if v is not None)
    if total > usable or need > usable:
        parts = " + ".join(f"{layout.NAMES[n]} {sizes[n]}" for n, _ in wanted)
        raise PlanError(f"the partitions need {total} MiB ({parts}) but the disk is "
                        f"{disk_mib} MiB ({usable} MiB usable)")
    for n, v in sizes.items():
        if v is not None and v <= 0:
            raise PlanError(f"the {layout.NAMES[n]} partition would be {v} MiB on a "
                            f"{disk_mib} MiB disk")
    placed: list[Placed] = []
    start = layout.ALIGN_MIB
    for n, _ in wanted:
        size = sizes[n]
        assert size is not None
        placed.append(Placed(n, start, size))
        start += size
    return Plan(disk_mib, tuple(placed))


def sfdisk_script(plan: Plan, disk: str, *, disk_guid: str = "",
                  part_uuids: dict[int, str] | None = None) -> str:
    """The sfdisk input that writes PLAN to DISK (partition numbers from layout)."""
    lines = ["label: gpt", "unit: sectors", f"first-lba: {layout.ALIGN_MIB * 2048}"]
    if disk_guid:
        lines.append(f"label-id: {disk_guid}")
    lines.append("")
    for p in sorted(plan.partitions, key=lambda p: p.number):
        fields = [f"start={p.start_mib * 2048}", f"size={p.size_mib * 2048}",
                  f"type={layout.TYPE_GUIDS[p.number]}", f'name="{layout.PART_LABELS[p.number]}"']
        if part_uuids and p.number in part_uuids:
            fields.append(f"uuid={part_uuids[p.number]}")
        lines.append(f"{layout.partition_device(disk, p.number)} : " + ", ".join(fields))
    return "\n".join(lines) + "\n"
