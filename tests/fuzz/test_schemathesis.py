"""Schemathesis against both roles' own OpenAPI documents: generated requests, valid and
invalid, must never get a server error, and every answer must fit the document (status
documented, content type, headers, body schema). Bounded in `make test`; `make fuzz` runs
many more examples (FUZZ_EXAMPLES).

Driven through schemathesis' Python API (one hypothesis run per operation and generation
mode) rather than its pytest plugin, which does not run on pytest 9 yet."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.fuzz.conftest import AUTH, EXAMPLES

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a real server on loopback: timing varies, and timing is not the point
    suppress_health_check=list(HealthCheck),
    database=None,  # no .hypothesis folder in the tree; each run draws afresh
    derandomize=False,
    print_blob=True,  # a failure prints how to reproduce it
)


# `?wait=S` holds a request up to 60 s when the job cannot end (e.g. a pool no node serves);
# the fuzzer caps it, so a run stays short (long-polling has its own tests).
FUZZ_MAX_WAIT_S = 1


def _check(case: Any) -> None:
    wait = case.query.get("wait") if isinstance(case.query, dict) else None
    if isinstance(wait, int) and not isinstance(wait, bool) and wait > FUZZ_MAX_WAIT_S:
        case.query["wait"] = FUZZ_MAX_WAIT_S
    # Schema-valid is not always acceptable: a graph's links must name nodes in it, a
    # workflow version must exist, an image must have been uploaded -- rules JSON Schema
    # cannot state; those get a documented 4xx, which the other checks hold to the document.
    excluded = [positive_data_acceptance]
    # /readyz answers 503 by design while the node drains (the fuzzer drains it); that
    # status is documented.
    if case.operation.path == "/readyz":
        excluded.append(not_a_server_error)
    # An upload's parts are `format: binary` (so Swagger UI offers a file picker): any bytes
    # are binary, and whether they are an image is the sniffer's call (415/422, tested in
    # tests/inputs), so "format-violating" multipart data may well be a valid image.
    if case.operation.path == "/api/v1/inputs" and case.media_type == "multipart/form-data":
        excluded.append(negative_data_rejection)
    case.call_and_validate(headers=AUTH, excluded_checks=excluded)


def _strategies(schema: Any, operation: Any) -> list[tuple[str, Any]]:
    """The document's own examples, then data that fits the schema, then data that does not."""
    out = [("examples", st) for st in schema.get_strategies_from_examples(operation)]
    out += [(m.value, operation.as_strategy(generation_mode=m)) for m in GenerationMode]
    return out


def _fuzz(schema: Any) -> None:
    started, calls, failures = time.monotonic(), 0, []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:
        for kind, strategy in _strategies(schema, operation):

            @FUZZ
            @given(case=strategy)
            def run(case: Any) -> None:
                nonlocal calls
                calls += 1
                _check(case)

            try:
                run()
            except Unsatisfiable:
                # No invalid request exists for an operation without parameters or body.
                assert kind == GenerationMode.NEGATIVE.value, operation.label
            except (Exception, BaseExceptionGroup) as exc:  # gather all, report together
                failures.append(f"{operation.label} [{kind}]: {exc}")
    took = time.monotonic() - started
    print(f"\nfuzzed {len(operations)} operations, {calls} requests in {took:.1f} s")
    assert not failures, "\n\n".join(failures)


@pytest.mark.timeout(600)
def test_balancer_api(balancer_schema: Any) -> None:
    _fuzz(balancer_schema)


@pytest.mark.timeout(600)
def test_node_api(node_schema: Any) -> None:
    _fuzz(node_schema)
