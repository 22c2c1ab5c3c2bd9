"""mixos-cloud: MixOS's reader of cloud-init seeds (docs/boot.md, "Cloud-init").

A seed (a NoCloud disk or URL, or an OpenStack config drive) hands a VM its
instance id, host name, user-data (#cloud-config) and network configuration;
mixos-cloud applies the common subset of cloud-config at boot, once per instance.

  datasource  finds and reads the seed (NoCloud, ConfigDrive, kernel command line)
  userdata    parses and validates #cloud-config into frozen values
  network     network-config version 1 and 2, applied with ip(8)
  accounts    users, groups, SSH keys, passwords, doas rules
  system      host name, time zone, NTP servers, sshd password logins
  files       write_files
  commands    bootcmd, runcmd, packages (through mix), power_state
  state       per-instance state, the log and `mixos-cloud status`
  stages      what runs at which boot stage (local: before the network; final)
"""
