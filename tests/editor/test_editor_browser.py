"""The editor end to end, as a person uses it: `comfyfleet up` (a real balancer, node and
ComfyUI stand-in), headless Chromium opens the balancer's `/` behind basic auth, picks the
fleet's `solid` workflow from the template browser, runs it (Run -> the fleet's native API
-> a node) and sees its image in the editor, publishes it as `e2e-solid` with the colour as
its one param, and then `POST /api/v1/jobs` with that param draws in the colour asked for.

Screenshots of each step are saved under `artifacts/editor/` (ARTIFACTS_DIR overrides),
whatever the outcome; `docs/editor-publish.png` in the README is one of them.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from comfyfleet.redis_server import RedisServer
from comfyfleet.web.auth import basic_auth_header
from tests.api.browser import Page, browser_page, chromium
from tests.support.waiting import until

USER = "editor"
PASSWORD = "pw-" + uuid.uuid4().hex
START_DEADLINE_S = 90.0
# The frontend is ~50 MB of modules; a loaded 2-core machine takes a while to start it.
LOAD_DEADLINE_S = 150.0
STEP_DEADLINE_S = 60.0
BLUE = 0x0000FF
SOLID_CARD = "[data-testid='template-workflow-solid']"
VIEWPORT = {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False}
ARTIFACTS = (
    Path(os.environ.get("ARTIFACTS_DIR", Path(__file__).parents[2] / "artifacts")) / "editor"
)


@pytest.fixture
async def fleet_url(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[str]:
    """`comfyfleet up` with one node, on the suite's Redis; its balancer's URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "REDIS_"))}
    up = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "comfyfleet", "up", "--port", "0", "--node-port", "0",
        "--nodes", "1", "--data-dir", str(tmp_path / "fleet"), "--redis-url", redis_server.url,
        "--namespace", f"ed{uuid.uuid4().hex[:8]}", "--username", USER, "--password", PASSWORD,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    assert up.stdout is not None
    try:
        seen = b""
        async with asyncio.timeout(START_DEADLINE_S):
            while b"Press Ctrl-C" not in seen:
                line = await up.stdout.readline()
                assert line, f"`up` ended before it was up:\n{seen.decode()}"
                seen += line
        balancer = next(ln for ln in seen.decode().splitlines() if ln.split()[:1] == ["balancer"])
        yield balancer.split()[1]
    finally:
        up.terminate()
        await up.wait()


class Editor:
    """The page, and the steps a person takes in it; each step ends with a screenshot."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url
        self.shots: list[Path] = []

    async def shot(self, name: str) -> None:
        data = await self.page.send("Page.captureScreenshot", {"format": "png"})
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{len(self.shots) + 1:02d}-{name}.png"
        path.write_bytes(base64.b64decode(data["data"]))
        self.shots.append(path)

    async def wait(self, expression: str, what: str, timeout_s: float = STEP_DEADLINE_S) -> Any:
        try:
            return await until(lambda: self.page.evaluate(expression), bool,
                               timeout_s=timeout_s, what=what)  # fmt: skip
        except AssertionError:
            await self.shot("timed-out")
            raise

    async def click(self, selector: str, what: str) -> None:
        found = f"document.querySelector({json.dumps(selector)})"
        await self.wait(f"!!{found}", what)
        await self.page.evaluate(f"{found}.click()")


async def _png(http: aiohttp.ClientSession, url: str) -> Image.Image:
    async with http.get(url) as res:
        assert res.status == 200, (url, res.status)
        return Image.open(io.BytesIO(await res.read()))


# Starting a fleet and a browser, loading ~50 MB of frontend modules and five steps each
# bounded by its own deadline: beyond the suite's 120 s per test on a loaded machine.
@pytest.mark.timeout(600)
async def test_edit_run_publish_and_call_from_the_api(fleet_url: str, tmp_path: Path) -> None:
    chromium()
    auth = basic_auth_header(USER, PASSWORD)
    async with (
        aiohttp.ClientSession(headers={"Authorization": auth}) as http,
        browser_page(tmp_path / "profile", (USER, PASSWORD)) as page,
    ):
        editor = Editor(page, fleet_url)
        await page.send("Emulation.setDeviceMetricsOverride", VIEWPORT)
        await page.goto(fleet_url + "/")
        await editor.wait(
            "!!(window.app?.graph && document.getElementById('comfyfleet-publish-open'))",
            "the editor with the fleet's extension",
            LOAD_DEADLINE_S,
        )
        # The template browser lists the fleet's published workflows (a new principal is
        # shown it at once; otherwise it is Workflow > Browse Templates): search "solid".
        search = ".p-dialog input[placeholder^='Search']"
        if not await page.evaluate(f"!!document.querySelector({json.dumps(search)})"):
            await page.evaluate("app.extensionManager.command.execute('Comfy.BrowseTemplates')")
        await editor.wait("!!document.querySelector('.template-card')", "the fleet's templates")
        await editor.shot("templates")
        await page.evaluate(f"""(() => {{
            const box = document.querySelector({json.dumps(search)});
            box.value = "solid";
            box.dispatchEvent(new Event("input", {{bubbles: true}}));
        }})()""")
        assert page.auth_challenges >= 1
        await editor.click(SOLID_CARD, "the solid template")
        await editor.wait("app.graph.nodes.some(n => n.title === 'Solid Color') && "
                          f"!document.querySelector({json.dumps(SOLID_CARD)})",
                          "the solid workflow in the editor")  # fmt: skip
        await editor.shot("loaded")

        # Run: the frontend posts /api/prompt and follows /ws; the image lands on the node.
        await editor.click("button.p-splitbutton-button, .comfyui-queue-button button",
                           "the Run button")  # fmt: skip
        shown = await editor.wait(
            "(app.graph.nodes.find(n => n.title === 'Save Image')?.imgs || [])"
            ".map(i => i.src).filter(s => s.includes('/view?'))[0]",
            "the finished image on the Save Image node",
        )
        await editor.shot("ran")
        image = await _png(http, shown)
        assert image.getpixel((0, 0))[:3] == (255, 0, 0)  # the workflow's red

        # Publish: the dialog exposes Solid Color's colour as the one param.
        await editor.click("#comfyfleet-publish-open", "the Publish to fleet button")
        await editor.wait("!!document.getElementById('comfyfleet-publish-name')", "the dialog")
        # Opened from the fleet's `solid`, the dialog offers to republish it with its params.
        checked = "document.querySelectorAll('[data-param-key]:checked').length"
        await editor.wait(f"{checked} === 4", "solid's four params ticked")
        assert await page.evaluate("document.getElementById('comfyfleet-publish-name').value") == (
            "solid"
        )
        await page.evaluate("""(() => {
            const name = document.getElementById('comfyfleet-publish-name');
            name.value = 'e2e-solid';
            name.dispatchEvent(new Event('change'));
        })()""")
        await editor.wait(f"{checked} === 0", "a new name's params untouched")
        await page.evaluate("""(() => {
            document.getElementById('comfyfleet-publish-note').value = 'from the editor';
            document.querySelector('[data-param-key="Solid Color.color"]').click();
        })()""")
        await editor.shot("publish-dialog")
        await editor.click("#comfyfleet-publish-submit", "Publish")
        status_text = "document.getElementById('comfyfleet-publish-status').dataset.version"
        version = await editor.wait(status_text, "the published version")
        await editor.shot("published")

    async with aiohttp.ClientSession(headers={"Authorization": auth}) as http:
        status, workflow = await _get(http, f"{fleet_url}/api/v1/workflows/e2e-solid")
        assert status == 200, workflow
        assert workflow["version"] == version
        assert set(workflow["params"]) == {"color"}
        assert workflow["params"]["color"]["default"] == 0xFF0000
        body = {"workflow": "e2e-solid", "params": {"color": BLUE}}
        async with http.post(f"{fleet_url}/api/v1/jobs", json=body) as res:
            job = await res.json()
            assert res.status == 202, job
        assert job["workflow_version"] == version

        async def state() -> dict[str, Any]:
            return dict((await _get(http, f"{fleet_url}/api/v1/jobs/{job['id']}"))[1])

        done = await until(state, lambda j: j["status"] in ("succeeded", "failed", "cancelled"),
                           timeout_s=STEP_DEADLINE_S, what="the e2e-solid job")  # fmt: skip
        assert done["status"] == "succeeded", done
        image = await _png(http, f"{fleet_url}/api/v1/jobs/{job['id']}/outputs/0")
        assert image.getpixel((0, 0))[:3] == (0, 0, 255)  # the param's blue, not the red


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as res:
        return res.status, await res.json()
