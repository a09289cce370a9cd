from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from comfyfleet.cli import options as opt
from comfyfleet.cli.app import app
from comfyfleet.cli.submitter import SubmitError, Submitter


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs; values that parse as JSON (numbers, true, lists) are typed."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--set")
        try:
            value: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw
        params[key.strip()] = value
    return params


@app.command()
def submit(
    workflow: Annotated[
        str | None, typer.Argument(help="A published workflow name (see /api/v1/workflows).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", envvar="SUBMIT_SET", help="A workflow parameter, key=value."),
    ] = None,
    graph: Annotated[
        Path | None,
        typer.Option(
            "--graph", envvar="SUBMIT_GRAPH", help="Submit a raw API-format graph file instead."
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", envvar="SUBMIT_OUT", help="Where to write the outputs.")
    ] = Path("out"),
    url: Annotated[
        str, typer.Option("--url", envvar="COMFYFLEET_URL", help="The balancer's base URL.")
    ] = "http://127.0.0.1:7999",
    username: opt.Username = None,
    password: opt.Password = None,
    priority: Annotated[
        int, typer.Option("--priority", envvar="SUBMIT_PRIORITY", help="Higher runs first.")
    ] = 0,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", envvar="SUBMIT_WAIT", help="Wait for the outputs.")
    ] = True,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", envvar="SUBMIT_TIMEOUT", help="Give up waiting after this many seconds."
        ),
    ] = 600.0,
) -> None:
    """Submit a job to a balancer, follow its progress and download the outputs."""
    if (workflow is None) == (graph is None):
        raise typer.BadParameter("give a WORKFLOW name or --graph FILE (one of them)")
    body: dict[str, Any] = {"priority": priority}
    if graph is not None:
        try:
            body["graph"] = orjson.loads(graph.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise typer.BadParameter(f"cannot read {graph}: {exc}", param_hint="--graph") from None
    else:
        body["workflow"] = workflow
        body["params"] = parse_sets(set_ or [])
    submitter = Submitter(url, username=username, password=password, stream=sys.stderr)
    try:
        paths = asyncio.run(submitter.run(body, out=out, wait=wait, timeout_s=timeout))
    except SubmitError as exc:
        typer.echo(f"comfyfleet submit: {exc}", err=True)
        raise typer.Exit(code=1) from None
    for path in paths:
        typer.echo(str(path))
