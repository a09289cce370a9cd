"""A real S3-protocol server for the suite: moto's server as a process on a free loopback
port (moto[server] from the test extra). Tests talk to it over HTTP exactly as the roles
talk to AWS S3 or MinIO; nothing is patched in-process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from comfyfleet.config import BlobConfig
from comfyfleet.redis_server import free_port

BUCKET = "comfyfleet-test"
ACCESS_KEY = "testing-key"
SECRET_KEY = "testing-secret"
REGION = "us-east-1"
START_TIMEOUT_S = 30.0


class S3Server:
    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start; see {self.log_path}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def config(self, **extra: object) -> BlobConfig:
        """Blob settings for a fresh prefix of the suite's bucket (one per test)."""
        return BlobConfig.model_validate(
            {
                "store_url": f"s3://{BUCKET}/t{uuid.uuid4().hex[:12]}",
                "s3_endpoint_url": self.url,
                "s3_region": REGION,
                "s3_access_key_id": ACCESS_KEY,
                "s3_secret_access_key": SECRET_KEY,
                "s3_path_style": True,
                **extra,
            }
        )

    def env(self, cfg: BlobConfig) -> dict[str, str]:
        """The same settings as the environment of a role started as a process."""
        return {
            "COMFYFLEET_STORE_URL": cfg.store_url or "",
            "AWS_ENDPOINT_URL_S3": self.url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "S3_PATH_STYLE": "1",
        }


def create_bucket(server: S3Server) -> None:
    """The suite's bucket, made through the S3 API itself (a sync client: session setup)."""
    import boto3

    client = boto3.client(
        "s3", endpoint_url=server.url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
