"""Container options: user, working_dir, entrypoint, tmpfs, capabilities, shm_size, ulimits,
sysctls and healthcheck, parsed once into a frozen ``ContainerOptions``.

Every value is checked here against a fixed grammar or list; what leaves this module is the
docker-py arguments those values make (``create_kwargs``, ``host_config_kwargs``), never a
free-form option string. A plain module: it imports neither pytest nor docker.

The one deliberate loosening is ``cap_add``: only capabilities confined to the container's own
namespaces and resources may be added (``CAP_ADD_ALLOWED``); those that reach the host kernel,
its devices, clock or security policy are refused with the reason (``CAP_ADD_REFUSED``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from . import validate as v
from .validate import Where

OPTION_KEYS = (
    "user",
    "working_dir",
    "entrypoint",
    "tmpfs",
    "cap_add",
    "cap_drop",
    "shm_size",
    "ulimits",
    "sysctls",
    "healthcheck",
)
TMPFS_KEYS = ("path", "size", "mode")
HEALTHCHECK_KEYS = ("test", "interval", "timeout", "retries", "start_period")
ULIMIT_KEYS = ("soft", "hard")

# Docker's default set: adding one back matters after cap_drop: [ALL], and under Podman, whose
# default set is smaller (no NET_RAW, MKNOD, AUDIT_WRITE).
DOCKER_DEFAULT_CAPS = (
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
)
# Beyond the default set, what real servers ask for, each confined to the container: its own
# network namespace (NET_ADMIN: squid's transparent proxy, dante), its own processes' priority
# and limits (SYS_NICE: cyrus; SYS_RESOURCE), its own memory locks and IPC objects, leases on
# its own files.
CAP_ADD_ALLOWED = (
    *DOCKER_DEFAULT_CAPS,
    "IPC_LOCK",
    "IPC_OWNER",
    "LEASE",
    "NET_ADMIN",
    "NET_BROADCAST",
    "SYS_NICE",
    "SYS_RESOURCE",
)
# Why each other capability is refused: it reaches beyond the container.
CAP_ADD_REFUSED = {
    "AUDIT_CONTROL": "it changes the host kernel's audit rules",
    "AUDIT_READ": "it reads the host kernel's audit log",
    "BLOCK_SUSPEND": "it can keep the host from suspending",
    "BPF": "it loads BPF programs into the host kernel",
    "CHECKPOINT_RESTORE": "it can checkpoint and restore processes, choosing their pids",
    "DAC_READ_SEARCH": "open_by_handle_at reads any file of the host (the 'shocker' escape)",
    "LINUX_IMMUTABLE": "it makes files that even root cannot change or remove",
    "MAC_ADMIN": "it changes the host's AppArmor or SELinux policy",
    "MAC_OVERRIDE": "it overrides the host's AppArmor or SELinux policy",
    "PERFMON": "it observes the host kernel and other processes through perf",
    "SYSLOG": "it reads and clears the host kernel's log, with kernel addresses",
    "SYS_ADMIN": "it mounts filesystems and makes namespaces: the classic container escape",
    "SYS_BOOT": "it reboots the host or loads a new kernel",
    "SYS_MODULE": "it loads modules into the host kernel",
    "SYS_PACCT": "it turns the host kernel's process accounting on and off",
    "SYS_PTRACE": "it traces and injects code into other processes",
    "SYS_RAWIO": "it reaches the host's I/O ports and raw devices",
    "SYS_TIME": "it sets the host's clock (the clock is not namespaced)",
    "SYS_TTY_CONFIG": "it configures the host's terminals",
    "WAKE_ALARM": "it sets alarms that wake the host",
}
CAPABILITIES = (*CAP_ADD_ALLOWED, *CAP_ADD_REFUSED)

# Docker's ulimit names (the setrlimit resources without RLIMIT_).
ULIMIT_NAMES = (
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
)
MAX_LIMIT = 2**63 - 1
UNLIMITED = -1  # Docker's word for RLIM_INFINITY

# The IPC sysctls the kernel keeps per IPC namespace (Docker allows exactly these and fs.mqueue.*)
IPC_SYSCTLS = (
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shm_rmid_forced",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
)
# net.* is per network namespace, except net.core.*, which is the host's but for these.
NET_CORE_NAMESPACED = ("net.core.somaxconn", "net.core.xfrm_")
MAX_SYSCTL_VALUE = 256
_SYSCTL_NAME = re.compile(r"[a-z0-9_]+(?:\.[A-Za-z0-9_-]+)+", re.ASCII)

_USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", re.ASCII)
_ID = re.compile(r"[0-9]{1,10}", re.ASCII)
MAX_ID = 2**32 - 2  # (uid_t)-1 means "no change"

_SIZE = re.compile(r"([1-9][0-9]{0,12})([kmg])", re.ASCII | re.IGNORECASE)
SIZE_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MIN_SIZE = 4 << 10  # one page
MAX_SIZE = 16 << 30  # in memory: more is a mistake for a test server

MIN_HEALTH_DURATION = 0.001  # the engine's minimum: 1 ms
DEFAULT_HEALTH_INTERVAL = 1.0  # not Docker's 30 s: readiness waits on the first check


@dataclass(frozen=True)
class Tmpfs:
    path: str
    size: int | None = None  # bytes
    mode: int | None = None

    def describe(self) -> str:
        shown = [f"size {size_text(self.size)}"] if self.size is not None else []
        shown += [f"mode {self.mode:04o}"] if self.mode is not None else []
        return f"{self.path} ({', '.join(shown)})" if shown else self.path

    def options(self) -> str:
        """The engine's tmpfs data: size and mode only (it adds noexec, nosuid, nodev)."""
        parts = []
        if self.size is not None:
            parts.append(f"size={self.size}")
        if self.mode is not None:
            parts.append(f"mode={self.mode:o}")
        return ",".join(parts)


@dataclass(frozen=True)
class Ulimit:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class Healthcheck:
    """The container's own health check, exec form: the engine runs ``test`` as is."""

    test: tuple[str, ...]
    interval: float = DEFAULT_HEALTH_INTERVAL
    timeout: float | None = None
    retries: int | None = None
    start_period: float | None = None

    def engine_form(self) -> dict[str, Any]:
        """docker-py's healthcheck mapping: durations in nanoseconds; 0 takes the default."""
        return {
            "test": ["CMD", *self.test],
            "interval": nanoseconds(self.interval),
            "timeout": nanoseconds(self.timeout),
            "retries": self.retries or 0,
            "start_period": nanoseconds(self.start_period),
        }


def nanoseconds(seconds: float | None) -> int:
    return 0 if seconds is None else round(seconds * 1e9)


@dataclass(frozen=True)
class ContainerOptions:
    """How the container runs, beyond image, command, environment and ports."""

    user: str | None = None
    working_dir: str | None = None
    # None: the image's ENTRYPOINT; (): none at all (the command runs as is)
    entrypoint: tuple[str, ...] | None = None
    tmpfs: tuple[Tmpfs, ...] = ()
    cap_add: tuple[str, ...] = ()  # normalised, without CAP_; only CAP_ADD_ALLOWED
    cap_drop: tuple[str, ...] = ()  # normalised, or ALL
    shm_size: int | None = None  # bytes
    ulimits: tuple[Ulimit, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
    healthcheck: Healthcheck | None = None

    def create_kwargs(self) -> dict[str, Any]:
        """Arguments of docker-py's ``create_container``; only those set."""
        kwargs: dict[str, Any] = {}
        if self.user is not None:
            kwargs["user"] = self.user
        if self.working_dir is not None:
            kwargs["working_dir"] = self.working_dir
        if self.entrypoint is not None:
            # [""] is the API's "no entrypoint" (what `docker run --entrypoint ""` sends)
            kwargs["entrypoint"] = list(self.entrypoint) or [""]
        if self.healthcheck is not None:
            kwargs["healthcheck"] = self.healthcheck.engine_form()
        return kwargs

    def host_config_kwargs(self) -> dict[str, Any]:
        """Arguments of docker-py's ``create_host_config``; only those set."""
        kwargs: dict[str, Any] = {}
        if self.tmpfs:
            kwargs["tmpfs"] = {t.path: t.options() for t in self.tmpfs}
        if self.cap_add:
            kwargs["cap_add"] = [engine_cap(c) for c in self.cap_add]
        if self.cap_drop:
            kwargs["cap_drop"] = [engine_cap(c) for c in self.cap_drop]
        if self.shm_size is not None:
            kwargs["shm_size"] = self.shm_size
        if self.ulimits:
            kwargs["ulimits"] = [asdict(u) for u in self.ulimits]
        if self.sysctls:
            kwargs["sysctls"] = dict(self.sysctls)
        return kwargs

    def digest_parts(self) -> dict[str, Any]:
        """Everything here, for a kept container's definition digest."""
        return asdict(self)

    def describe(self) -> list[str]:
        """What is set, in words, for ``--testserver-list``."""
        parts = []
        if self.user is not None:
            parts.append(f"user {self.user}")
        if self.working_dir is not None:
            parts.append(f"working_dir {self.working_dir}")
        if self.entrypoint is not None:
            parts.append(f"entrypoint {list(self.entrypoint) or 'none'}")
        parts += [f"tmpfs {t.describe()}" for t in self.tmpfs]
        if self.cap_add:
            parts.append(f"cap_add {' '.join(self.cap_add)}")
        if self.cap_drop:
            parts.append(f"cap_drop {' '.join(self.cap_drop)}")
        if self.shm_size is not None:
            parts.append(f"shm_size {size_text(self.shm_size)}")
        for u in self.ulimits:
            parts.append(f"ulimit {u.name} {limit_text(u.soft)}:{limit_text(u.hard)}")
        for name, value in self.sysctls:
            parts.append(f"sysctl {name}={value}")
        if self.healthcheck is not None:
            parts.append(f"healthcheck {list(self.healthcheck.test)}")
        return parts


def size_text(size: int) -> str:
    """Bytes in the largest unit that divides them: 67108864 -> 64m."""
    for unit in ("g", "m", "k"):
        if size % SIZE_UNITS[unit] == 0:
            return f"{size // SIZE_UNITS[unit]}{unit}"
    return str(size)


def engine_cap(name: str) -> str:
    return name if name == "ALL" else f"CAP_{name}"


def limit_text(value: int) -> str:
    return "unlimited" if value == UNLIMITED else str(value)


Get = Callable[[str], "tuple[Any, Where] | None"]


def parse_options(get: Get, *, has_command: bool) -> ContainerOptions:
    """The options among a server's fields (``get`` gives a set key's value and origin)."""
    entrypoint = None
    if entry := get("entrypoint"):
        entrypoint = parse_entrypoint(*entry)
        if entrypoint == () and not has_command:
            entry[1].fail("[] clears the image's ENTRYPOINT and with it its CMD: give command too")
    cap_add = parse_caps(*entry, adding=True) if (entry := get("cap_add")) else ()
    cap_drop = parse_caps(*entry, adding=False) if (entry := get("cap_drop")) else ()
    if entry := get("cap_drop"):
        for i, name in enumerate(cap_drop):
            if name in cap_add:
                entry[1].index(i).fail(f"{name} is also in cap_add: add it or drop it")
    return ContainerOptions(
        user=parse_user(*entry) if (entry := get("user")) else None,
        working_dir=v.container_path(*entry) if (entry := get("working_dir")) else None,
        entrypoint=entrypoint,
        tmpfs=parse_tmpfs_list(*entry) if (entry := get("tmpfs")) else (),
        cap_add=cap_add,
        cap_drop=cap_drop,
        shm_size=size(*entry) if (entry := get("shm_size")) else None,
        ulimits=parse_ulimits(*entry) if (entry := get("ulimits")) else (),
        sysctls=parse_sysctls(*entry) if (entry := get("sysctls")) else (),
        healthcheck=parse_healthcheck(*entry) if (entry := get("healthcheck")) else None,
    )


def parse_user(value: object, where: Where) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 1000:50 as the base-60 number 60050: quoting is required.
        where.fail(f'{v.show(value)} is ambiguous as a user: quote it, such as "1000" or "1000:50"')
    text = v.string(value, where)
    parts = text.split(":")
    if len(parts) > 2 or not all(is_user_part(p) for p in parts):
        where.fail(
            f"{v.show(text)} is not a user: name, uid, name:group or uid:gid "
            "(names of letters, digits, _ . -; ids 0-4294967294)"
        )
    return text


def is_user_part(part: str) -> bool:
    if _ID.fullmatch(part):
        return int(part) <= MAX_ID
    return bool(_USER_NAME.fullmatch(part))


def parse_entrypoint(value: object, where: Where) -> tuple[str, ...]:
    if isinstance(value, list) and not value:
        return ()
    return v.argv(value, where)


def size(value: object, where: Where) -> int:
    """``64m`` -> bytes: a whole number with a unit k, m or g, from 4k to 16g."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        where.fail(f"{v.show(value)} needs a unit: a size such as 64m (k, m or g)")
    text = v.string(value, where)
    match = _SIZE.fullmatch(text)
    if not match:
        where.fail(f"{v.show(text)} is not a size such as 64m (a whole number and k, m or g)")
    number = int(match.group(1)) * SIZE_UNITS[match.group(2).lower()]
    if not MIN_SIZE <= number <= MAX_SIZE:
        where.fail(f"{v.show(text)} is out of range (4k-16g)")
    return number


def parse_tmpfs_list(value: object, where: Where) -> tuple[Tmpfs, ...]:
    mounts: list[Tmpfs] = []
    for i, item in enumerate(v.string_list(value, where)):
        mount = parse_tmpfs(item, where.index(i))
        if any(m.path == mount.path for m in mounts):
            where.index(i).fail(f"{mount.path} is listed twice")
        mounts.append(mount)
    return tuple(mounts)


def parse_tmpfs(value: object, where: Where) -> Tmpfs:
    raw: dict[str, Any] = {"path": value} if isinstance(value, str) else v.mapping(value, where)
    v.known_keys(raw, TMPFS_KEYS, where)
    if "path" not in raw:
        where.fail("needs path: where the tmpfs is mounted in the container")
    pw = where if isinstance(value, str) else where.key("path")
    path = v.container_path(raw["path"], pw)
    if any(c in path for c in ",:="):
        # Docker's mount syntaxes separate options with these: none may pass for one.
        pw.fail(f"{v.show(path)}: a tmpfs path must not hold , : or = (mount option separators)")
    normal = "/" + "/".join(p for p in path.split("/") if p)
    if normal == "/" or normal.split("/")[1] in ("proc", "sys", "dev"):
        pw.fail(f"{v.show(path)}: a tmpfs over / or the kernel's /proc, /sys or /dev is refused")
    return Tmpfs(
        path=normal,
        size=size(raw["size"], where.key("size")) if raw.get("size") is not None else None,
        mode=v.mode(raw["mode"], where.key("mode")) if raw.get("mode") is not None else None,
    )


def capability(value: object, where: Where, *, adding: bool) -> str:
    text = v.string(value, where)
    name = text.strip().upper()
    name = name.removeprefix("CAP_")
    if name == "ALL":
        if adding:
            where.fail("ALL would add every capability, the refused ones too; name each one")
        return name
    if name not in CAPABILITIES:
        where.fail(
            f"{v.show(text)} is not a Linux capability{v.did_you_mean(name, list(CAPABILITIES))}"
        )
    if adding and name in CAP_ADD_REFUSED:
        where.fail(f"{name} is refused: {CAP_ADD_REFUSED[name]}")
    return name


def parse_caps(value: object, where: Where, *, adding: bool) -> tuple[str, ...]:
    names: list[str] = []
    for i, item in enumerate(v.string_list(value, where)):
        name = capability(item, where.index(i), adding=adding)
        if name in names:
            where.index(i).fail(f"{name} is listed twice")
        names.append(name)
    return tuple(names)


def limit(value: object, where: Where) -> int:
    if value == "unlimited":
        return UNLIMITED
    if isinstance(value, bool) or not isinstance(value, int):
        where.fail(f"must be a whole number or unlimited, not {v.show(value)}")
    if not 0 <= value <= MAX_LIMIT:
        where.fail(f"{v.show(value)} is out of range (0-{MAX_LIMIT}, or unlimited)")
    return value


def parse_ulimits(value: object, where: Where) -> tuple[Ulimit, ...]:
    limits: list[Ulimit] = []
    for name, item in v.mapping(value, where).items():
        w = where.key(name)
        if name not in ULIMIT_NAMES:
            w.fail(
                f"unknown ulimit{v.did_you_mean(name, list(ULIMIT_NAMES))}; "
                f"known: {', '.join(ULIMIT_NAMES)}"
            )
        if isinstance(item, dict):
            raw = v.mapping(item, w)
            v.known_keys(raw, ULIMIT_KEYS, w)
            for key in ULIMIT_KEYS:
                if key not in raw:
                    w.fail(f"needs {key} (or give one number for both)")
            soft, hard = limit(raw["soft"], w.key("soft")), limit(raw["hard"], w.key("hard"))
        else:
            soft = hard = limit(item, w)
        if hard != UNLIMITED and (soft == UNLIMITED or soft > hard):
            w.fail(f"soft {limit_text(soft)} is above hard {hard}")
        limits.append(Ulimit(name, soft, hard))
    return tuple(limits)


def sysctl_name(name: str, where: Where) -> str:
    if not _SYSCTL_NAME.fullmatch(name):
        where.fail(f"{v.show(name)} is not a sysctl name such as net.ipv4.tcp_syncookies")
    if name in IPC_SYSCTLS or name.startswith("fs.mqueue."):
        return name
    if name.startswith("net.") and (
        not name.startswith("net.core.") or name.startswith(NET_CORE_NAMESPACED)
    ):
        return name
    where.fail(
        f"{v.show(name)} is not a sysctl of the container's own namespaces: net.* (but "
        f"net.core.* only somaxconn and xfrm_*), {', '.join(IPC_SYSCTLS)} or fs.mqueue.*"
    )


def sysctl_value(value: object, where: Where) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_LIMIT:
        return str(value)
    if not isinstance(value, str):
        where.fail(f"must be a string or a whole number, not {v.show(value)}")
    text = v.single_line(value, where)
    if len(text) > MAX_SYSCTL_VALUE or not text.isascii() or not text.isprintable():
        where.fail(f"{v.show(text)} is not a printable ASCII value of at most 256 characters")
    return text


def parse_sysctls(value: object, where: Where) -> tuple[tuple[str, str], ...]:
    return tuple(
        (sysctl_name(name, where.key(name)), sysctl_value(item, where.key(name)))
        for name, item in v.mapping(value, where).items()
    )


def health_duration(value: object, where: Where) -> float:
    seconds = v.duration(value, where)
    if seconds < MIN_HEALTH_DURATION:
        where.fail(f"{v.show(value)} is below the engine's minimum of 0.001 seconds")
    return seconds


def parse_healthcheck(value: object, where: Where) -> Healthcheck:
    raw = v.mapping(value, where)
    v.known_keys(raw, HEALTHCHECK_KEYS, where)
    if "test" not in raw:
        where.fail("needs test: the argv the engine runs in the container to check health")
    test = v.argv(raw["test"], where.key("test"))
    if test[0] in ("CMD", "CMD-SHELL", "NONE"):
        where.key("test").index(0).fail(
            f"{test[0]!r}: give the argv itself; it runs as is, never through a shell"
        )

    def seconds(key: str) -> float | None:
        item = raw.get(key)
        return health_duration(item, where.key(key)) if item is not None else None

    retries = raw.get("retries")
    return Healthcheck(
        test=test,
        interval=seconds("interval") or DEFAULT_HEALTH_INTERVAL,
        timeout=seconds("timeout"),
        retries=v.count(retries, where.key("retries")) if retries is not None else None,
        start_period=seconds("start_period"),
    )
