"""Logs: structlog JSON lines to stdout, and to Logdy over TCP when configured."""
