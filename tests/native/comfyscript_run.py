"""Run by test_clients.py in a process of its own (ComfyScript keeps a watcher thread and
a global client): `load()` the fleet with basic-auth credentials, run a model-free graph,
print the images' sizes as JSON."""

from __future__ import annotations

import json
import sys

import aiohttp

from comfyfleet.web.auth import basic_auth_header


def main() -> None:
    url, user, password = sys.argv[1:4]
    from comfy_script.client import Client
    from comfy_script.runtime import Workflow, load

    header = {"Authorization": basic_auth_header(user, password)}
    load(Client(url, session_factory=lambda: aiohttp.ClientSession(headers=header)),
         save_script_source=False)  # fmt: skip
    from comfy_script.runtime.nodes import EmptyImage, SaveImage  # made by load()

    with Workflow(wait=True):
        image = EmptyImage(64, 48, 1, 0)
        saved = SaveImage(image, "comfyscript")
    images = saved.wait().wait()
    print(json.dumps({"sizes": [list(im.size) for im in images if im is not None]}))


if __name__ == "__main__":
    main()
