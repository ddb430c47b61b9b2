"""What a test gets: where a running server is, and a few ways to poke at it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import exits
from .config import Port

if TYPE_CHECKING:
    from .engine import Engine


class ServerHandle:
    """A running server: ``host``, ``port(n)``, ``url(...)``, ``exec``, ``logs``."""

    def __init__(
        self,
        *,
        name: str,
        host: str,
        ports: Mapping[Port, int],
        container_id: str,
        ip: str,
        engine: Callable[[], Engine],
        redact: Callable[[str], str],
    ) -> None:
        self.name = name
        self.host = host
        self.container_id = container_id
        self.ip = ip  # on the run's network (or the default bridge)
        self._ports = dict(ports)
        self._engine = engine  # connected on first use: a worker reading shared state needs none
        self._redact = redact

    def __repr__(self) -> str:
        ports = ", ".join(f"{p}->{n}" for p, n in self._ports.items())
        return f"<ServerHandle {self.name} {self.host} [{ports}] {self.container_id[:12]}>"

    def state(self) -> dict[str, Any]:
        """What another process needs to rebuild this handle (see ``from_state``)."""
        return {
            "container_id": self.container_id,
            "host": self.host,
            "ports": self.ports,
            "ip": self.ip,
        }

    @classmethod
    def from_state(
        cls,
        name: str,
        state: Mapping[str, Any],
        engine: Callable[[], Engine],
        redact: Callable[[str], str],
    ) -> ServerHandle:
        ports = {}
        for key, number in state["ports"].items():
            port, _, protocol = key.partition("/")
            ports[Port(int(port), protocol or "tcp")] = int(number)
        return cls(
            name=name,
            host=str(state["host"]),
            ports=ports,
            container_id=str(state["container_id"]),
            ip=str(state["ip"]),
            engine=engine,
            redact=redact,
        )

    @property
    def ports(self) -> dict[str, int]:
        """Every published port: ``{"8080/tcp": 49153}``."""
        return {str(p): n for p, n in self._ports.items()}

    def port(self, number: int, protocol: str = "tcp") -> int:
        """The host port where container port ``number`` is reachable."""
        try:
            return self._ports[Port(number, protocol)]
        except KeyError:
            declared = ", ".join(str(p) for p in self._ports) or "none"
            raise KeyError(
                f"server {self.name!r} does not publish {number}/{protocol} (its ports: {declared})"
            ) from None

    def url(self, port: int, path: str = "/", scheme: str = "http") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port(port)}/{path.lstrip('/')}"

    def exec(self, argv: Sequence[str], *, raw: bool = False) -> tuple[int, str]:
        """Run ``argv`` (a list; no shell) in the container: ``(exit code, output)``.

        Secrets in the output are masked (an assertion failure would print them) unless ``raw``.
        """
        if isinstance(argv, str):
            raise TypeError(
                "exec takes an argument list such as ['cat', '/etc/hosts'], not a string"
            )
        engine = self._engine()
        code, output = engine.exec(self.container_id, list(argv))
        if code is None:
            raise exits.died_error(engine, self.name, self.container_id, self._redact)
        text = output.decode("utf-8", "replace")
        return code, text if raw else self._redact(text)

    def logs(self, tail: int | None = None, *, raw: bool = False) -> str:
        """The container's output (stdout and stderr), secrets masked unless ``raw``."""
        text = self._engine().logs(self.container_id, "all" if tail is None else tail)
        return text if raw else self._redact(text)
