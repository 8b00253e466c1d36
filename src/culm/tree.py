"""A run and its descendants as a tree: what ``culm runs --tree`` and ``/tree`` show.

Built from plain run records, so it is the same whether the runs are live or long ended;
a node's ``tree_usage`` adds up its subtree as it stands, live children included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from culm.models import Run, add_usage


@dataclass(slots=True)
class RunNode:
    """One run of a tree with its children, oldest first."""

    run: Run
    children: list[RunNode] = field(default_factory=list)

    @property
    def tree_usage(self) -> dict[str, Any] | None:
        """The run's own usage and its whole subtree's, together."""
        total = self.run.state.usage
        for child in self.children:
            total = add_usage(total, child.tree_usage)
        return total

    def walk(self) -> list[RunNode]:
        """This node and every node below it, depth first."""
        return [self, *(node for child in self.children for node in child.walk())]

    def to_dict(self) -> dict[str, Any]:
        r, s = self.run, self.run.state
        return {
            "id": r.id,
            "agent": r.agent,
            "session_id": r.session_id,
            "parent_run_id": r.parent_run_id,
            "status": s.status.value,
            "round": s.round,
            "last_tool": s.last_tool,
            "last_tool_phase": s.last_tool_phase.value if s.last_tool_phase else None,
            "usage": s.usage,
            "tree_usage": self.tree_usage,
            "error": s.error,
            "children": [child.to_dict() for child in self.children],
        }


def build_tree(runs: Sequence[Run]) -> RunNode:
    """The tree rooted at ``runs[0]`` from runs linked by ``parent_run_id``; runs whose
    parent is not among them are left out."""
    nodes = {run.id: RunNode(run) for run in runs}
    for run in runs[1:]:
        parent = nodes.get(run.parent_run_id or "")
        if parent is not None:
            parent.children.append(nodes[run.id])
    for node in nodes.values():
        node.children.sort(key=lambda n: n.run.id)
    return nodes[runs[0].id]
