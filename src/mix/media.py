"""The commands for MixOS's boot media: `mix sdisk` (the images of an SDISK) and
`mix vram` (the whole system in RAM). The work is mixboot's (package mixos-boot,
which the live system and every installed system carry): mixboot.sdisk and
mixboot.vram; this module parses, prints and maps errors to exit codes."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType
from typing import Any

from mix.cli import command
from mix.errors import MixError, NotFoundError, UsageError
from mix.session import emit_json, human_size, require_mixboot, say


def _mixboot(module: str) -> ModuleType:
    return require_mixboot(module)


# --- mix sdisk -------------------------------------------------------------------------
def _sdisk_list(sd: Any, sdisk: ModuleType, args: argparse.Namespace) -> int:
    running = sdisk.running_image() if args.disk is None else None
    rows = sdisk.listing(sd, running=running)
    if args.json:
        emit_json({"images": rows, "free": sd.free_bytes()})
        return 0
    say(f"{'NAME':<30} {'VERSION':<10} {'BUILT':<10} {'VARIANT':<9} {'SIZE':>10}  "
        f"{'':<2} SHA256")
    for r in rows:
        flags = ("*" if r["default"] else " ") + ("R" if r["running"] else " ")
        say(f"{r['name']:<30} {r['version'] or '?':<10} {(r['build_date'] or '?')[:10]:<10} "
            f"{r['variant'] or '?':<9} {human_size(int(r['size'])):>10}  {flags} "
            f"{r['sha256']}")
        if r.get("error"):
            say(f"    not bootable: {r['error']}")
    say(f"* default   R running   free: {human_size(sd.free_bytes())}")
    return 0


@command("sdisk")
def cmd_sdisk(args: argparse.Namespace) -> int:
    sdisk = _mixboot("sdisk")
    action = args.sdisk_command
    readonly = action == "list"
    try:
        with sdisk.opened(args.disk, readonly=readonly) as sd:
            if action == "list":
                return _sdisk_list(sd, sdisk, args)
            if action == "add":
                src = Path(args.image)
                if not src.is_file():
                    raise NotFoundError(f"{src}: no such file")
                img = sd.add(src, args.name, make_default=args.default)
                say(f"added {img.file}: {img.info.title}, {human_size(img.size)}"
                    + (" (the default)" if sd.default() == img.file else ""))
            elif action == "remove":
                running = sdisk.running_image() if args.disk is None else None
                if args.name not in sd.files():
                    raise NotFoundError(f"the SDISK carries no image {args.name!r}",
                                        f"'mix sdisk list' shows them: {', '.join(sd.files())}")
                sd.remove(args.name, running=running)
                say(f"removed {args.name}; default: {sd.default()}")
            elif action == "default":
                if args.name not in sd.files():
                    raise NotFoundError(f"the SDISK carries no image {args.name!r}",
                                        f"'mix sdisk list' shows them: {', '.join(sd.files())}")
                sd.set_default(args.name)
                say(f"{args.name} boots by default")
            else:
                raise UsageError(f"unknown action {action!r}")
    except sdisk.SdiskError as e:
        raise MixError(str(e)) from None
    return 0


# --- mix vram --------------------------------------------------------------------------
def _vram_status(st: dict[str, Any]) -> None:
    def mib(n: int | None) -> str:
        return human_size(n) if n is not None else "?"

    say(f"medium:        {st['medium']} ({st['device'] or 'unknown device'})"
        + (f", image {st['image']}" if st["image"] else ""))
    say(f"requested:     VRAM={st['requested'] or '?'}")
    say(f"in effect:     {st['in_effect']}" + (f" ({st['why']})" if st["why"] else ""))
    if st["in_effect"] == "on":
        say(f"copied at boot: {mib(st['copied_bytes'])}; in RAM now: {mib(st['ram_bytes'])}")
        if st["medium"] == "disk":
            say("note:          the root file system is a copy in RAM: changes are lost at "
                "power-off")
    else:
        say(f"in RAM now:    {mib(st['ram_bytes'])} (the system's writes)")
    say(f"memory:        {mib(st['mem_available'])} available of {mib(st['mem_total'])}")
    say(f"medium needed: {'yes' if st['medium_needed'] else 'no (it may be detached)'}")
    nxt = st["next_boot"]
    say("next boot:     " + (f"VRAM={nxt} (mix vram enable|disable)" if nxt
                               else "chosen at boot (read-only medium)"))


@command("vram")
def cmd_vram(args: argparse.Namespace) -> int:
    vram = _mixboot("vram")
    action = args.vram_command
    if action == "status":
        try:
            st = vram.status()
        except vram.VramError as e:
            raise MixError(str(e)) from None
        if args.json:
            emit_json(st)
        else:
            _vram_status(st)
        return 0
    value = vram.ON if action == "enable" else vram.OFF
    try:
        where = vram.persist(value)
    except vram.VramError as e:
        raise MixError(str(e)) from None
    except _mixboot("sdisk").SdiskError as e:
        raise MixError(str(e)) from None
    say(f"VRAM={value} from the next boot on (kept in {where})")
    if value == vram.ON and vram.medium_kind(_mixboot("sdisk").boot_env()) == "disk":
        say("note: the system then runs from a copy of its disk in RAM: changes made while "
            "it runs are lost at power-off")
    return 0
