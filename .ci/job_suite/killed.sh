#!/bin/sh
# Inside a job container (shape killed of .ci/job_shapes): start the hold suite, kill pytest
# with SIGKILL once its server is ready, and wait (bounded) until the watchdog has removed what
# the run made: the server's container and the run's network, which this container is still on.
cd /src/jobsuite/hold || exit 2
/v/bin/python -m pytest -p no:cacheprovider -q &
pid=$!
i=0
until [ -f /tmp/holding ]; do
  i=$((i + 1)); [ "$i" -gt 600 ] && { echo "killed: the server never got ready"; exit 1; }
  kill -0 "$pid" 2>/dev/null || { echo "killed: pytest ended early"; exit 1; }
  sleep 0.1
done
kill -9 "$pid"
echo "killed: pytest $pid killed while holding its server"
exec /v/bin/python - <<'PY'
import socket
import time

import docker

api = docker.APIClient()
mine = {"label": f"pytest-testserver.host={socket.gethostname()}"}
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    left = [c["Id"][:12] for c in api.containers(all=True, filters=mine)]
    left += [n["Name"] for n in api.networks(filters=mine)]
    if not left:
        print("killed: the watchdog removed the run's container and network")
        raise SystemExit(0)
    time.sleep(0.2)
raise SystemExit(f"killed: left after 60 s: {left}")
PY
