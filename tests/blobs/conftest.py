"""The fleet tests here share tests/e2e's client fixtures; each module brings its fleet."""

import pytest

from comfyfleet.config import BlobConfig
from tests.e2e.conftest import api, http  # noqa: F401 -- fixtures, used by name
from tests.support.s3 import S3Server


@pytest.fixture(scope="module")
def s3_cfg(s3_server: S3Server) -> BlobConfig:
    """The suite's S3 server as a blob store configuration (the fleets' modules use it)."""
    return s3_server.config()
