"""The watchdog process: ``python -S watchdog.py RUN_ID OWNER_PID``, stdin a pipe from the owner.

It is started beside the run's first container, when the machine is busiest: an interpreter
without ``site`` and with nothing but ``sys`` imported starts in a few milliseconds of CPU, where a
full start (site-packages, ``.pth`` hooks, this package) costs ~90 ms. Only when the owner dies
without saying ``done`` does it load site-packages and the engine client to sweep the run.

A short run asks it, with ``done sweep``, to sweep the runs known to be dead once the run is
over: the sweep every run owes the engine then costs the run itself nothing.

The pipe alone is not enough: a child the owner forked without exec (multiprocessing's fork
start method, ``os.fork`` in a test) inherits its write end and keeps it open after the owner is
killed. So the watchdog also watches the owner itself: a pidfd where Linux has them, else its
parent pid changing (the owner is its parent; an orphan is adopted by another process).
"""

from __future__ import annotations

import sys

PIPE_CHUNK = 64
PARENT_POLL = 0.25  # seconds between looks at the parent pid, where there is no pidfd


DONE = b"done"  # the run ended and cleaned up: exit, touching nothing
DONE_SWEEP = b"done sweep"  # the same, and sweep the runs known to be dead on the way out


def owner_said(owner: int) -> bytes:
    """Wait until the owner closes the pipe or dies; what it wrote (a line) before that."""
    import os
    import select

    pipe = sys.stdin.buffer.fileno()
    pidfd = -1
    if owner > 0 and hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(owner)
        except OSError:
            pidfd = -1  # gone already, or a kernel without pidfds: the parent pid tells
    watched = [pipe] if pidfd < 0 else [pipe, pidfd]
    received = b""
    while True:
        ready, _, _ = select.select(watched, [], [], None if pidfd >= 0 else PARENT_POLL)
        if pipe in ready:
            chunk = os.read(pipe, PIPE_CHUNK)
            if not chunk or b"\n" in received + chunk:
                return (received + chunk).split(b"\n")[0].strip()
            received += chunk
        elif pidfd in ready or (owner > 0 and os.getppid() != owner):
            # The owner is gone while someone else still holds the pipe: it said done or not.
            return received.strip()


def load_site_packages() -> None:
    """What ``-S`` skipped, so the Docker SDK and this package can be imported now."""
    import os
    import site

    package_dir = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == package_dir:
        del sys.path[0]  # the script's own folder: its modules must not be top-level names
    if sys.flags.no_site:
        site.main()
    # The folder this package was loaded from, last: a checkout on PYTHONPATH, or site-packages.
    parent = os.path.dirname(package_dir)
    if parent not in sys.path:
        sys.path.append(parent)


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print("usage: python -S watchdog.py RUN_ID [OWNER_PID]", file=sys.stderr)
        return 2
    owner = int(sys.argv[2]) if len(sys.argv) == 3 and sys.argv[2].isdigit() else 0
    said = owner_said(owner)
    if said == DONE:
        return 0
    load_site_packages()
    from pytest_testserver.errors import TestserverError
    from pytest_testserver.reaper import sweep_abandoned_run, sweep_dead_runs_once

    try:
        if said == DONE_SWEEP:  # after the owner is gone: off its path, and it waits for nothing
            sweep_dead_runs_once(sys.argv[1])
        else:
            sweep_abandoned_run(sys.argv[1])
    except TestserverError as exc:
        print(f"testserver watchdog: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
