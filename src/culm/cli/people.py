"""Commands for people in the loop: what waits for a person, approve, answer, say."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from culm.cli.app import ApiKey, Url, command, connect, stdout
from culm.cli.runs import RunId, parse_input, print_json
from culm.cli.view import compact, since, status_text
from culm.client.types import RunInfo


def asked(waiting: dict[str, Any] | None) -> Text:
    """What a waiting run asks, on one line."""
    if not waiting:
        return Text("")
    if waiting.get("kind") == "approval":
        call = f"{waiting.get('tool')}({compact(waiting.get('arguments'), 60)})"
        return Text.assemble(("approve ", "bold"), call)
    return Text.assemble(("question ", "bold"), str(waiting.get("question")))


def waiting_table(runs: Sequence[RunInfo]) -> Table:
    table = Table(box=None)
    for name in ("RUN", "AGENT", "WAITING FOR", "CALL", "SINCE"):
        table.add_column(name, no_wrap=name != "WAITING FOR")
    for r in runs:
        waiting = r.get("waiting") or {}
        table.add_row(
            r["id"],
            r["agent"],
            asked(waiting),
            str(waiting.get("call_id", "")),
            since(r["last_event_at"]),
        )
    return table


@command()
def approve(
    run_id: RunId,
    deny: Annotated[bool, typer.Option("--deny", help="Refuse the call instead.")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, for the model to read.")
    ] = None,
    arguments: Annotated[
        str | None,
        typer.Option("--arguments", metavar="JSON", help="Run the call with these arguments."),
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Approve (or with --deny refuse) the tool call a run waits on; it goes on at once."""
    edited = None
    if arguments is not None:
        edited = parse_input(arguments)
        if not isinstance(edited, dict):
            raise typer.BadParameter("--arguments must be a JSON object")
    with connect(url, api_key) as client:
        found = client.approve(run_id, approve=not deny, reason=reason, arguments=edited)
    verb = "refused" if deny else "approved"
    stdout().print(Text.assemble(f"{run_id} {verb}; it is ", status_text(found["status"])))


@command()
def answer(
    run_id: RunId,
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The answer (JSON or text).")],
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Answer the question a run waits on; it goes on at once."""
    with connect(url, api_key) as client:
        waiting = client.get_run(run_id).get("waiting") or {}
        schema = waiting.get("schema") or {}
        # text for a question that wants text, however it looks; JSON otherwise
        value = text if schema.get("type") == "string" else parse_input(text)
        found = client.answer(run_id, value, call_id=waiting.get("call_id"))
    stdout().print(Text.assemble(f"{run_id} answered; it is ", status_text(found["status"])))


@command()
def say(
    run_id: RunId,
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The message.")],
    url: Url = None,
    api_key: ApiKey = None,
    json: Annotated[bool, typer.Option("--json", help="Print the message sent as JSON.")] = False,
) -> None:
    """Send a message to a model agent's running run: taken in at its next round."""
    with connect(url, api_key) as client:
        sent = client.send_message(run_id, text)
    if json:
        print_json(sent)
    else:
        stdout().print(f"sent to {run_id} (message {sent['id']})")
