"""Redaction: each rule still fires behind the quick pre-check, and text without any sign
of a secret comes back as it was."""

from __future__ import annotations

import pytest

from comfyfleet.logs.redact import redact

SECRET = "s3cr3tVALUE0123456789abcdef"


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        (f"fetch https://alice:{SECRET}@models.example.com/x", "https://alice:***@models"),
        (f"Authorization: Basic {SECRET}", "Authorization: Basic ***"),
        (f'{{"AUTHORIZATION": "{SECRET}"}}', '"AUTHORIZATION": "***'),
        (f"sent BEARER {SECRET}", "BEARER ***"),
        (f"comfy --api-key {SECRET} --listen", "--api-key ***"),
        (f"GET /x?api_key={SECRET}&a=1", "api_key=***&a=1"),
        (f'"Password": "{SECRET}"', '"Password": "***'),
        (f"pwd={SECRET}", "pwd=***"),
        (f"db_credentials: {SECRET}", "db_credentials: ***"),
        (f"X-Access-Key={SECRET}", "X-Access-Key=***"),
        (f"client_secret={SECRET}", "client_secret=***"),
        (f"key cfk_{SECRET} leaked", "key *** leaked"),
        (f"whsec_{SECRET}", "***"),
        (f"sk-{SECRET}", "***"),
        (f"hf_{SECRET}", "***"),
        (f"ghp_{SECRET}", "***"),
        (f"xoxb-{SECRET}", "***"),
        (f"comfyui-{SECRET}", "***"),
    ],
)
def test_every_rule_fires(line: str, kept: str) -> None:
    clean = redact(line)
    assert SECRET not in clean
    assert kept in clean


@pytest.mark.parametrize(
    "line",
    ["2026-12-02T11:48:32.123456Z", "info", "POST /api/v1/jobs 202", "job_claimed", ""],
)
def test_plain_text_is_unchanged(line: str) -> None:
    assert redact(line) == line
