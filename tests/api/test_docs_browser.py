"""`/docs` renders offline in headless Chromium for both roles, behind basic auth: the page,
the Swagger UI bundle and the spec all come from the role itself (the page's CSP allows
nothing else, and Chromium runs with background networking off), the credentials prompt is
answered once, and the DOM ends up with one operation block per documented operation."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.browser import browser_page
from tests.api.conftest import ADMIN_AUTH, PASSWORD, USER, Role
from tests.support.waiting import until

RENDER_DEADLINE_S = 60.0


async def _renders(role: Role, tmp_path: Path) -> None:
    status, _, body = await role.call("GET", "/openapi.json", auth=ADMIN_AUTH)
    assert status == 200
    operation_ids = [
        op["operationId"] for item in json.loads(body)["paths"].values() for op in item.values()
    ]
    async with browser_page(tmp_path / "profile", (USER, PASSWORD)) as page:
        await page.goto(f"{role.url}/docs")
        count = "document.querySelectorAll('.opblock-summary-path').length"
        await until(
            lambda: page.evaluate(count),
            lambda n: (n or 0) >= len(operation_ids),
            timeout_s=RENDER_DEADLINE_S,
            what="Swagger UI to render every operation",
        )
        dom = await page.evaluate("document.documentElement.outerHTML")
        assert page.auth_challenges >= 1  # the page was behind auth, and the answer worked
    assert 'class="swagger-ui' in dom, dom[:2000]
    missing = [op_id for op_id in operation_ids if op_id not in dom]
    assert not missing, f"operations not rendered: {missing}"
    assert "Authorize" in dom  # the security schemes are there for the button


async def test_balancer_docs_render_offline(balancer: Role, tmp_path: Path) -> None:
    await _renders(balancer, tmp_path)


async def test_node_docs_render_offline(node: Role, tmp_path: Path) -> None:
    await _renders(node, tmp_path)
