"""MixOS image builder (build host only)."""
