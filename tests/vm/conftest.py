"""VM test harness: boot MixOS in QEMU and talk to it over SSH.

Fixture API (use these from any tests/vm/test_*.py; mark modules `pytest.mark.vm`):

  mixos_images  (session) Images(iso, kernel, initrd): what is booted. Defaults:
                artifacts/mixos-<version>.iso, artifacts/kernel/bzImage,
                artifacts/initramfs.img; override with MIXOS_ISO, MIXOS_KERNEL,
                MIXOS_INITRD. Missing files fail with the make target to run.
  vm_accel      (session) "kvm" or "tcg", from a real probe boot (qemu.probe_accel);
                MIXOS_ACCEL=tcg|kvm skips the probe.
  ssh_keypair   (session) KeyPair(private, public): an ed25519 key made for the run.
  nocloud_seed  (session) Path of a NoCloud seed disk (vfat, label CIDATA) whose
                user-data authorizes ssh_keypair for root.
  guest         (session) Guest booted from the ISO (default GRUB entry, 256 MiB,
                seed disk attached), logged in over SSH; shared by every test that
                only looks. Don't power it off or change it in ways other tests
                would see. Powered off at the end of the session.
  start_vm      (function) factory: start_vm(boot="iso"|"direct", append="",
                memory_mb=256, seed=True, cmdline_key=False, iso=True, wait_login=True,
                wait_ssh=True, uefi=False, machine=None, iso_media="cdrom") -> Guest.
                "direct" boots kernel+initrd with the ISO's default kernel arguments
                (+ append) on QEMU's microvm machine (qemu.DIRECT_MACHINE;
                machine="q35" for the PC one), the ISO attached as a disk (a CD-ROM
                on q35); "iso" boots the ISO on q35 (iso_media="disk": the ISO as a
                virtio disk, as if written to a USB stick); uefi=True boots with
                OVMF instead of SeaBIOS. Every guest it starts is stopped when the
                test ends.
  boot_metrics  (session) dict: tests record measurements in it; they are printed
                at the end of the run and written to artifacts/vm-metrics.json.

Guest:
  guest.ssh(cmd, timeout=60, check=True) -> CompletedProcess (text; stdout/stderr)
  guest.sh(cmd) -> str                    stdout of a command that must succeed
  guest.ssh_argv(*extra) -> list[str]     the ssh command line (for scp-like uses)
  guest.port, guest.vm (mixbuild.vm.guest.VM: wait_for, type, tail, console, elapsed)
  guest.login_seconds                     QEMU start -> "login:" on the serial console
  guest.ssh_seconds                       QEMU start -> first successful SSH command
  guest.poweroff(timeout=60) -> int       ask the guest to power off, wait for QEMU
Every wait is bounded; a timeout fails with the last 50 console lines.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mixboot import seed
from mixbuild.common import ARTIFACTS
from mixbuild.images import iso as iso_stage
from mixbuild.vm.guest import VM, VMError
from mixbuild.vm.qemu import DIRECT_MACHINE, Machine, free_port, probe_accel

LOGIN_PROMPT = r"login: ?"
# Bounds on every wait. Generous: TCG on a loaded 2-core host can be slow, and a
# boot that is merely slow should report its time, not fail.
LOGIN_TIMEOUT = float(os.environ.get("MIXOS_LOGIN_TIMEOUT", "120"))
SSH_TIMEOUT = 60.0
POWEROFF_TIMEOUT = 60.0


@dataclass(frozen=True)
class Images:
    iso: Path
    kernel: Path
    initrd: Path


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: str


def _image(env: str, default: Path, how: str) -> Path:
    path = Path(os.environ.get(env, default))
    if not path.is_file():
        pytest.fail(f"{path} not found: run '{how}' first (or set {env})", pytrace=False)
    return path


@pytest.fixture(scope="session")
def mixos_images() -> Images:
    iso = ARTIFACTS / f"mixos-{iso_stage.project_version()}.iso"
    return Images(iso=_image("MIXOS_ISO", iso, "make iso"),
                  kernel=_image("MIXOS_KERNEL", ARTIFACTS / "kernel" / "bzImage", "make kernel"),
                  initrd=_image("MIXOS_INITRD", ARTIFACTS / "initramfs.img", "make initramfs"))


@pytest.fixture(scope="session")
def viso_image() -> Path:
    """The VISO (make viso): boot it through an overlay (overlay()), never itself."""
    default = ARTIFACTS / f"mixos-{iso_stage.project_version()}.viso"
    return _image("MIXOS_VISO", default, "make viso")


def overlay(base: Path, path: Path, grow_mib: int = 0, base_format: str = "qcow2") -> Path:
    """A qcow2 overlay of BASE at PATH (writes go to it; BASE stays as built),
    GROW_MIB bigger than BASE when asked (as `qemu-img resize` would make it)."""
    path.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b",
                    str(base.absolute()), str(path)], check=True, capture_output=True)
    if grow_mib:
        subprocess.run(["qemu-img", "resize", "-q", str(path), f"+{grow_mib}M"], check=True,
                       capture_output=True)
    return path


@pytest.fixture(scope="session")
def sdisk_image() -> Path:
    """The SDISK (make sdisk, raw): boot it through an overlay(base_format="raw")."""
    default = ARTIFACTS / f"mixos-{iso_stage.project_version()}.sdisk"
    return _image("MIXOS_SDISK", default, "make sdisk")


@pytest.fixture
def sockets_dir() -> Iterator[Path]:
    """A short directory for QEMU's monitor and QMP sockets (Unix socket names are
    limited to 108 bytes; pytest's temporary paths can be longer)."""
    d = Path(tempfile.mkdtemp(prefix="mixos-sock-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def http_repo() -> Iterator[str]:
    """The build's signed repository (artifacts/repo) served over HTTP on 127.0.0.1;
    the URL the guest reaches it by (QEMU user networking: the host is 10.0.2.2)."""
    from release import serve

    with serve(ARTIFACTS / "repo") as url:
        yield url


@pytest.fixture(scope="session")
def vm_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mixos-vm")


@pytest.fixture(scope="session")
def vm_accel(mixos_images: Images, vm_workdir: Path) -> str:
    return probe_accel(mixos_images.kernel, mixos_images.initrd, log_dir=vm_workdir)


@pytest.fixture(scope="session")
def ssh_keypair(vm_workdir: Path) -> KeyPair:
    key = vm_workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mixos-vm-test",
                    "-f", str(key)], check=True, stdin=subprocess.DEVNULL)
    return KeyPair(private=key, public=key.with_suffix(".pub").read_text().strip())


@pytest.fixture(scope="session")
def nocloud_seed(vm_workdir: Path, ssh_keypair: KeyPair) -> Path:
    return seed.make_seed(vm_workdir / "seed.img", [ssh_keypair.public], hostname="mixos-test")


class Guest:
    """A booted MixOS VM reachable over SSH on 127.0.0.1:port."""

    def __init__(self, vm: VM, port: int, key: Path, user: str = "root") -> None:
        self.vm = vm
        self.port = port
        self.key = key
        self.user = user
        self.login_seconds: float | None = None
        self.ssh_seconds: float | None = None

    def ssh_argv(self, *extra: str) -> list[str]:
        return ["ssh", "-F", "/dev/null", "-i", str(self.key), "-p", str(self.port),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
                "-o", "LogLevel=ERROR", *extra, f"{self.user}@127.0.0.1"]

    def ssh(self, cmd: str, timeout: float = 60, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run([*self.ssh_argv(), cmd], capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ssh command timed out after {timeout} s: {cmd}\n"
                        f"--- console ---\n{self.vm.tail()}", pytrace=False)
        if check and proc.returncode != 0:
            pytest.fail(f"in the guest, {cmd!r} exited {proc.returncode}\nstdout: "
                        f"{proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}", pytrace=False)
        return proc

    def sh(self, cmd: str, timeout: float = 60) -> str:
        return self.ssh(cmd, timeout=timeout).stdout

    def wait_login(self, timeout: float = LOGIN_TIMEOUT) -> float:
        try:
            self.vm.wait_for(LOGIN_PROMPT, timeout)
        except VMError as e:
            pytest.fail(str(e), pytrace=False)
        self.login_seconds = self.vm.elapsed()
        return self.login_seconds

    def wait_ssh(self, timeout: float = SSH_TIMEOUT) -> float:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if not self.vm.running:
                pytest.fail(f"QEMU exited before SSH came up\n{self.vm.tail()}", pytrace=False)
            proc = subprocess.run([*self.ssh_argv("-o", "ConnectTimeout=3"), "true"],
                                  capture_output=True, text=True, timeout=30,
                                  stdin=subprocess.DEVNULL, check=False)
            if proc.returncode == 0:
                self.ssh_seconds = self.vm.elapsed()
                return self.ssh_seconds
            last = proc.stderr.strip()
            time.sleep(0.5)
        pytest.fail(f"no SSH login to 127.0.0.1:{self.port} within {timeout:.0f} s "
                    f"(last error: {last})\n--- last 50 console lines ---\n{self.vm.tail()}",
                    pytrace=False)

    def poweroff(self, timeout: float = POWEROFF_TIMEOUT) -> int:
        # The connection may drop while the guest goes down: the exit status of
        # this command says nothing; QEMU exiting does.
        subprocess.run([*self.ssh_argv(), "poweroff"], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL, check=False)
        try:
            return self.vm.wait_exit(timeout)
        except VMError as e:
            pytest.fail(str(e), pytrace=False)

    def stop(self) -> None:
        """Power off politely if possible, else kill QEMU (teardown). A guest logged
        in as another user than root cannot power off: killed at once."""
        if self.vm.running and self.user == "root":
            try:
                proc = subprocess.run([*self.ssh_argv("-o", "ConnectTimeout=3"), "poweroff"],
                                      capture_output=True, text=True, timeout=15,
                                      stdin=subprocess.DEVNULL, check=False)
                # Wait only when poweroff ran (the connection may drop as the guest
                # goes down); a guest without SSH (rescue shell, GRUB) is killed at once.
                if proc.returncode == 0 or "closed by remote host" in proc.stderr:
                    self.vm.wait_exit(20)
            except (VMError, subprocess.TimeoutExpired):
                pass
        self.vm.kill()


StartVM = Callable[..., Guest]


def _boot(images: Images, accel: str, workdir: Path, key: KeyPair, seed: Path, *,
          boot: str = "iso", append: str = "", memory_mb: int = 256, with_seed: bool = True,
          cmdline_key: bool = False, with_iso: bool = True, wait_login: bool = True,
          wait_ssh: bool = True, uefi: bool = False, monitor: bool = False,
          machine_type: str | None = None, iso_media: str = "cdrom",
          name: str = "guest", forwards: tuple[tuple[int, int], ...] = ()) -> Guest:
    if boot not in ("iso", "direct"):
        raise ValueError(f"boot must be 'iso' or 'direct', not {boot!r}")
    port = free_port()
    # A short path: Unix socket names are limited to 108 bytes.
    mon = Path(tempfile.mkdtemp(prefix="mixos-mon-")) / "hmp" if monitor else None
    extra = append
    if cmdline_key:
        encoded = base64.b64encode(key.public.encode()).decode()
        extra = f"{extra} mixos.ssh_key={encoded}".strip()
    if boot == "iso":
        machine = Machine(memory_mb=memory_mb, accel=accel, iso=images.iso, ssh_port=port,
                          iso_media=iso_media, disks=(seed,) if with_seed else (), uefi=uefi,
                          monitor=mon, forwards=forwards)
    else:
        machine = Machine(memory_mb=memory_mb, accel=accel, kernel=images.kernel,
                          initrd=images.initrd, machine=machine_type or DIRECT_MACHINE,
                          append=iso_stage.kernel_args(f"{iso_stage.entry_args('normal')} {extra}"),
                          iso=images.iso if with_iso else None, ssh_port=port,
                          disks=(seed,) if with_seed else (), uefi=uefi, monitor=mon,
                          forwards=forwards)
    vm = VM(machine, workdir / f"{name}-{port}.console.log").start()
    guest = Guest(vm, port, key.private)
    try:
        if wait_login:
            guest.wait_login()
        if wait_ssh:
            guest.wait_ssh()
    except BaseException:
        vm.kill()
        raise
    return guest


@pytest.fixture
def start_vm(mixos_images: Images, vm_accel: str, vm_workdir: Path, ssh_keypair: KeyPair,
             nocloud_seed: Path, request: pytest.FixtureRequest) -> Iterator[StartVM]:
    started: list[Guest] = []

    def start(boot: str = "iso", *, append: str = "", memory_mb: int = 256, seed: bool = True,
              cmdline_key: bool = False, iso: bool = True, wait_login: bool = True,
              wait_ssh: bool = True, uefi: bool = False, monitor: bool = False,
              machine: str | None = None, iso_media: str = "cdrom") -> Guest:
        guest = _boot(mixos_images, vm_accel, vm_workdir, ssh_keypair, nocloud_seed,
                      boot=boot, append=append, memory_mb=memory_mb, with_seed=seed,
                      cmdline_key=cmdline_key, with_iso=iso, wait_login=wait_login,
                      wait_ssh=wait_ssh, uefi=uefi, monitor=monitor, machine_type=machine,
                      iso_media=iso_media, name=request.node.name)
        started.append(guest)
        return guest

    yield start
    for guest in started:
        guest.stop()
        if guest.vm.machine.monitor is not None:
            shutil.rmtree(guest.vm.machine.monitor.parent, ignore_errors=True)


StartMachine = Callable[..., Guest]


@pytest.fixture
def start_machine(vm_workdir: Path, ssh_keypair: KeyPair, vm_accel: str,
                  request: pytest.FixtureRequest) -> Iterator[StartMachine]:
    """factory: start_machine(machine_fn, user="root", key=None, wait_login=True,
    wait_ssh=True, name=None) -> Guest. MACHINE_FN(port, accel) returns the Machine
    to boot (any disks, firmware); the guest is stopped when the test ends."""
    started: list[Guest] = []

    def start(machine_fn: Callable[[int, str], Machine], *, user: str = "root",
              key: Path | None = None, wait_login: bool = True, wait_ssh: bool = True,
              name: str | None = None) -> Guest:
        port = free_port()
        vm = VM(machine_fn(port, vm_accel),
                vm_workdir / f"{name or request.node.name}-{port}.console.log").start()
        guest = Guest(vm, port, key or ssh_keypair.private, user=user)
        started.append(guest)
        if wait_login:
            guest.wait_login()
        if wait_ssh:
            guest.wait_ssh()
        return guest

    yield start
    for guest in started:
        guest.stop()


_METRICS: dict[str, object] = {}


@pytest.fixture(scope="session")
def boot_metrics() -> dict[str, object]:
    return _METRICS


@pytest.fixture(scope="session")
def guest(mixos_images: Images, vm_accel: str, vm_workdir: Path, ssh_keypair: KeyPair,
          nocloud_seed: Path, boot_metrics: dict[str, object]) -> Iterator[Guest]:
    g = _boot(mixos_images, vm_accel, vm_workdir, ssh_keypair, nocloud_seed, boot="iso",
              name="session-guest")
    boot_metrics["accel"] = vm_accel
    boot_metrics["iso_login_prompt_s"] = round(g.login_seconds or 0, 2)
    boot_metrics["iso_ssh_ready_s"] = round(g.ssh_seconds or 0, 2)
    yield g
    g.stop()


def _worker_metrics_files() -> list[Path]:
    return sorted(ARTIFACTS.glob(".vm-metrics-*.json"))


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):
        for stale in _worker_metrics_files():
            stale.unlink(missing_ok=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist (make test runs the VM tests on two workers, one VM each)
    every worker hands its measurements to the controller through a file."""
    worker = getattr(session.config, "workerinput", None)
    if worker is not None and _METRICS:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f".vm-metrics-{worker['workerid']}.json").write_text(json.dumps(_METRICS))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for part in _worker_metrics_files():
        _METRICS.update(json.loads(part.read_text()))
        part.unlink()
    if not _METRICS:
        return
    terminalreporter.section("MixOS boot measurements")
    for key, value in sorted(_METRICS.items()):
        terminalreporter.write_line(f"{key:32} {value}")
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "vm-metrics.json").write_text(json.dumps(_METRICS, indent=2) + "\n")
    except OSError as e:
        terminalreporter.write_line(f"(could not write artifacts/vm-metrics.json: {e})")

