"""Image stages: kernel, initramfs, root filesystem and the bootable media built from them.

    kernel.py      `make kernel`: Linux from Debian's linux-source, configured by fragments
    kconfig.py     kernel .config and fragment files, and which requests a .config misses
    initramfs.py   `make initramfs`: static BusyBox + /init -> artifacts/initramfs.img
    cpio.py        the cpio "newc" archive writer the initramfs uses
    rootfs.py      `make rootfs`: the root tree installed by mix, then its squashfs
    iso.py         `make iso`: the hybrid BIOS/UEFI live and installer ISO
    viso.py        `make viso`: MixOS installed on a virtual disk, shipped as qcow2
    bootloader.py  `make bootloader`: the GRUB images an installed disk boots from
    bootcompat.py  can this kernel boot this initramfs and root image (build-time checks)
"""
