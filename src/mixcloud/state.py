"""What mixos-cloud remembers, and what it tells.

  /var/lib/mixos-cloud/instance              the id of the instance last set up
  /var/lib/mixos-cloud/instances/ID/done/S   step S ran for instance ID (per-instance
                                             steps run once: a reboot finds the mark,
                                             a new instance id has none)
  /var/lib/mixos-cloud/instances/ID/user-data  the user-data applied (mode 0600)
  /run/mixos-cloud/status.json               this boot: running, done or failed, and
                                             the steps that failed (mixos-cloud status)
  /run/mixos-cloud/disabled                  this boot had nothing to read (S25cloud)
  /var/log/cloud-init.log                    every step, with its time and outcome
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

STATE = "var/lib/mixos-cloud"
STATUS = "run/mixos-cloud/status.json"
# Left by /etc/init.d/S25cloud when the boot had no seed and no mixos.* keys.
DISABLED_MARK = "run/mixos-cloud/disabled"
LOG = "var/log/cloud-init.log"
RUNNING, DONE, FAILED, DISABLED = "running", "done", "failed", "disabled"


@dataclass
class Run:
    """One stage's run: where it writes (ROOT, "/" on the target) and what happened."""

    root: Path
    stage: str
    instance_id: str = ""
    datasource: str = ""
    failures: list[dict[str, str]] = field(default_factory=list)
    console: bool = True  # short lines to stdout (the boot console) as well

    def log(self, message: str, *, loud: bool = False) -> None:
        path = self.root / LOG
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        with open(path, "a") as f:
            f.write(f"{stamp} mixos-cloud[{self.stage}]: {message}\n")
        if loud and self.console:
            print(f"cloud: {message}", flush=True)

    def fail(self, step: str, error: str) -> None:
        self.failures.append({"stage": self.stage, "step": step, "error": error})
        self.log(f"{step}: FAILED: {error}", loud=True)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run a step: logged with its time; an exception fails this step only."""
        start = time.monotonic()
        self.log(f"{name}: start")
        try:
            yield
        except Exception as e:  # noqa: BLE001 - one failing step must not stop the others
            self.fail(name, str(e) or type(e).__name__)
        else:
            self.log(f"{name}: done in {time.monotonic() - start:.2f} s")

    # --- per-instance marks
    def instance_dir(self) -> Path:
        return self.root / STATE / "instances" / self.instance_id

    def ran(self, step: str) -> bool:
        return (self.instance_dir() / "done" / step).exists()

    def mark(self, step: str) -> None:
        d = self.instance_dir() / "done"
        d.mkdir(parents=True, exist_ok=True)
        (d / step).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))

    @contextmanager
    def once(self, name: str) -> Iterator[bool]:
        """A per-instance step: yields whether to run it; marked done only when it
        ran without an exception (a failed step is tried again next boot)."""
        if not self.instance_id:
            yield False
            return
        if self.ran(name):
            self.log(f"{name}: already done for instance {self.instance_id}")
            yield False
            return
        before = len(self.failures)
        with self.step(name):
            yield True
        if len(self.failures) == before:
            self.mark(name)

    # --- status
    def write_status(self, status: str) -> None:
        path = self.root / STATUS
        path.parent.mkdir(parents=True, exist_ok=True)
        previous = read_status(self.root) or {}
        kept = previous.get("failures", [])
        failures = [f for f in kept if f.get("stage") != self.stage] \
            if isinstance(kept, list) else []
        data = {"status": status, "stage": self.stage,
                "instance_id": self.instance_id or previous.get("instance_id", ""),
                "datasource": self.datasource or previous.get("datasource", ""),
                "failures": failures + self.failures}
        if status == DONE and data["failures"]:
            data["status"] = FAILED
        tmp = path.with_name(".status.json.new")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)


def read_status(root: Path) -> dict[str, object] | None:
    if (root / DISABLED_MARK).exists():
        return {"status": DISABLED, "failures": [],
                "reason": "no seed disk, no ds=nocloud;s=URL, no mixos.ssh_key= or "
                          "mixos.hostname= at boot"}
    try:
        data: dict[str, object] = json.loads((root / STATUS).read_text())
        return data
    except (FileNotFoundError, ValueError):
        return None


def previous_instance(root: Path) -> str:
    try:
        return (root / STATE / "instance").read_text().strip()
    except FileNotFoundError:
        return ""


def set_instance(root: Path, instance_id: str) -> None:
    path = root / STATE / "instance"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    path.write_text(instance_id + "\n")
