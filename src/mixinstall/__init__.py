"""MixOS unattended installer."""
