"""Benchmark harness for pytest-testserver against a hand-written floor and its peers.

Run it with ``python benchmarks/run.py``; see ``benchmarks/README.md``.
"""

from __future__ import annotations
