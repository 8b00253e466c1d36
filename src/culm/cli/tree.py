"""``culm runs --tree RUN``: a run and the runs spawned below it, one line each."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from rich.tree import Tree

from culm.cli.view import status_text

if TYPE_CHECKING:
    from culm.client import RunTreeInfo


def tree_view(node: RunTreeInfo) -> Tree:
    """The tree as rich renders it: id, agent, status, round, last tool, tree usage."""
    root = Tree(_label(node))
    _grow(root, node)
    return root


def _grow(branch: Tree, node: RunTreeInfo) -> None:
    for child in node["children"]:
        _grow(branch.add(_label(child)), child)


def _label(node: RunTreeInfo) -> Text:
    parts: list[Any] = [
        (node["id"], "bold"),
        "  ",
        node["agent"],
        "  ",
        status_text(node["status"]),
    ]
    if node["round"]:
        parts.append(f"  round {node['round']}")
    if node["last_tool"]:
        parts.append((f"  {node['last_tool']} ({node['last_tool_phase']})", "blue"))
    tokens = (node["tree_usage"] or {}).get("total_tokens")
    if tokens:
        parts.append((f"  {tokens} tokens", "dim"))
    if node["error"]:
        parts.append((f"  {node['error']}", "red"))
    return Text.assemble(*parts)
