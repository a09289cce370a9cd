"""The fleet tests here share tests/e2e's client fixtures; each module brings its fleet."""

from tests.e2e.conftest import api, http  # noqa: F401 -- fixtures, used by name
