"""mixboot: how a MixOS system boots, one owner for every image type.

Runs on the build host (ISO, VISO) and inside MixOS (installer, kernel upgrades),
so it imports only the standard library.
"""
