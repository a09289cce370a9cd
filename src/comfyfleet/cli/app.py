from __future__ import annotations

import typer

app = typer.Typer(
    name="comfyfleet",
    help="Run many ComfyUI servers as one image-generation service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def not_built(what: str, issue: int) -> None:
    """Say plainly that a role is not built yet, and exit non-zero."""
    typer.echo(f"comfyfleet {what}: not built yet (tracked in issue #{issue})", err=True)
    raise typer.Exit(code=2)
