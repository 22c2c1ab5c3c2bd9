#!/bin/sh
# Link the new kernel into /boot and rewrite the GRUB menu; on an upgrade the new
# kernel boots once on trial (mixos-boot, package mixos-boot). On a system not
# installed on a disk (no /etc/mixos/boot.json) it does nothing.
exec /usr/sbin/mixos-boot update
