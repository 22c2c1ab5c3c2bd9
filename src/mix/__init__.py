"""mix: the MixOS package manager."""

__version__ = "0.1.0"
