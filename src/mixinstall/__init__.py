"""mixinstall: lays a MixOS system onto a disk (the unattended installer, the VISO).

    config    install.yaml: read (file or URL), validate against install.schema.json
    plan      the partition plan: sizes on a disk of a given size
    disk      the target disk: checks, partitioning, file systems, mounts
    system    the installed system's configuration (fstab, host, network, users, mix)
    install   the steps, in order, with progress and a log
    cli       mixos-install
"""
