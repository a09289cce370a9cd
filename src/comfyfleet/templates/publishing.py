"""Writing workflow versions: publish, rollback, retire, and the start-up seed from folders.

Every change is one Lua script (`lua/publish.lua`, `rollback.lua`, `retire.lua`) that moves
the active pointer (`{ns}:workflows` and the workflow's "current") and appends to its log in
the same atomic step, so concurrent publishes of one name both land as versions and the
pointer always names the last one. The params contract is checked in Python against the
active version; the script refuses ("moved") when the active version changed since, and the
publish is checked again against the new one.

Readers (`registry.py`) read the pointer on every request and cache versions by their
content hash, so a change is live on every balancer replica with the next request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel

from comfyfleet.clock import SYSTEM_CLOCK, Clock
from comfyfleet.errors import Conflict, StoreError, UnknownWorkflow, ValidationFailed
from comfyfleet.store.keys import Keys
from comfyfleet.store.scripts import ARGS_PRELUDE, Script, text
from comfyfleet.templates.contract import (
    Break,
    contract_breaks,
    describe,
    missing_titles,
    without_params,
)
from comfyfleet.templates.loader import Files, build_template, check_graph
from comfyfleet.templates.model import Template
from comfyfleet.templates.registry import WorkflowRegistry

# Entries kept in each workflow's log (publishes, rollbacks, retires); older ones drop off.
LOG_LIMIT = 1000
# A publish re-checks its contract when another publish moved the active version first.
# Every round some racer wins, so a publish racing N others lands within N + 1 rounds; more
# rounds than this means a storm of publishes to one name, answered 409.
MAX_PUBLISH_ROUNDS = 64
SEED_AUTHOR = "balancer (workflow folders)"
BODY_FILES = Files(api="graph", params="params", ui="ui")
_LUA = Path(__file__).parent / "lua"
Outcome = Literal["published", "activated", "unchanged", "seen", "rolled_back"]


class ContractBroken(ValidationFailed):
    """A new version would break calls that work against the active one (see contract.py)."""

    code = "workflow-contract"
    title = "Workflow params contract broken"


class LogEntry(BaseModel):
    """One change of a workflow. `version`: the version made active ("" for a retire);
    `previous`: the one active before ("" none). `at_ms`: ms since the epoch."""

    action: Literal["publish", "activate", "rollback", "retire"]
    version: str
    previous: str
    author: str
    note: str
    at_ms: int


@dataclass(frozen=True)
class Draft:
    """What a publisher sends: the API graph, the optional UI graph, and the params file
    (None: carry over the active version's params)."""

    graph: dict[str, Any]
    ui: dict[str, Any] | None = None
    declaration: dict[str, Any] | None = None


@dataclass(frozen=True)
class Published:
    name: str
    version: str
    outcome: Outcome
    # The version active before ("" when none).
    previous: str
    warnings: tuple[str, ...] = ()
    # Params of the active version dropped by a forced publish (their node is gone).
    dropped: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.outcome in ("published", "activated", "rolled_back")


def _script(redis: aioredis.Redis, name: str) -> Script[Any]:
    return Script(redis, ARGS_PRELUDE + (_LUA / f"{name}.lua").read_text())


@dataclass(frozen=True)
class PublishArgs:
    name: str
    version: str
    template: str  # JSON
    author: str
    note: str
    now_ms: int
    expected: str  # the active version the caller checked against: "" none, "*" any
    mode: str  # "publish" (the API) or "seed" (a balancer's folders at start)
    log_limit: int


@dataclass(frozen=True)
class RollbackArgs:
    name: str
    version: str
    author: str
    note: str
    now_ms: int
    log_limit: int


@dataclass(frozen=True)
class RetireArgs:
    name: str
    author: str
    now_ms: int
    log_limit: int


class WorkflowPublisher:
    """The writes of the workflow registry; times from `clock` (ms)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, clock: Clock = SYSTEM_CLOCK) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.reader = WorkflowRegistry(redis, keys)
        self._publish: Script[PublishArgs] = _script(redis, "publish")
        self._rollback: Script[RollbackArgs] = _script(redis, "rollback")
        self._retire: Script[RetireArgs] = _script(redis, "retire")

    def _keys(self, name: str) -> list[str]:
        return [self.keys.workflow(name), self.keys.workflows, self.keys.workflow_log(name)]

    async def _run_publish(
        self, template: Template, *, author: str, note: str, expected: str, mode: str
    ) -> tuple[str, str]:
        """The publish script: (outcome, active version before)."""
        args = PublishArgs(
            name=template.name,
            version=template.version,
            template=template.model_dump_json(),
            author=author,
            note=note,
            now_ms=self.clock.now_ms(),
            expected=expected,
            mode=mode,
            log_limit=LOG_LIMIT,
        )
        reply = await self._publish(self._keys(template.name), args)
        return text(reply[0]), text(reply[1])

    async def seed(self, templates: Iterable[Template]) -> list[Published]:
        """Publish what a balancer loaded from its folders, without undoing the API's work:
        a workflow whose files still hold the version they held at the last start keeps
        whatever was published, rolled back or retired since."""
        out = []
        for template in templates:
            outcome, previous = await self._run_publish(
                template, author=SEED_AUTHOR, note="", expected="*", mode="seed"
            )
            out.append(Published(template.name, template.version, _outcome(outcome), previous))
        return out

    async def publish(
        self, name: str, draft: Draft, *, author: str, note: str = "", force: bool = False
    ) -> Published:
        """A new version of `name`, made active. ContractBroken (422, naming the param) when it
        breaks the active version's params and not `force`; WorkflowError when invalid."""
        for _ in range(MAX_PUBLISH_ROUNDS):
            active = await self._active(name)
            template, warnings, dropped = _prepare(name, draft, active, force)
            outcome, previous = await self._run_publish(
                template,
                author=author,
                note=note,
                expected=active.version if active else "",
                mode="publish",
            )
            if outcome != "moved":
                return Published(
                    name, template.version, _outcome(outcome), previous, warnings, dropped
                )
        raise Conflict(f"workflow {name!r} changed {MAX_PUBLISH_ROUNDS} times during a publish")

    async def _active(self, name: str) -> Template | None:
        try:
            return await self.reader.get(name)
        except UnknownWorkflow:
            return None

    async def rollback(self, name: str, version: str, *, author: str, note: str = "") -> Published:
        """Make a stored version active again; UnknownWorkflow (404) if there is none."""
        args = RollbackArgs(name, version, author, note, self.clock.now_ms(), LOG_LIMIT)
        reply = await self._rollback(self._keys(name), args)
        outcome, previous = text(reply[0]), text(reply[1])
        if outcome == "missing":
            raise UnknownWorkflow(
                f"workflow {name!r} has no version {version!r}", workflow=name, version=version
            )
        return Published(name, version, _outcome(outcome), previous)

    async def retire(self, name: str, *, author: str) -> str:
        """Take `name` out of the listing and unpinned submits; the version that was active.
        UnknownWorkflow (404) when it is not published."""
        args = RetireArgs(name, author, self.clock.now_ms(), LOG_LIMIT)
        reply = await self._retire(self._keys(name), args)
        if not reply:
            raise UnknownWorkflow(f"no workflow named {name!r}", workflow=name)
        return text(reply)

    async def log(self, name: str) -> list[LogEntry]:
        """The workflow's changes, newest first; UnknownWorkflow when it never existed."""
        raw = await self.redis.lrange(self.keys.workflow_log(name), 0, -1)
        if not raw and not await self.redis.exists(self.keys.workflow(name)):
            raise UnknownWorkflow(f"no workflow named {name!r}", workflow=name)
        try:
            return [LogEntry.model_validate(orjson.loads(item)) for item in reversed(raw)]
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise StoreError(f"workflow {name!r}: unreadable log entry: {exc}") from None


def _outcome(raw: str) -> Outcome:
    if raw not in ("published", "activated", "unchanged", "seen", "rolled_back"):
        raise StoreError(f"publish script answered {raw!r}")
    outcome: Outcome = raw  # type: ignore[assignment]  # checked just above
    return outcome


def _prepare(
    name: str, draft: Draft, active: Template | None, force: bool
) -> tuple[Template, tuple[str, ...], tuple[str, ...]]:
    """The template to publish, its UI warnings, and the carried-over params it dropped."""
    check_graph(BODY_FILES.api, draft.graph)  # before reading titles from it
    declaration = draft.declaration
    dropped: tuple[str, ...] = ()
    if declaration is None:
        declaration = dict(active.declaration) if active else {}
        gone = missing_titles(declaration, draft.graph)
        if gone and not force:
            _refuse(name, active, gone)
        dropped = tuple(b.param for b in gone)
        declaration = without_params(declaration, set(dropped)) if dropped else declaration
    template, warnings = build_template(name, draft.graph, declaration, draft.ui, BODY_FILES)
    if active is not None and not force:
        breaks = contract_breaks(active, template)
        if breaks:
            _refuse(name, active, breaks)
    return template, tuple(warnings), dropped


def _refuse(name: str, active: Template | None, breaks: list[Break]) -> None:
    version = active.version if active else ""
    raise ContractBroken(
        f"workflow {name!r}: this version breaks the params contract of active version "
        f"{version}: {describe(breaks)}; publish with force to do it anyway",
        param=breaks[0].param,
        breaks=[{"param": b.param, "reason": b.reason} for b in breaks],
        active_version=version,
    )


async def publish(
    redis: aioredis.Redis, keys: Keys, templates: Iterable[Template]
) -> list[Published]:
    """Seed the registry from loaded folders (see `WorkflowPublisher.seed`)."""
    return await WorkflowPublisher(redis, keys).seed(templates)
