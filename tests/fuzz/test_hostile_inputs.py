"""The classes of input the attacker's probe found, generated: Unicode digits where numbers
go, deep nesting inside otherwise valid bodies, DNS labels too long for DNS, large valid
bodies, and hostile Host headers (tests/security holds the exact reproductions). Each
runs against the same in-process fleet as the schemathesis run; `make fuzz` draws more."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import AUTH, ThreadFleet
from tests.fuzz.test_schemathesis import FUZZ

JSON = {**AUTH, "Content-Type": "application/json"}
GRAPH = {
    "1": {"class_type": "EmptyImage",
          "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
    "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "fz", "images": ["1", 0]}},
}  # fmt: skip
# Digits other than 0-9: `str.isdigit()` accepts many of them, `int()` some.
ODD_DIGITS = st.text(
    st.characters(categories=("Nd", "No"), exclude_characters="0123456789"),
    min_size=1,
    max_size=4,
).map(lambda s: s if s.strip() else "²")


def _problem(r: requests.Response) -> dict[str, Any]:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/problem+json"), r.text[:200]
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture(scope="module")
def balancer(fleet: ThreadFleet) -> str:
    return fleet.urls["balancer"]


@pytest.fixture(scope="module")
def done_job(balancer: str) -> dict[str, Any]:
    """A job that ran, so it has outputs (and output URLs) to look at."""
    r = requests.post(f"{balancer}/api/v1/jobs?wait=30", json={"graph": GRAPH}, headers=AUTH,
                      timeout=40)  # fmt: skip
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    assert job["outputs"]
    return job


def _numeric_params(doc: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(method, path, where, name) of every integer path or query parameter."""
    found = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                if p["in"] in ("path", "query") and p.get("schema", {}).get("type") == "integer":
                    found.append((method.upper(), path, p["in"], p["name"]))
    return found


def _fuzz_numbers(base: str, targets: list[tuple[str, str, str, str]], job_id: str) -> None:
    @FUZZ
    @given(target=st.sampled_from(targets), raw=ODD_DIGITS)
    def run(target: tuple[str, str, str, str], raw: str) -> None:
        method, path, where, name = target
        url = base + path.replace("{job_id}", job_id)
        url = url.replace("{" + name + "}", raw) if where == "path" else url
        params = {name: raw} if where == "query" else None
        r = requests.request(method, url, params=params, headers=AUTH, timeout=10)
        assert r.status_code in (400, 404, 405), (target, raw, r.status_code, r.text[:200])
        _problem(r)

    run()


def test_unicode_digits_in_numeric_values(fleet: ThreadFleet, done_job: dict[str, Any]) -> None:
    for role in ("balancer", "node"):
        base = fleet.urls[role]
        doc = requests.get(f"{base}/openapi.json", headers=AUTH, timeout=10).json()
        targets = _numeric_params(doc)
        assert targets, role
        _fuzz_numbers(base, targets, done_job["id"])


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict) and value:
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))]
    if isinstance(value, list) and value:
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))]
    return [path]


def _bodies(doc: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(method, path, example) of every JSON request body example in the document."""
    found = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            for example in media.get("examples", {}).values():
                if isinstance(example.get("value"), dict) and "{" not in path:
                    found.append((method.upper(), path, example["value"]))
    return found


def test_deep_nesting_inside_valid_bodies(balancer: str) -> None:
    doc = requests.get(f"{balancer}/openapi.json", headers=AUTH, timeout=10).json()
    bodies = _bodies(doc)
    assert any(path == "/api/v1/jobs" for _, path, _ in bodies)
    marker = '"__DEEP__"'

    @FUZZ
    @given(pick=st.sampled_from(bodies), data=st.data(), depth=st.integers(65, 1000))
    def run(pick: tuple[str, str, Any], data: st.DataObject, depth: int) -> None:
        method, path, example = pick
        leaf = data.draw(st.sampled_from(_leaves(example)))
        body = orjson.loads(orjson.dumps(example))
        holder = body
        for key in leaf[:-1]:
            holder = holder[key]
        if leaf:
            holder[leaf[-1]] = "__DEEP__"
        raw = orjson.dumps(body).replace(marker.encode(), b"[" * depth + b"]" * depth)
        r = requests.request(method, balancer + path, data=raw, headers=JSON, timeout=10)
        assert r.status_code == 422, (path, leaf, depth, r.status_code, r.text[:200])
        assert "levels deep" in _problem(r)["detail"]

    run()


LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=64, max_size=300)


def test_dns_labels_too_long_for_dns(balancer: str) -> None:
    @FUZZ
    @given(label=LABEL, where=st.sampled_from(["webhook_url", "url"]), https=st.booleans())
    def run(label: str, where: str, https: bool) -> None:
        url = f"{'https' if https else 'http'}://{label}.example.com/x.png"
        if where == "url":
            r = requests.post(f"{balancer}/api/v1/inputs", json={"url": url}, headers=AUTH,
                              timeout=10)  # fmt: skip
        else:
            body = {"graph": GRAPH, "webhook_url": url, "pool": "nowhere"}
            r = requests.post(f"{balancer}/api/v1/jobs", json=body, headers=AUTH, timeout=10)
        assert r.status_code == 422, (url, r.status_code, r.text[:200])
        _problem(r)

    run()


def test_large_valid_bodies_are_read_whole(balancer: str) -> None:
    @FUZZ
    @given(size=st.integers(60_000, 2 * 1024 * 1024 - 1024))
    def run(size: int) -> None:
        graph = orjson.loads(orjson.dumps(GRAPH))
        graph["1"]["_meta"] = {"notes": "n" * (size - 400)}
        # A pool no node serves: the job is accepted and waits, nothing runs.
        raw = orjson.dumps({"graph": graph, "pool": "nowhere"})
        r = requests.post(f"{balancer}/api/v1/jobs", data=raw, headers=JSON, timeout=30)
        assert r.status_code == 202, (len(raw), r.status_code, r.text[:200])

    run()


HOSTS = st.one_of(
    st.from_regex(r"\A[a-z0-9.-]{1,60}(:[0-9]{1,5})?\Z"),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80),
)


def test_hostile_host_headers_never_reach_a_url(balancer: str, done_job: dict[str, Any]) -> None:
    expected = f"{balancer}/api/v1/jobs/{done_job['id']}/outputs/0"

    @FUZZ
    @given(host=HOSTS)
    def run(host: str) -> None:
        headers = {**AUTH, "Host": host}
        r = requests.get(f"{balancer}/api/v1/jobs/{done_job['id']}", headers=headers,
                         timeout=10)  # fmt: skip
        assert r.status_code < 500, (host, r.status_code)
        if r.status_code == 200:
            assert [o["url"] for o in r.json()["outputs"]] == [expected], host

    run()
