#!/bin/sh
# Readiness check, exec'd inside the container until it exits 0.
# busybox nc has no -z here, so ask the web server itself for the page.
exec wget -q --spider http://127.0.0.1:8080/
