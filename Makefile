# MixOS build. Every target is a thin call into mixbuild (src/mixbuild/).
# Slow stages cache their output under $(MIXOS_CACHE), keyed by their inputs.

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
MIXOS_CACHE ?= /var/cache/mixos
export MIXOS_CACHE
export SOURCE_DATE_EPOCH ?= 1767225600
MIXBUILD    := PYTHONPATH=src $(PY) -m mixbuild

.PHONY: all deps kernel mix-cli packages rootfs initramfs iso \
        test test-unit test-qemu clean

all: deps iso

deps:
	$(PYTHON) src/mixbuild/deps.py --venv $(VENV)

kernel: deps
	$(MIXBUILD) kernel

mix-cli: deps
	$(MIXBUILD) packages --only mix

packages: deps kernel
	$(MIXBUILD) packages

rootfs: packages
	$(MIXBUILD) rootfs

initramfs: deps
	$(MIXBUILD) initramfs

iso: rootfs initramfs
	$(MIXBUILD) iso

# The images are built first, so that the unit tests that read them (kernel
# .config, root filesystem chroot checks, ELF hardening) run instead of skipping.
test: deps iso
	PYTHONPATH=src $(PY) -m pytest -q tests/unit
	PYTHONPATH=src $(PY) -m pytest -q tests/vm

test-unit: deps
	PYTHONPATH=src $(PY) -m pytest -q tests/unit

test-qemu: iso
	PYTHONPATH=src $(PY) -m pytest -q tests/vm

clean:
	rm -rf artifacts build
