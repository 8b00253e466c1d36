from __future__ import annotations

import culm


async def test_a_run_completes_and_its_stream_ends(engine: culm.Engine) -> None:
    run = await engine.start_run("count", 3)
    types = [e.type async for e in engine.subscribe(run.id)]
    assert types == ["run.queued", "run.started", *["test.tick"] * 3, "run.completed"]
    done = await engine.get_run(run.id)
    assert done.status is culm.RunStatus.COMPLETED
    assert done.state.output == 3
