# MixOS build. Every target is a thin call into mixbuild (src/mixbuild/).
# Slow stages cache their output under $(MIXOS_CACHE), keyed by their inputs.

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
MIXOS_CACHE ?= /var/cache/mixos
export MIXOS_CACHE
export SOURCE_DATE_EPOCH ?= 1767225600
MIXBUILD    := PYTHONPATH=src $(PY) -m mixbuild

.PHONY: all deps kernel mix-cli packages rootfs initramfs iso bootloader viso \
        iso-autoinstall test test-unit test-qemu test-install test-viso clean

# The sample unattended-install configuration the unattended ISO carries
# (INSTALL_CONFIG=/path/install.yaml make iso-autoinstall carries another).
INSTALL_CONFIG ?=

all: deps iso viso iso-autoinstall

deps:
	$(PYTHON) src/mixbuild/deps.py --venv $(VENV)

kernel: deps
	$(MIXBUILD) kernel

mix-cli: deps
	$(MIXBUILD) packages --only mix

packages: deps kernel initramfs bootloader
	$(MIXBUILD) packages

rootfs: packages
	$(MIXBUILD) rootfs

initramfs: deps
	$(MIXBUILD) initramfs

iso: rootfs initramfs
	$(MIXBUILD) iso
	$(if $(INSTALL_CONFIG),$(MIXBUILD) iso --install-config $(INSTALL_CONFIG))

# The unattended installer: the ISO with an install.yaml and every package.
iso-autoinstall: rootfs initramfs
	$(MIXBUILD) iso --install-config $(or $(INSTALL_CONFIG),packaging/install.yaml)

# MixOS installed on a virtual disk, as a compressed qcow2 (cloud image).
viso: packages
	$(MIXBUILD) viso

bootloader: deps
	$(MIXBUILD) bootloader

# The images are built first, so that the unit tests that read them (kernel
# .config, root filesystem chroot checks, ELF hardening) run instead of skipping.
# The VM tests run on two workers (pytest-xdist), a test file each at a time: one
# VM per core under TCG.
VM_TESTS    := PYTHONPATH=src $(PY) -m pytest -q -n 2 --dist loadfile

test: deps iso viso
	PYTHONPATH=src $(PY) -m pytest -q tests/unit
	$(VM_TESTS) tests/vm

test-unit: deps
	PYTHONPATH=src $(PY) -m pytest -q tests/unit

test-qemu: iso viso
	$(VM_TESTS) tests/vm

# The installed-system VM tests alone: unattended install, disk boot, upgrades.
test-install: iso
	PYTHONPATH=src $(PY) -m pytest -q tests/vm/test_install.py

test-viso: viso
	PYTHONPATH=src $(PY) -m pytest -q tests/vm/test_viso.py

clean:
	rm -rf artifacts build
