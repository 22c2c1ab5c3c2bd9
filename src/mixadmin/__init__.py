"""Administration commands of a running MixOS: mixos-service (supervised services) and
the rule logic of mixos-firewall allow/deny/list. Target side: standard library only."""
