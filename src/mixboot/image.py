"""What a MixOS boot image says about itself: /mixos-image.json on every ISO.

`make iso` writes it; the SDISK reads it from each image it carries, to name
the image in its menu (name, version, build date, variant) and to boot it (the
kernel, initramfs and root image paths inside the ISO and the image's own
kernel arguments), so that nothing about an image is written by hand:

    {"format": 1, "name": "MixOS", "version": "0.1.0",
     "build_date": "2026-01-01T00:00:00Z",
     "kernel": "/boot/vmlinuz", "initrd": "/boot/initramfs.img",
     "root_image": "/live/root.squashfs",
     "hardening": "lockdown=confidentiality ...", "extra": "", "install": ""}

hardening: the image's hardening kernel arguments; extra: what its builder
added to every entry; install: the install.yaml it carries ("" for a live
system): an unattended installer, started on every entry but rescue
(mixboot.cmdline.install_arg).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mixboot.iso9660 import IsoError, IsoImage

INFO_PATH = "/mixos-image.json"
FORMAT = 1


class ImageError(ValueError):
    """Not a MixOS image (or one this MixOS cannot read)."""


@dataclass(frozen=True)
class ImageInfo:
    version: str
    build_date: str
    kernel: str
    initrd: str
    root_image: str
    hardening: str
    extra: str = ""
    install: str = ""
    name: str = "MixOS"
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @property
    def variant(self) -> str:
        return "installer" if self.install else "live"

    @property
    def title(self) -> str:
        kind = "" if self.variant == "live" else f" {self.variant}"
        return f"{self.name} {self.version}{kind} ({self.build_date[:10]})"

    @classmethod
    def parse(cls, data: bytes, where: str) -> ImageInfo:
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ImageError(f"{where}: {INFO_PATH} is not JSON ({e})") from None
        if not isinstance(raw, dict):
            raise ImageError(f"{where}: {INFO_PATH} is not a JSON object")
        if raw.get("format") != FORMAT:
            raise ImageError(f"{where}: image format {raw.get('format')!r}; this MixOS reads "
                             f"format {FORMAT} (a newer image needs a newer mixos-boot)")
        fields = ("version", "build_date", "kernel", "initrd", "root_image",
                  "hardening", "extra", "install", "name")
        optional = ("hardening", "extra", "install")
        bad = [f for f in fields if not isinstance(raw.get(f, ""), str)
               or (f not in optional and not raw.get(f))]
        if bad:
            raise ImageError(f"{where}: {INFO_PATH} lacks or mistypes {', '.join(bad)}")
        return cls(**{f: raw.get(f, "") for f in fields})


def read_iso(path: Path) -> ImageInfo:
    """The ImageInfo of the ISO at PATH, checked: a clear ImageError when PATH is
    not a MixOS image or lacks what its info names."""
    try:
        with IsoImage.open(path) as iso:
            try:
                data = iso.read(INFO_PATH)
            except IsoError:
                raise ImageError(f"{path}: an ISO 9660 image without {INFO_PATH}: not a "
                                 "MixOS image (or one older than the SDISK)") from None
            info = ImageInfo.parse(data, str(path))
            for member in (info.kernel, info.initrd, info.root_image):
                try:
                    if iso.lookup(member).is_dir:
                        raise IsoError(f"{member} is a directory")
                except IsoError as e:
                    raise ImageError(f"{path}: its {INFO_PATH} names {member}, but: {e}") \
                        from None
            return info
    except IsoError as e:
        raise ImageError(f"{e}: not a MixOS image") from None
    except OSError as e:
        raise ImageError(f"{path}: {e.strerror or e}") from None
