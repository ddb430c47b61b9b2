"""Who a run is: its id, its labels, and what tells a later run whether its owner is dead.

The run id is made once, by the xdist controller or the lone pytest process, and labels everything
the run makes, together with what tells a later run whether its owner is *known* dead: host name,
PID namespace, boot id, pid and the process's start time.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

LABEL_PREFIX = "pytest-testserver."
LABEL_RUN = LABEL_PREFIX + "run"
LABEL_SERVER = LABEL_PREFIX + "server"
LABEL_PID = LABEL_PREFIX + "pid"
LABEL_HOST = LABEL_PREFIX + "host"
LABEL_PIDNS = LABEL_PREFIX + "pidns"
LABEL_BOOT = LABEL_PREFIX + "boot"
LABEL_STARTED = LABEL_PREFIX + "started"
LABEL_KEPT = LABEL_PREFIX + "kept"
LABEL_LEASE_TTL = LABEL_PREFIX + "lease-ttl"
LABEL_LEASE = LABEL_PREFIX + "lease"
DEFAULT_LEASE_TTL = 90
LEASE_TTL_ENV = "TESTSERVER_LEASE_TTL"


def new_run_id() -> str:
    # What secrets.token_hex does, without importing hmac and OpenSSL's hashlib at start-up.
    return os.urandom(5).hex()


def project_digest(root: str) -> str:
    """Names a project by its root folder, however reached (symlinks, relative paths): built
    images carry it, so --testserver-prune touches only this project's."""
    import hashlib  # not at start-up: see new_run_id

    return hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:16]


def lease_ttl() -> int:
    """Seconds a run's lease counts as alive: 90, or ``$TESTSERVER_LEASE_TTL`` (tests use a few)."""
    number = plain_number(os.environ.get(LEASE_TTL_ENV, ""), 86400)
    return max(number, 3) if number is not None else DEFAULT_LEASE_TTL


def plain_number(text: str, limit: int) -> int | None:
    """An ASCII decimal number below ``limit`` (labels can be forged: "²" or 2**70 is None)."""
    if not (text.isascii() and text.isdecimal()) or len(text) > len(str(limit)):
        return None
    number = int(text)
    return number if number < limit else None


def _read_small(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode("ascii", "replace").strip()
    except OSError:
        return ""


def pid_namespace() -> str:
    """The inode of this process's PID namespace ("" where there is none to read)."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def boot_id() -> str:
    return _read_small("/proc/sys/kernel/random/boot_id")


def process_start(pid: int) -> str:
    """When ``pid`` started, in clock ticks since boot: a reused pid has another ("" unknown)."""
    text = _read_small(f"/proc/{pid}/stat")
    # The command name (field 2) may hold spaces and parentheses: count from the last ")".
    fields = text[text.rfind(")") + 1 :].split()
    return fields[19] if len(fields) > 19 else ""


@dataclass(frozen=True)
class Owner:
    """The process that owns a run, described well enough to know, from anywhere, if it died."""

    host: str
    pid: int
    pidns: str
    boot: str
    started: str

    @classmethod
    def this_process(cls) -> Owner:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, pid_namespace(), boot_id(), process_start(pid))

    def labels(self) -> dict[str, str]:
        return {
            LABEL_HOST: self.host,
            LABEL_PID: str(self.pid),
            LABEL_PIDNS: self.pidns,
            LABEL_BOOT: self.boot,
            LABEL_STARTED: self.started,
        }

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Owner | None:
        pid = plain_number(labels.get(LABEL_PID, ""), 1 << 31)
        if pid is None:
            return None
        return cls(
            labels.get(LABEL_HOST, ""),
            pid,
            labels.get(LABEL_PIDNS, ""),
            labels.get(LABEL_BOOT, ""),
            labels.get(LABEL_STARTED, ""),
        )

    def known_dead(self, here: Owner | None = None) -> bool:
        """True only when this machine can see for sure that the owner is gone.

        Same host name, PID namespace and boot as this process (a job container sharing the
        engine, another PID namespace, another host: not ours to judge), and the pid gone or now
        a different process (its start time changed).
        """
        here = here or Owner.this_process()
        same_place = (self.host, self.pidns, self.boot) == (here.host, here.pidns, here.boot)
        if not (same_place and self.pidns and self.boot and self.started):
            return False
        if not pid_alive(self.pid):
            return True
        started = process_start(self.pid)
        return bool(started) and started != self.started


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False  # gone, or a number no process can have
    except PermissionError:
        return True  # someone else's live process
    return True


@dataclass(frozen=True)
class RunContext:
    """The identity of one test run, as seen from one of its processes."""

    run_id: str
    owner: Owner = field(default_factory=Owner.this_process)  # the controller, or this process
    worker: str | None = None  # xdist worker id ("gw0"); None outside workers
    kept: bool = False  # --testserver-keep: what the run makes outlives it, never reaped
    lease_ttl: int = 0  # seconds a lease of this run counts as alive (0: no lease)
    state_dir: str | None = None  # the run's private folder, as the controller chose it

    def labels(self, server: str | None = None) -> dict[str, str]:
        labels = {LABEL_RUN: self.run_id, **self.owner.labels()}
        if self.lease_ttl:
            labels[LABEL_LEASE_TTL] = str(self.lease_ttl)
        if self.kept:
            labels[LABEL_KEPT] = "1"
        if server is not None:
            labels[LABEL_SERVER] = server
        return labels

    def scoped(self, share: str) -> str:
        """The name prefix for a server of this ``share`` mode: per run, or per worker."""
        if share == "worker" and self.worker:
            return f"testserver-{self.run_id}-{self.worker}"
        return f"testserver-{self.run_id}"
