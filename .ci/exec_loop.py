#!/usr/bin/env python3
"""Can the engine lose a short exec's output? Thousands of short execs through the plugin's own
``Engine.exec``, counting every answer that is not the expected one.

Three kinds of exec run in turn in a busybox container on a network with a busybox httpd:

- ``echo``: ``echo ok``, nothing but the engine's exec stream;
- ``wget``: ``wget -q -O - http://web:8080/``, what test_linked_servers_at_n4... runs;
- ``wget+end``: the same wget, then ``echo END`` in one shell: ``END`` alone means the server
  answered with nothing; no output at all means the exec stream lost it.

Loads: ``none`` (one exec at a time), ``cpu`` (``--hogs`` busy processes beside it),
``parallel`` (``--threads`` execs at once), ``both``. Everything it makes carries the label
``pytest-testserver.exec-loop`` and is removed by id at the end.

    PYTHONPATH=. python3 .ci/exec_loop.py --count 3000 --load none
    PYTHONPATH=. python3 .ci/exec_loop.py --count 3000 --load both --threads 4 --hogs 2
    PYTHONPATH=. python3 .ci/exec_loop.py --count 3000 --sdk   # docker-py's exec_start, to compare
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pytest_testserver.engine import Engine

LABEL = {"pytest-testserver.exec-loop": str(os.getpid())}
WEB = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"
KINDS: dict[str, tuple[list[str], bytes]] = {
    "echo": (["echo", "ok"], b"ok\n"),
    "wget": (["wget", "-q", "-O", "-", "http://web:8080/"], b"ok\n"),
    "wget+end": (["sh", "-c", "wget -q -O - http://web:8080/; echo END"], b"ok\nEND\n"),
}


def hog(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="execs in all (default 3000)")
    parser.add_argument("--load", choices=["none", "cpu", "parallel", "both"], default="none")
    parser.add_argument("--threads", type=int, default=4, help="execs at once under parallel")
    parser.add_argument("--hogs", type=int, default=2, help="busy processes under cpu")
    parser.add_argument("--limit", type=float, default=900, help="stop after this many seconds")
    parser.add_argument(
        "--sdk", action="store_true", help="docker-py's exec_start instead of Engine.exec"
    )
    args = parser.parse_args()

    engine = Engine.connect()
    api: Any = engine.api
    made: list[tuple[str, str]] = []
    hogs: list[multiprocessing.Process] = []
    try:
        net = api.create_network(f"exec-loop-{os.getpid()}", driver="bridge", labels=LABEL)["Id"]
        made.append(("network", net))
        ids = {}
        for name, cmd in (("web", ["sh", "-c", WEB]), ("client", ["sleep", "3600"])):
            host = api.create_host_config(auto_remove=False)
            net_config = api.create_networking_config(
                {net: api.create_endpoint_config(aliases=[name])}
            )
            cid = api.create_container(
                "busybox:stable",
                cmd,
                labels=LABEL,
                host_config=host,
                networking_config=net_config,
            )["Id"]
            made.append(("container", cid))
            api.start(cid)
            ids[name] = cid
        client = ids["client"]
        deadline = time.monotonic() + 30
        while engine.exec(client, KINDS["wget"][0]) != (0, b"ok\n"):
            if time.monotonic() > deadline:
                print("exec-loop: the web server never answered", file=sys.stderr)
                return 2
            time.sleep(0.1)

        stop_at = time.monotonic() + args.limit
        if args.load in ("cpu", "both"):
            ctx = multiprocessing.get_context("spawn")
            hogs = [ctx.Process(target=hog, args=(stop_at,)) for _ in range(args.hogs)]
            for process in hogs:
                process.start()
        threads = args.threads if args.load in ("parallel", "both") else 1

        lock = threading.Lock()
        done: collections.Counter[str] = collections.Counter()
        wrong: collections.Counter[str] = collections.Counter()
        examples: list[str] = []
        names = list(KINDS)

        def one(n: int) -> None:
            if time.monotonic() > stop_at:
                return
            kind = names[n % len(names)]
            argv, expected = KINDS[kind]
            if args.sdk:  # how Engine.exec read the output before: docker-py's exec_start
                exec_id = api.exec_create(client, argv)["Id"]
                output = api.exec_start(exec_id)
                code = api.exec_inspect(exec_id)["ExitCode"]
            else:
                code, output = engine.exec(client, argv)
            with lock:
                done[kind] += 1
                if (code, output) != (0, expected):
                    wrong[kind] += 1
                    if len(examples) < 20:
                        examples.append(f"  #{n} {kind}: exit {code}, output {output!r}")

        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(args.count)))
        took = time.monotonic() - started

        total = sum(done.values())
        print(
            f"exec-loop: {engine.version}, {'sdk' if args.sdk else 'Engine.exec'}, "
            f"load={args.load} (threads={threads}, hogs={len(hogs)}): "
            f"{total} execs in {took:.1f}s, {sum(wrong.values())} wrong"
        )
        for kind in names:
            print(f"  {kind:9} {done[kind]:6} execs, {wrong[kind]:4} wrong")
        print("\n".join(examples))
        return 1 if wrong else 0
    finally:
        for process in hogs:
            process.terminate()
            process.join(10)
        for kind, ident in reversed(made):
            if kind == "container":
                api.remove_container(ident, force=True, v=True)
            else:
                api.remove_network(ident)
        api.close()


if __name__ == "__main__":
    sys.exit(main())
