"""Spawn over real HTTP: a client that follows only the root session sees the whole tree;
children started through the API; children, tree, and ``culm runs --tree``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

import culm
from culm.cli import app as cli
from tests.api.conftest import Server, start_server

TERMINAL = {"run.completed", "run.failed", "run.cancelled", "run.interrupted"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        Path(tmp_path_factory.mktemp("spawn")), CULM_TEST_APP="tests.spawn.agents:app"
    )
    yield running
    running.stop()


def walk(node: culm.client.RunTreeInfo) -> list[culm.client.RunTreeInfo]:
    return [node, *(n for child in node["children"] for n in walk(child))]


async def follow_until_ended(
    client: culm.AsyncClient, session_id: str, run_id: str
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(30), aclosing(client.follow_session(session_id)) as stream:
        async for event in stream:
            seen.append(dict(event))
            if event["run_id"] == run_id and event["type"] in TERMINAL:
                return seen
    raise AssertionError("a session stream never ends by itself")


class TestRootSessionStream:
    """Following the root session alone is enough to see every run of the tree."""

    async def test_every_child_event_once_in_order(self, server: Server) -> None:
        async with culm.AsyncClient(server.url) as client:
            root = await client.start_run("root")
            seen = await follow_until_ended(client, root["session_id"], root["id"])
            nodes = walk(await client.tree(root["id"]))
            stored = {}
            for node in nodes:
                page = await client.events(node["id"], limit=10_000)
                assert page.done
                stored[node["id"]] = page.data

        assert len(nodes) == 10 and {n["status"] for n in nodes} >= {"completed"}
        assert [e["pos"] for e in seen] == sorted({e["pos"] for e in seen})
        assert sorted((e["run_id"], e["seq"]) for e in seen) == sorted(
            (e["run_id"], e["seq"]) for page in stored.values() for e in page
        )
        parents = {n["id"]: n["parent_run_id"] for n in nodes}
        for run_id, page in stored.items():
            mine = [e for e in seen if e["run_id"] == run_id]
            assert [{k: e[k] for k in page[0]} for e in mine] == page
            assert {e["parent_run_id"] for e in mine} == {parents[run_id]}
        children = {e["data"]["run_id"] for e in seen if e["type"] == "child.started"}
        assert children == {n["id"] for n in nodes[1:]}


class TestStartWithAParent:
    """``POST /v1/runs`` with ``parent_run_id`` spawns from outside the parent's code."""

    async def test_child_children_tree_and_cancel(self, server: Server) -> None:
        async with culm.AsyncClient(server.url) as client:
            parent = await client.start_run("holder")
            child = await client.start_run("leaf", {"hold": True}, parent_run_id=parent["id"])
            assert (child["trigger"], child["parent_run_id"]) == ("spawn", parent["id"])
            assert child["session_id"] != parent["session_id"]
            session = await client.get_session(child["session_id"])
            assert session["parent_id"] == parent["session_id"]

            page = await client.children(parent["id"])
            assert [r["id"] for r in page.data] == [child["id"]]
            tree = await client.tree(parent["id"])
            assert [n["id"] for n in walk(tree)] == [parent["id"], child["id"]]
            assert tree["children"][0]["agent"] == "leaf"

            await client.cancel(parent["id"], reason="done")
            ended = await client.wait(child["id"], timeout=10)
            assert ended["status"] == "cancelled"
            assert ended["error"] == (
                f"cancelled by http:default: parent run {parent['id']} was cancelled"
            )

    async def test_refusals(self, server: Server) -> None:
        async with culm.AsyncClient(server.url) as client:
            finished = await client.start_run("leaf", {"value": 1})
            await client.wait(finished["id"], timeout=10)
            with pytest.raises(culm.RunFinished):
                await client.start_run("leaf", {}, parent_run_id=finished["id"])
            with pytest.raises(culm.NotFound):
                await client.start_run("leaf", {}, parent_run_id="run_nope")
            with pytest.raises(culm.NotFound):
                await client.tree("run_nope")
            with pytest.raises(culm.NotFound):
                await client.children("run_nope")
            deep = await client.start_run("chain", 4)  # its last run is at the depth limit
            seen = 0
            async with aclosing(client.follow_session(deep["session_id"])) as stream:
                async for event in stream:
                    seen += event["type"] == "run.started"
                    if seen == 5:
                        bottom = event["run_id"]
                        break
            with pytest.raises(culm.Conflict) as refused:
                await client.start_run("leaf", {}, parent_run_id=bottom)
            assert refused.value.code == "spawn_refused"
            assert "depth limit of 4" in refused.value.message
            await client.cancel(deep["id"])
            holder = await client.start_run("holder")
            with pytest.raises(culm.InvalidInput):
                await client.start_run(
                    "leaf", {}, parent_run_id=holder["id"], session_id=holder["session_id"]
                )
            await client.cancel(holder["id"])


class TestCli:
    """``culm runs --tree RUN`` shows the tree; with ``--json`` the API's shape."""

    def test_tree(self, server: Server) -> None:
        with culm.Client(server.url) as client:
            root = client.start_run("chain", 2)
            stream = client.follow_session(root["session_id"])
            started = 0
            while started < 3:  # until the whole line of three runs has started
                started += next(stream)["type"] == "run.started"
            stream.close()
            runner = CliRunner()
            env = {"CULM_URL": server.url}
            shown = runner.invoke(cli, ["runs", "--tree", root["id"]], env=env)
            as_json = runner.invoke(cli, ["runs", "--tree", root["id"], "--json"], env=env)
            client.cancel(root["id"])
        assert shown.exit_code == 0, shown.output
        lines = shown.output.splitlines()
        assert len(lines) == 3 and all("chain" in line for line in lines)
        assert root["id"] in lines[0]
        tree = orjson.loads(as_json.output)
        assert [n["agent"] for n in walk(tree)] == ["chain"] * 3
