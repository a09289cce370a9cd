"""Finding 8 (part): job errors showed absolute paths of the ComfyUI host."""

from __future__ import annotations

from comfyfleet.config import RedisConfig
from comfyfleet.models.job import JobError, JobSpec
from comfyfleet.store.jobs import JobStore
from comfyfleet.web.redact import strip_host_paths
from tests.security.fleet import fleet
from tests.security.graphs import solid

MESSAGE = ("node 1 (LoadImage) raised FileNotFoundError: [Errno 2] No such file or "
           "directory: '/home/gpu/ComfyUI/input/secret.png'")  # fmt: skip
TRACEBACK = ['  File "/opt/ComfyUI/execution.py", line 496, in execute\n',
             '  File "C:\\ComfyUI\\nodes.py", line 1650, in load_image\n']  # fmt: skip
HOST_PATHS = ("/home/gpu", "/opt/ComfyUI", "C:\\\\ComfyUI", "ComfyUI/input")


async def test_job_errors_name_no_host_paths(redis_config: RedisConfig) -> None:
    store = JobStore.from_config(redis_config)
    try:
        job, _ = await store.enqueue(JobSpec(graph=solid(), max_attempts=1))
        await store.claim("gpu-1", lease_ms=60_000)
        error = JobError(code="execution_error", message=MESSAGE, comfy_node_id="1",
                         details={"traceback": TRACEBACK})  # fmt: skip
        await store.fail(job.id, "gpu-1", error)
    finally:
        await store.close()
    async with fleet(redis_config) as f:
        for path in (f"/api/v1/jobs/{job.id}", "/api/v1/jobs", f"/api/v1/jobs/{job.id}/events"):
            status, _, body = await f.call("GET", path)
            assert status == 200
            text = body.decode()
            assert "secret.png" in text  # the file is still named...
            assert "execution.py" in text
            for host_path in HOST_PATHS:  # ...but not where it lives
                assert host_path not in text, (path, host_path)


def test_urls_and_relative_names_are_left_alone() -> None:
    kept = "see https://comfy.example/api/v1/x and sub/dir/x.png, 1/2 and ../x"
    assert strip_host_paths(kept) == kept
    assert strip_host_paths("at /a/b/c.py and D:\\e\\f.txt") == "at c.py and f.txt"
