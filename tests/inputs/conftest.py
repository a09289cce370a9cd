"""The input upload tests use the suite's real fleet (processes) from tests/e2e."""

from tests.e2e.conftest import api, fleet, http  # noqa: F401 -- fixtures, used by name
