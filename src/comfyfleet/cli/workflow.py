"""`comfyfleet workflow publish|list|versions|rollback|retire`: the workflows API from a
shell, as a client of a balancer (like `comfyfleet submit`).

`publish NAME --api F` sends the seed's on-disk pair (`NAME-api.json`, `NAME.json`) and the
params file; `publish --dir workflows/` imports a folder, one version per workflow in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import orjson
import typer

from comfyfleet.cli import options as opt
from comfyfleet.cli.app import app
from comfyfleet.templates.loader import API_SUFFIX, PARAMS_SUFFIX, UI_SUFFIX
from comfyfleet.web.auth import credentials_headers

workflow_app = typer.Typer(
    help="Publish, list and roll back workflow versions on a balancer.", no_args_is_help=True
)
app.add_typer(workflow_app, name="workflow")


class CallFailed(Exception):
    """The balancer refused or could not be reached; the message says why."""


@dataclass(frozen=True)
class Balancer:
    url: str
    headers: dict[str, str]

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer (None for 204); CallFailed with the problem's detail otherwise."""
        async with aiohttp.ClientSession(headers=self.headers) as session:
            try:
                async with session.request(method, self.url + path, json=body) as resp:
                    raw = await resp.read()
                    data = orjson.loads(raw) if raw else None
                    if resp.status >= 400:
                        detail = (
                            data.get("detail")
                            if isinstance(data, dict)
                            else raw[:200].decode(errors="replace")
                        )
                        raise CallFailed(f"HTTP {resp.status}: {detail}")
                    return data
            except aiohttp.ClientError as exc:
                raise CallFailed(f"cannot reach {self.url}: {exc}") from None
            except orjson.JSONDecodeError:
                raise CallFailed(f"{self.url} answered something that is not JSON") from None


def _balancer(url: str, username: str | None, password: str | None, key: str | None) -> Balancer:
    return Balancer(url.rstrip("/"), credentials_headers(username, password, key))


def _run(call: Coroutine[Any, Any, Any]) -> Any:
    try:
        return asyncio.run(call)
    except CallFailed as exc:
        typer.echo(f"comfyfleet workflow: {exc}", err=True)
        raise typer.Exit(code=1) from None


def _read(path: Path, hint: str) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint=hint) from None
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path} must hold a JSON object", param_hint=hint)
    return data


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _body(api: Path, ui: Path | None, params: Path | None, note: str, force: bool) -> Any:
    body: dict[str, Any] = {"graph": _read(api, "--api"), "note": note, "force": force}
    if ui is not None:
        body["ui"] = _read(ui, "--ui")
    if params is not None:
        body["params"] = _read(params, "--params")
    return body


def _folder_bodies(folder: Path, note: str, force: bool) -> dict[str, Any]:
    """Name -> publish body for every `NAME-api.json` in `folder` (with its siblings)."""
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder", param_hint="--dir")
    out = {}
    for api in sorted(folder.glob(f"*{API_SUFFIX}")):
        name = api.name.removesuffix(API_SUFFIX)
        ui, params = folder / f"{name}{UI_SUFFIX}", folder / f"{name}{PARAMS_SUFFIX}"
        out[name] = _body(
            api, ui if ui.exists() else None, params if params.exists() else None, note, force
        )
    if not out:
        raise typer.BadParameter(f"no *{API_SUFFIX} in {folder}", param_hint="--dir")
    return out


ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key", envvar="COMFYFLEET_API_KEY", help="A bearer API key (instead of basic auth)."
    ),
]
Url = Annotated[
    str, typer.Option("--url", envvar="COMFYFLEET_URL", help="The balancer's base URL.")
]
DEFAULT_URL = "http://127.0.0.1:7999"


@workflow_app.command("publish")
def publish(
    name: Annotated[str | None, typer.Argument(help="The workflow's name.")] = None,
    api: Annotated[
        Path | None,
        typer.Option("--api", envvar="WORKFLOW_API", help="The API-format graph (NAME-api.json)."),
    ] = None,
    ui: Annotated[
        Path | None,
        typer.Option("--ui", envvar="WORKFLOW_UI", help="The UI-format graph (NAME.json)."),
    ] = None,
    params: Annotated[
        Path | None,
        typer.Option(
            "--params",
            envvar="WORKFLOW_PARAMS",
            help="The params file (NAME.params.json); omitted: the active version's carry over.",
        ),
    ] = None,
    folder: Annotated[
        Path | None,
        typer.Option(
            "--dir", envvar="WORKFLOW_DIR", help="Publish every workflow of a folder instead."
        ),
    ] = None,
    note: Annotated[str, typer.Option("--note", envvar="WORKFLOW_NOTE", help="What changed.")] = "",
    force: Annotated[
        bool,
        typer.Option(
            "--force", envvar="WORKFLOW_FORCE", help="Publish even if the params contract breaks."
        ),
    ] = False,
    url: Url = DEFAULT_URL,
    username: opt.Username = None,
    password: opt.Password = None,
    api_key: ApiKey = None,
) -> None:
    """Publish a new version of a workflow (or of each in --dir) and make it active."""
    if folder is not None:
        if name or api or ui or params:
            raise typer.BadParameter("--dir takes no NAME, --api, --ui or --params")
        bodies = _folder_bodies(folder, note, force)
    elif name and api:
        bodies = {name: _body(api, ui, params, note, force)}
    else:
        raise typer.BadParameter("give NAME --api FILE, or --dir FOLDER")
    balancer = _balancer(url, username, password, api_key)
    for workflow, body in bodies.items():
        done = _run(balancer.call("POST", f"/api/v1/workflows/{workflow}/versions", body))
        typer.echo(f"{workflow}  {done['version']}  {done['outcome']}")
        for warning in done["warnings"]:
            typer.echo(f"  warning: {warning}", err=True)
        if done["dropped_params"]:
            typer.echo(f"  dropped params: {', '.join(done['dropped_params'])}", err=True)


@workflow_app.command("list")
def list_workflows(
    url: Url = DEFAULT_URL,
    username: opt.Username = None,
    password: opt.Password = None,
    api_key: ApiKey = None,
) -> None:
    """List published workflows: name, active version, params."""
    listing = _run(_balancer(url, username, password, api_key).call("GET", "/api/v1/workflows"))
    for wf in listing["workflows"]:
        typer.echo(f"{wf['name']:<24}  {wf['version']}  {', '.join(wf['params']) or '-'}")


@workflow_app.command("versions")
def versions(
    name: Annotated[str, typer.Argument(help="The workflow's name.")],
    url: Url = DEFAULT_URL,
    username: opt.Username = None,
    password: opt.Password = None,
    api_key: ApiKey = None,
) -> None:
    """A workflow's versions, newest first; `*` marks the active one."""
    balancer = _balancer(url, username, password, api_key)
    history = _run(balancer.call("GET", f"/api/v1/workflows/{name}/versions"))
    for v in history["versions"]:
        mark = "*" if v["active"] else " "
        who = v["author"] or "-"
        typer.echo(f"{mark} {v['version']}  {_when(v['published_ms'])}  {who:<20}  {v['note']}")


@workflow_app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="The workflow's name.")],
    version: Annotated[str, typer.Argument(help="A stored version (see `versions`).")],
    note: Annotated[str, typer.Option("--note", envvar="WORKFLOW_NOTE", help="Why.")] = "",
    url: Url = DEFAULT_URL,
    username: opt.Username = None,
    password: opt.Password = None,
    api_key: ApiKey = None,
) -> None:
    """Make a stored version of a workflow active again."""
    balancer = _balancer(url, username, password, api_key)
    body = {"version": version, "note": note}
    done = _run(balancer.call("POST", f"/api/v1/workflows/{name}/rollback", body))
    typer.echo(f"{name}  {done['version']}  {done['outcome']} (was {done['previous'] or '-'})")


@workflow_app.command("retire")
def retire(
    name: Annotated[str, typer.Argument(help="The workflow's name.")],
    url: Url = DEFAULT_URL,
    username: opt.Username = None,
    password: opt.Password = None,
    api_key: ApiKey = None,
) -> None:
    """Take a workflow out of the listing (its versions stay; rollback brings it back)."""
    _run(_balancer(url, username, password, api_key).call("DELETE", f"/api/v1/workflows/{name}"))
    typer.echo(f"{name}  retired")
