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


# Swagger UI's own request path ("Try it out"): authorize as in the dialog, then execute
# `listJobs` with the authorized credentials; the status it got back.
TRY_LIST_JOBS = """
(async () => {
  const sys = window.ui.getSystem();
  sys.authActions.logout(["basicAuth", "bearerAuth"]);
  sys.authActions.authorize({bearerAuth: {name: "bearerAuth",
    schema: {type: "http", scheme: "bearer"}, value: KEY}});
  try {
    const res = await sys.fn.execute({
      spec: sys.specSelectors.specJson().toJS(), operationId: "listJobs",
      contextUrl: window.location.origin + "/openapi.json",
      securities: {authorized: sys.authSelectors.authorized().toJS()}, parameters: {}});
    return res.status;
  } catch (err) {
    return err.status || String(err);
  }
})()
"""


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


async def test_authorize_with_an_api_key_overrides_the_browsers_login(
    balancer: Role, tmp_path: Path
) -> None:
    status, _, body = await balancer.call(
        "POST", "/api/v1/apikeys", auth=ADMIN_AUTH, json={"name": "swagger"}
    )
    assert status == 201
    key = json.loads(body)["key"]
    async with browser_page(tmp_path / "profile", (USER, PASSWORD)) as page:
        await page.goto(f"{balancer.url}/docs")
        await until(lambda: page.evaluate("typeof window.ui"), lambda t: t == "object",
                    timeout_s=RENDER_DEADLINE_S, what="Swagger UI")  # fmt: skip
        await until(lambda: page.evaluate("!!window.ui.getSystem().specSelectors.specJson().size"),
                    bool, timeout_s=RENDER_DEADLINE_S, what="the spec")  # fmt: skip
        # The page was opened with the admin's basic auth; a bearer key authorized in the
        # dialog must be what the call carries: a wrong key is refused, the right one works.
        wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
        assert await page.evaluate(TRY_LIST_JOBS.replace("KEY", json.dumps(wrong))) == 401
        assert await page.evaluate(TRY_LIST_JOBS.replace("KEY", json.dumps(key))) == 200


async def test_node_docs_render_offline(node: Role, tmp_path: Path) -> None:
    await _renders(node, tmp_path)
