"""The two stages of a boot, and which step runs when.

  local  (/etc/init.d/S25cloud: after the firewall, before the network and sshd)
         per boot:      find the seed; host name; network-config; bootcmd;
                        the kernel command line's mixos.ssh_key= and mixos.hostname=
         per instance:  /etc/hostname, users and SSH keys, write_files, timezone,
                        ntp, ssh_pwauth
  final  (/etc/init.d/S92cloud-final, in the background, once the network is up)
         (a `ds=nocloud;s=URL` seed is fetched here, then its local steps run)
         per instance:  packages (mix), doas rules, deferred write_files, runcmd,
                        a "#!" user-data script, power_state
         per boot:      final_message, the status (done or failed)

A step that fails is logged and recorded in the status; the others still run,
and a failed per-instance step is tried again at the next boot. User-data that
does not parse or validate is not applied at all (a "user-data" failure); the
seed's instance id, host name and network, and the kernel command line, still are.
"""

from __future__ import annotations

import base64
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mixcloud import accounts, commands, datasource, files, state, system, userdata
from mixcloud.datasource import Seed
from mixcloud.state import Run
from mixcloud.userdata import CloudConfig, UserDataError

SAFE_ID = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
NETWORK_WAIT_S = 60.0
VERSION = "0.1"


@dataclass(frozen=True)
class Cmdline:
    """What mixos-cloud reads on the kernel command line."""

    ssh_keys: tuple[str, ...] = ()
    bad_keys: int = 0
    hostname: str = ""
    seed_url: str | None = None

    @classmethod
    def parse(cls, text: str) -> Cmdline:
        keys, bad, host = [], 0, ""
        for arg in text.split():
            if arg.startswith("mixos.ssh_key="):
                try:
                    key = base64.b64decode(arg.split("=", 1)[1], validate=True).decode().strip()
                except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
                    key = ""
                if key and "\n" not in key:
                    keys.append(key)
                else:
                    bad += 1
            elif arg.startswith("mixos.hostname="):
                host = arg.split("=", 1)[1]
        return cls(tuple(keys), bad, host, datasource.cmdline_url(text))


class Machine:
    """What the stages do to the running system beyond its files (the kernel's
    host name, interfaces, finding the seed): one place, so that the file-level
    steps can be run on a directory."""

    def find_seed(self) -> Seed | None:
        return datasource.find_disk()

    def fetch_seed(self, url: str) -> Seed:
        return datasource.read_url(url)

    def set_hostname(self, name: str) -> None:
        system.set_kernel_hostname(name)

    def ip(self, args: list[str]) -> None:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")

    def wait_network(self, timeout: float) -> bool:
        """Until there is a default route (udhcpc got a lease, or a static one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                routes = Path("/proc/net/route").read_text().splitlines()[1:]
            except OSError:
                routes = []
            if any(r.split()[1] == "00000000" for r in routes if len(r.split()) > 1):
                return True
            time.sleep(0.5)
        return False


def parse_user_data(run: Run, seed: Seed, *, record: bool) -> CloudConfig | None:
    try:
        config = userdata.parse(seed.user_data)
    except UserDataError as e:
        if record:
            run.fail("user-data", f"{e}; nothing of the user-data was applied")
        return None
    if record and config.unknown:
        run.log(f"user-data: keys not supported by MixOS, ignored: {', '.join(config.unknown)}",
                loud=True)
    return config


def _instance(run: Run, seed: Seed) -> None:
    if not seed.instance_id or not set(seed.instance_id) <= SAFE_ID or \
            seed.instance_id.startswith("."):
        raise datasource.SeedError(f"instance-id {seed.instance_id!r}: use letters, digits "
                                   "and . _ : - only")
    run.instance_id = seed.instance_id
    run.datasource = seed.datasource
    previous = state.previous_instance(run.root)
    if previous != seed.instance_id:
        run.log(f"new instance {seed.instance_id} (previous: {previous or 'none'}): "
                "per-instance steps run", loud=True)
        state.set_instance(run.root, seed.instance_id)
    else:
        run.log(f"instance {seed.instance_id} (set up before)")
    d = run.instance_dir()
    d.mkdir(parents=True, exist_ok=True)
    (d / "user-data").write_bytes(seed.user_data)
    (d / "user-data").chmod(0o600)
    for note in seed.notes:
        run.log(note)


def _hostname(run: Run, seed: Seed, config: CloudConfig, machine: Machine, cmdline: Cmdline
              ) -> None:
    if config.preserve_hostname or cmdline.hostname:
        return
    short, full = system.choose_hostname(config.hostname, config.fqdn, seed.local_hostname)
    if not short:
        return
    with run.step("hostname"):
        if not userdata.HOSTNAME.match(short):
            raise ValueError(f"meta-data local-hostname {short!r} is not a host name")
        machine.set_hostname(short)
    with run.once("hostname-files") as go:
        if go:
            system.write_hostname(run.root, short, full)
            run.log(f"host name {short}" + (f" ({full})" if full else ""))


def _network(run: Run, seed: Seed, machine: Machine, sys_net: Path) -> None:
    if seed.network_config is None:
        return
    from mixcloud import network  # ipaddress and the parsers: only for a network-config
    with run.step("network"):
        config = network.parse(seed.network_config)
        if config is None:
            run.log("network-config says config: disabled: the system's own network")
            return
        ip_cmds, conf, warnings = network.plan(config, sys_net)
        for w in warnings:
            run.log(f"network: {w}", loud=True)
        if not conf:
            run.log("network: nothing of network-config applies here: DHCP as usual")
            return
        for args in ip_cmds:
            run.log("ip " + " ".join(args))
            machine.ip(args)
        path = run.root / network.RUN_CONF
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(conf)
        resolv = network.resolv_conf(config)
        if resolv:
            (run.root / "etc/resolv.conf").unlink(missing_ok=True)
            (run.root / "etc/resolv.conf").write_text(resolv)


def _per_instance_local(run: Run, seed: Seed, config: CloudConfig) -> None:
    with run.once("users") as go:
        if go:
            for line in accounts.apply_users(run.root, config.users, int(time.time()) // 86400):
                run.log(line)
            root_keys = config.ssh_authorized_keys + seed.public_keys
            if root_keys:
                n = accounts.authorize(run.root, "/root", root_keys, 0, 0)
                run.log(f"root: {n} SSH key(s) added", loud=True)
            default = [u for u in config.users if u.name == userdata.DEFAULT_USER]
            if default and root_keys:
                accounts.apply_users(run.root, (userdata.User(
                    name=default[0].name, ssh_keys=root_keys, lock_passwd=default[0].lock_passwd,
                    hashed_passwd=default[0].hashed_passwd),), int(time.time()) // 86400)
            if config.users:
                run.log(f"users: {', '.join(u.name for u in config.users)}", loud=True)
    if any(not f.defer for f in config.write_files):
        with run.once("write_files") as go:
            if go:
                for f in config.write_files:
                    if not f.defer:
                        files.write(run.root, f)
                        run.log(f"wrote {f.path} ({len(f.content)} bytes, "
                                f"{f.permissions:04o}, {f.owner})")
    if config.timezone:
        with run.once("timezone") as go:
            if go:
                warning = system.timezone(run.root, config.timezone)
                if warning:
                    run.log(warning, loud=True)
    if config.ntp_servers:
        with run.once("ntp") as go:
            if go:
                system.ntp_servers(run.root, config.ntp_servers)
    with run.once("ssh_pwauth") as go:
        if go:
            allowed = config.ssh_pwauth and accounts.has_password(config.users)
            if config.ssh_pwauth and not allowed:
                run.log("ssh_pwauth: true ignored: no user has a password hash "
                        "(hashed_passwd with lock_passwd: false)", loud=True)
            system.ssh_pwauth(run.root, allowed)


def apply_local(run: Run, seed: Seed, machine: Machine, cmdline: Cmdline, *,
                with_network: bool = True, sys_net: Path = Path("/sys/class/net")) -> None:
    with run.step("instance"):
        _instance(run, seed)
    if not run.instance_id:
        return
    config = parse_user_data(run, seed, record=True)
    _hostname(run, seed, config or CloudConfig(), machine, cmdline)
    if with_network:
        _network(run, seed, machine, sys_net)
    if config is None:
        return
    _per_instance_local(run, seed, config)
    if config.bootcmd:
        with run.step("bootcmd"):
            failed = commands.run_all(config.bootcmd, run.log, "bootcmd",
                                      {"INSTANCE_ID": run.instance_id})
            if failed:
                raise RuntimeError("; ".join(failed))


def apply_cmdline(run: Run, cmdline: Cmdline, machine: Machine) -> None:
    with run.step("kernel-command-line"):
        if cmdline.ssh_keys:
            n = accounts.authorize(run.root, "/root", cmdline.ssh_keys, 0, 0)
            run.log(f"{len(cmdline.ssh_keys)} SSH key(s) from the kernel command line "
                    f"({n} new)", loud=True)
        if cmdline.bad_keys:
            run.log(f"{cmdline.bad_keys} mixos.ssh_key= value(s) are not base64 of one key "
                    "line: ignored", loud=True)
        if cmdline.hostname:
            if not userdata.HOSTNAME.match(cmdline.hostname):
                raise ValueError(f"mixos.hostname={cmdline.hostname!r} is not a host name")
            machine.set_hostname(cmdline.hostname)


def local(root: Path, cmdline_text: str, machine: Machine) -> Run:
    run = Run(root, "local")
    run.write_status(state.RUNNING)
    cmdline = Cmdline.parse(cmdline_text)
    seed: Seed | None = None
    with run.step("datasource"):
        seed = machine.find_seed()
        if seed is not None:
            run.log(f"seed: {seed.datasource}, instance {seed.instance_id}", loud=True)
            seed.save(root / datasource.SEED_DIR)
        elif cmdline.seed_url:
            run.log(f"seed: NoCloud at {cmdline.seed_url}, read once the network is up")
        else:
            run.log("no seed (no cidata or config-2 disk, no ds=nocloud;s=URL)")
    if seed is not None:
        apply_local(run, seed, machine, cmdline)
    apply_cmdline(run, cmdline, machine)
    run.write_status(state.RUNNING)
    return run


def final(root: Path, cmdline_text: str, machine: Machine) -> Run:
    started = time.monotonic()
    run = Run(root, "final")
    status = state.read_status(root) or {}
    run.write_status(state.RUNNING)
    cmdline = Cmdline.parse(cmdline_text)
    seed = Seed.load(root / datasource.SEED_DIR)
    if seed is None and cmdline.seed_url:
        with run.step("datasource-url"):
            if not machine.wait_network(NETWORK_WAIT_S):
                raise RuntimeError(f"no network after {NETWORK_WAIT_S:.0f} s: cannot fetch "
                                   f"the seed at {cmdline.seed_url}")
            seed = machine.fetch_seed(cmdline.seed_url)
            seed.save(root / datasource.SEED_DIR)
            run.log(f"seed: {seed.datasource}, instance {seed.instance_id}", loud=True)
        if seed is not None:
            # Its network-config cannot apply: the network is up already.
            apply_local(run, seed, machine, cmdline, with_network=False)
    elif seed is not None:
        run.instance_id = str(status.get("instance_id") or seed.instance_id)
        run.datasource = seed.datasource
    config = parse_user_data(run, seed, record=False) if seed and run.instance_id else None
    power = None
    if config is not None:
        rules = accounts.doas_rules(config.users)
        wanted = config.packages
        if rules and not (root / "usr/bin/doas").exists() and "doas" not in wanted:
            wanted += ("doas",)  # MixOS's privilege tool, for the sudo: rules
        if wanted or config.package_update or config.package_upgrade:
            with run.once("packages") as go:
                if go:
                    commands.packages(wanted, config.package_update, config.package_upgrade,
                                      run.log)
                    run.log(f"packages installed: {', '.join(wanted) or 'none'}", loud=True)
        with run.once("doas") as go:
            if go:
                accounts.apply_doas(root, rules)
                if rules:
                    run.log(f"doas rules: {'; '.join(rules)}")
        if any(f.defer for f in config.write_files):
            with run.once("write_files-deferred") as go:
                if go:
                    for f in config.write_files:
                        if f.defer:
                            files.write(root, f)
                            run.log(f"wrote {f.path} (deferred)")
        env = {"INSTANCE_ID": run.instance_id}
        if config.runcmd:
            with run.once("runcmd") as go:
                if go:
                    failed = commands.run_all(config.runcmd, run.log, "runcmd", env)
                    if failed:
                        raise RuntimeError("; ".join(failed))
        if config.script:
            with run.once("user-data-script") as go:
                if go:
                    code = commands.run_script(config.script, run.log, env)
                    if code != 0:
                        raise RuntimeError(f"the user-data script exited {code}")
        power = config.power_state
        message = config.final_message or \
            "mixos-cloud $VERSION finished at $TIMESTAMP. Datasource $DATASOURCE. Up $UPTIME s"
        run.log(final_message(message, run, started), loud=True)
    run.write_status(state.DONE)
    if power is not None:
        with run.once("power_state") as go:
            if go:
                commands.power(power, run.log)
    return run


def final_message(template: str, run: Run, started: float) -> str:
    try:
        uptime = Path("/proc/uptime").read_text().split()[0]
    except OSError:
        uptime = f"{time.monotonic() - started:.2f}"
    values = {"$UPTIME": uptime, "$TIMESTAMP": time.strftime("%a, %d %b %Y %H:%M:%S +0000",
                                                               time.gmtime()),
              "$VERSION": VERSION, "$DATASOURCE": run.datasource,
              "$INSTANCE_ID": run.instance_id}
    for k, v in values.items():
        template = template.replace(k, v)
        template = template.replace("${" + k[1:] + "}", v)
    return template
