"""The ``leadscore`` console script: thin Typer wrappers over typed functions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Leadscore: calibrated lead scoring with reasons and an agreed qualified-lead threshold.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Leadscore command line."""


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option(help="Directory to write leads, touchpoints and outcomes into.")],
    leads: Annotated[int, typer.Option(help="Number of leads.", min=1)] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same data.")] = 7,
    format: Annotated[str, typer.Option(help="File format: parquet or csv.")] = "parquet",
) -> None:
    """Write a realistic synthetic CRM (deterministic by seed)."""
    from training.demo_data import write_demo_data

    if format not in ("parquet", "csv"):
        raise typer.BadParameter("format must be parquet or csv", param_hint="--format")
    with console.status(f"generating {leads:,} leads"):
        data = write_demo_data(out, n_leads=leads, seed=seed, fmt=format)
    wins = int((data.outcomes["outcome"] == "won").sum())
    console.print(
        f"wrote {len(data.leads):,} leads, {len(data.touchpoints):,} touch points, "
        f"{len(data.outcomes):,} outcomes ({wins:,} won) to {out}"
    )


def main() -> None:  # pragma: no cover - console entry point
    app()
