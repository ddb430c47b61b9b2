"""Cycles in the small graphs of a configuration: servers' links, variables' references."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def cycle_from(start: str, edges: Mapping[str, Iterable[str]], done: set[str]) -> list[str]:
    """A cycle reachable from ``start`` (``[a, b, a]``), or ``[]``.

    Depth-first with colours, iteratively: linear in the number of edges, however long a chain
    (no recursion limit; a set beside the path). A node missing from ``edges`` has none (a
    server declared elsewhere, a secret). ``done`` holds nodes known to reach no cycle; it may
    be shared between calls, which then cost nothing for what one call already walked.
    """
    if start in done:
        return []
    path = [start]
    on_path = {start}
    stack = [iter(edges.get(start, ()))]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            finished = path.pop()
            on_path.discard(finished)
            done.add(finished)
            continue
        if node in on_path:
            return [*path[path.index(node) :], node]
        if node in done or node not in edges:
            continue
        path.append(node)
        on_path.add(node)
        stack.append(iter(edges[node]))
    return []
