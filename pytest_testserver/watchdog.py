"""The watchdog process: ``python -S watchdog.py RUN_ID``, its stdin a pipe from the run's owner.

It is started beside the run's first container, when the machine is busiest: an interpreter
without ``site`` and with nothing but ``sys`` imported starts in a few milliseconds of CPU, where a
full start (site-packages, ``.pth`` hooks, this package) costs ~90 ms. Only when the owner dies
without saying ``done`` does it load site-packages and the engine client to sweep the run.
"""

from __future__ import annotations

import sys

PIPE_CHUNK = 64


def owner_said_done() -> bool:
    """Block until the owner closes the pipe; ``True`` if it wrote ``done`` first."""
    received = b""
    while chunk := sys.stdin.buffer.read(PIPE_CHUNK):
        received += chunk
    return received.strip() == b"done"


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
    if len(sys.argv) != 2:
        print("usage: python -S watchdog.py RUN_ID", file=sys.stderr)
        return 2
    if owner_said_done():
        return 0
    load_site_packages()
    from pytest_testserver.errors import TestserverError
    from pytest_testserver.reaper import sweep_abandoned_run

    try:
        sweep_abandoned_run(sys.argv[1])
    except TestserverError as exc:
        print(f"testserver watchdog: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
