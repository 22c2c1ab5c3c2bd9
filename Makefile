# MixOS build. Every target is a thin call into mixbuild (src/mixbuild/).
# Slow stages cache their output under $(MIXOS_CACHE), keyed by their inputs.

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
MIXOS_CACHE ?= /var/cache/mixos
export MIXOS_CACHE
export SOURCE_DATE_EPOCH ?= 1767225600
MIXBUILD    := PYTHONPATH=src $(PY) -m mixbuild

.PHONY: all deps kernel mix-cli packages rootfs initramfs iso bootloader viso sdisk \
        iso-autoinstall run test test-unit test-qemu test-install test-viso test-sdisk \
        test-vram clean

# The sample unattended-install configuration the unattended ISO carries
# (INSTALL_CONFIG=/path/install.yaml make iso-autoinstall carries another).
INSTALL_CONFIG ?=
# The images an SDISK carries (make sdisk IMAGES="a.iso b.iso"; the first is the
# default); by default this build's ISO and unattended-install ISO.
IMAGES ?=

all: deps iso viso iso-autoinstall sdisk

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

# One disk carrying several images and a menu to pick one (docs/boot.md, SDISK).
sdisk: $(if $(IMAGES),bootloader,iso iso-autoinstall bootloader)
	$(MIXBUILD) sdisk $(if $(IMAGES),--images $(IMAGES))

# Boot an image in QEMU, its serial console on this terminal, and a root shell over
# SSH: `mix viso boot` hands SSH_KEY to the guest in a NoCloud seed and forwards a
# free local port (it prints the ssh line). IMAGE: the ISO (default), the VISO or
# an SDISK, left as built (writes go to a temporary file). KVM only where the
# tests' probe proves it works, else TCG. RUN_ARGS: more `mix viso boot` options
# (--uefi, --memory 512, --vram, --print).
VERSION     := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n 1)
IMAGE       ?= artifacts/mixos-$(VERSION).iso
SSH_KEY     ?= $(wildcard $(HOME)/.ssh/id_ed25519.pub)
RUN_ARGS    ?=

run:
	@test -f "$(IMAGE)" || { echo "make run: $(IMAGE) does not exist; run 'make all' (or 'make iso', 'make viso') first" >&2; exit 1; }
	@test -x $(PY) || { echo "make run: $(PY) does not exist; run 'make deps' first" >&2; exit 1; }
	PYTHONPATH=src $(PY) -m mix viso boot "$(IMAGE)" --snapshot \
	    $(if $(SSH_KEY),--ssh-key "$(SSH_KEY)") $(RUN_ARGS)

# The images are built first, so that the unit tests that read them (kernel
# .config, root filesystem chroot checks, ELF hardening) run instead of skipping.
# The VM tests run on two workers (pytest-xdist), a test file each at a time: one
# VM per core under TCG; the 25 slowest steps are listed at the end (CI time budget).
VM_TESTS    := PYTHONPATH=src $(PY) -m pytest -q -n 2 --dist loadfile --durations=25

test: deps iso viso iso-autoinstall sdisk
	PYTHONPATH=src $(PY) -m pytest -q -n 2 tests/unit
	$(VM_TESTS) tests/vm

test-unit: deps
	PYTHONPATH=src $(PY) -m pytest -q -n 2 tests/unit

test-qemu: iso viso iso-autoinstall sdisk
	$(VM_TESTS) tests/vm

# The installed-system VM tests alone: unattended install, disk boot, upgrades.
test-install: iso
	PYTHONPATH=src $(PY) -m pytest -q tests/vm/test_install.py

test-viso: viso
	PYTHONPATH=src $(PY) -m pytest -q tests/vm/test_viso.py tests/vm/test_selfupgrade.py

# The SDISK: each image through the menu, under SeaBIOS and OVMF; mix sdisk.
test-sdisk: sdisk
	PYTHONPATH=src $(PY) -m pytest -q tests/vm/test_sdisk.py

# VRAM from the ISO, the SDISK and the VISO: the boot disk removed while running.
test-vram: iso viso sdisk
	PYTHONPATH=src $(PY) -m pytest -q tests/vm/test_vram.py

clean:
	rm -rf artifacts build
