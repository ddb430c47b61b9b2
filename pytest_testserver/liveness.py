"""Which runs are known dead, judged from what they left on the engine: pure logic, no engine.

A run is swept only when it is *known* dead, never on a guess:

- by its owner process: every object of the run names the same owner, on this host, in this PID
  namespace and boot, and that pid is gone (or is now another process: its start time changed).
  A job container sharing the engine with ``--network host`` has our host name but another PID
  namespace: its pids mean nothing here.
- by its lease, from anywhere: a live run keeps a small labelled volume on the engine, re-made
  every few seconds. When no lease of the run is younger than its time-to-live and every object
  of the run is older than that (both on the engine's clock), the run is dead, wherever it ran.

Every rule asks for agreement of *all* the run's objects: one stray object with forged labels can
only make a run look more alive, never get a live run's containers removed. What a run kept
(``--testserver-keep``) is never reaped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .identity import LABEL_KEPT, LABEL_LEASE, LABEL_LEASE_TTL, LABEL_RUN, Owner, plain_number

MIN_LEASE_TTL = 3


@dataclass(frozen=True)
class Found:
    """A container, network or volume on the engine, with its labels and creation time."""

    kind: str  # "container", "network" or "volume"
    id: str
    labels: dict[str, str] = field(hash=False, compare=False)
    created: float = 0.0  # Unix seconds, by the engine's clock

    @property
    def run(self) -> str:
        return self.labels.get(LABEL_RUN, "")

    @property
    def is_lease(self) -> bool:
        return self.kind == "volume" and LABEL_LEASE in self.labels

    @property
    def kept(self) -> bool:
        return LABEL_KEPT in self.labels

    def ttl(self) -> int | None:
        ttl = plain_number(self.labels.get(LABEL_LEASE_TTL, ""), 86400)
        return max(ttl, MIN_LEASE_TTL) if ttl is not None else None


def lease_expired(objects: list[Found], now: float) -> bool:
    """No lease of the run is fresh, and every object is older than its own time-to-live."""
    for item in objects:
        ttl = item.ttl()
        if ttl is None or now - item.created < ttl:
            return False  # a fresh lease or object, or one that promises none: alive
    return True


def owner_dead(objects: list[Found], here: Owner) -> bool:
    owners = {Owner.from_labels(item.labels) for item in objects}
    if len(owners) != 1:
        return False
    owner = owners.pop()
    return owner is not None and owner.known_dead(here)


def dead_runs(
    everything: Iterable[Found], now: float, here: Owner, exclude: str = ""
) -> dict[str, list[Found]]:
    """Runs known dead, with what to remove of each (never what they kept)."""
    by_run: dict[str, list[Found]] = {}
    for item in everything:
        if item.run and item.run != exclude:
            by_run.setdefault(item.run, []).append(item)
    dead: dict[str, list[Found]] = {}
    for run, objects in by_run.items():
        removable = [item for item in objects if not item.kept]
        if not removable:
            continue
        if owner_dead(objects, here) or lease_expired(objects, now):
            dead[run] = removable
    return dead


def removal_order(objects: Iterable[Found]) -> list[list[Found]]:
    """Containers first (they hold networks and volumes), then networks, then leases last."""
    ranks = {"container": 0, "network": 1, "volume": 2}
    waves: list[list[Found]] = [[], [], []]
    for item in objects:
        waves[ranks.get(item.kind, 2)].append(item)
    return [wave for wave in waves if wave]
