"""Running MixOS in QEMU: command lines and a driven guest (tests, benchmarks, `mixbuild qemu`).

    qemu.py   QEMU command lines built from one Machine value, and the KVM/TCG probe
    guest.py  a running guest (VM): its serial console captured, bounded waits, clean stop
"""
