"""The MCP server: tools, resources and change notifications over a balancer's public API.

`FleetMcp` holds the catalog (workflows as tools), the job runner and who to tell about
changes. Changes reach clients of both protocol eras: `subscriptions/listen` streams
(2026-07-28 clients) through the SDK's subscription bus, and `notifications/tools/
list_changed` on each handshake-era session that has asked for tools or resources.
The registry is watched by polling the workflows listing with its ETag every `watch_ms`
(a bodiless 304 while nothing changed), so a publish, rollback or retire on any balancer
replica reaches agents within one poll.
"""

from __future__ import annotations

import base64
import binascii
import re
import weakref
from typing import Any

import anyio
import mcp_types as types
import structlog
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    ResourcesListChanged,
    ToolsListChanged,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from comfyfleet import __version__
from comfyfleet.config import McpConfig
from comfyfleet.mcp import resources
from comfyfleet.mcp.catalog import GENERIC, Catalog
from comfyfleet.mcp.client import ApiError, BalancerClient
from comfyfleet.mcp.jobs import JobRunner, refused, tool_error
from comfyfleet.mcp.progress import Progress

log = structlog.get_logger(__name__)
Ctx = ServerRequestContext[Any, Any]
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
INSTRUCTIONS = (
    "Generate images on a fleet of ComfyUI GPUs. Each published workflow is a tool taking "
    "its typed params; run_graph runs a raw API-format graph. Results carry image previews "
    "and comfyfleet:// links to the full outputs. A long job answers with its id: follow it "
    "with get_job. upload_image gives the name to pass as an image param."
)


class FleetMcp:
    def __init__(self, cfg: McpConfig, client: BalancerClient) -> None:
        self.cfg = cfg
        self.client = client
        self.catalog = Catalog(client)
        self.runner = JobRunner(client, preview_px=cfg.preview_px, preview_bytes=cfg.preview_bytes)
        self.bus = InMemorySubscriptionBus()
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()
        self.server: Server[Any] = Server(
            "comfyfleet",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_read_resource=self._read_resource,
            on_subscriptions_listen=ListenHandler(self.bus),
        )

    def init_options(self) -> InitializationOptions:
        changes = NotificationOptions(tools_changed=True, resources_changed=True)
        return self.server.create_initialization_options(changes)

    # -- following the registry --------------------------------------------------------

    async def watch(self) -> None:
        """Poll the listing every `watch_ms`; tell every client when the tools changed."""
        while True:
            await anyio.sleep(self.cfg.watch_ms / 1000)
            # When the balancer is away, the tools stay as they were until the next look.
            if await self._refreshed():
                log.info("tools_changed", workflows=sorted(self.catalog.workflows))
                await self.notify()

    async def _refreshed(self) -> bool:
        try:
            return await self.catalog.refresh()
        except ApiError as exc:
            log.warning("workflows_refresh_failed", error=str(exc))
            return False

    async def notify(self) -> None:
        await self.bus.publish(ToolsListChanged())
        await self.bus.publish(ResourcesListChanged())
        for connection in list(self._connections):
            try:
                await connection.send_tool_list_changed()
                await connection.send_resource_list_changed()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._connections.discard(connection)  # that client has gone

    def _remember(self, ctx: Ctx) -> None:
        # Handshake-era clients get list_changed as notifications on their connection's
        # standalone channel; modern ones listen through the bus instead. A lowlevel
        # handler reaches the connection only through its per-request session (the SDK's
        # own Context exposes it, but the lowlevel runner does not hand one out); held
        # weakly, so a closed connection drops out by itself.
        connection = getattr(ctx.session, "_connection", None)
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS and isinstance(
            connection, Connection
        ):
            self._connections.add(connection)

    # -- handlers ----------------------------------------------------------------------

    async def _list_tools(self, ctx: Ctx, params: Any) -> types.ListToolsResult:
        self._remember(ctx)
        return types.ListToolsResult(tools=self.catalog.tools())

    async def _list_resources(self, ctx: Ctx, params: Any) -> types.ListResourcesResult:
        self._remember(ctx)
        return types.ListResourcesResult(resources=resources.workflow_resources(self.catalog))

    async def _list_templates(self, ctx: Ctx, params: Any) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=resources.templates())

    async def _read_resource(
        self, ctx: Ctx, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        return await resources.read(self.client, str(params.uri))

    async def _call_tool(
        self, ctx: Ctx, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        self._remember(ctx)
        args = dict(params.arguments or {})

        async def report(p: Progress) -> None:
            await ctx.session.report_progress(p.progress, p.total, p.message)

        if params.name in GENERIC:
            return await self._generic(params.name, args, report)
        if params.name not in self.catalog.workflows:
            # Published since the last poll? One look before saying no.
            if await self._refreshed():
                await self.notify()
            if params.name not in self.catalog.workflows:
                return tool_error(f"no tool {params.name!r}; list the tools again")
        body = {"workflow": params.name, "params": args}
        return await self.runner.run(body, wait_s=self.cfg.wait_s, report=report)

    async def _generic(self, name: str, args: dict[str, Any], report: Any) -> types.CallToolResult:
        try:
            match name:
                case "run_graph":
                    graph = args.get("graph")
                    if not isinstance(graph, dict) or not graph:
                        return tool_error("param 'graph' must be a non-empty object", param="graph")
                    return await self.runner.run({"graph": graph}, wait_s=self.cfg.wait_s,
                                                 report=report)  # fmt: skip
                case "get_job":
                    job_id, wait_s = _job_id(args), args.get("wait_s", 0)
                    if (
                        not isinstance(wait_s, int)
                        or isinstance(wait_s, bool)
                        or not 0 <= wait_s <= 60
                    ):
                        return tool_error("param 'wait_s' must be an integer from 0 to 60",
                                          param="wait_s")  # fmt: skip
                    return await self.runner.follow(job_id, wait_s=wait_s, report=report)
                case "cancel_job":
                    job = await self.client.json("DELETE", f"/api/v1/jobs/{_job_id(args)}")
                    return await self.runner.result(job)
                case "list_workflows":
                    return await self._workflows()
                case _:
                    return await self._upload(args)
        except BadArgument as exc:
            return tool_error(str(exc), param=exc.param)
        except ApiError as exc:
            return refused(exc)

    async def _workflows(self) -> types.CallToolResult:
        listing = (await self.client.workflows()).workflows or []
        lines = [f"{w['name']} (version {w['version']}): {w['description']} params: "
                 f"{', '.join(w['params']) or 'none'}" for w in listing]  # fmt: skip
        text = "\n".join(lines) or "no workflows are published"
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)],
            structured_content={"workflows": listing},
        )

    async def _upload(self, args: dict[str, Any]) -> types.CallToolResult:
        data, url = args.get("data"), args.get("url")
        if (data is None) == (url is None):
            raise BadArgument("give exactly one of 'data' (base64) or 'url'", "data")
        if url is not None:
            if not isinstance(url, str):
                raise BadArgument("param 'url' must be a string", "url")
            stored = await self.client.json("POST", "/api/v1/inputs", {"url": url})
        else:
            try:
                raw = base64.b64decode(str(data), validate=True)
            except binascii.Error:
                raise BadArgument("param 'data' must be base64", "data") from None
            filename = str(args.get("filename") or "upload")[:255]
            stored = await self.client.upload(raw, filename)
        text = (f"uploaded as {stored['name']!r} ({stored.get('content_type')}, "
                f"{stored.get('width')}x{stored.get('height')}); pass that name as an image "
                "param")  # fmt: skip
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], structured_content=stored
        )


class BadArgument(Exception):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def _job_id(args: dict[str, Any]) -> str:
    job_id = args.get("job_id")
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise BadArgument("param 'job_id' must be a job's id (1 to 64 of A-Z a-z 0-9 _ -)",
                          "job_id")  # fmt: skip
    return job_id
