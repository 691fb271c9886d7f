"""The `rluf` command. Thin: each stage package contributes its commands through `<stage>/cli.py:register`."""

from __future__ import annotations

import importlib
import logging
import sys

import typer
from rich.console import Console

from rluf.errors import RlufError
from rluf.threads import configure_threads

console = Console(stderr=True)
app = typer.Typer(
    name="rluf",
    help="Reinforcement Learning from User Feedback: from sparse user reactions to a better chat model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Stage packages, in loop order. Each has a `cli.py` with `register(app)`.
STAGES = ["ingest", "sim", "signals", "rewards", "judges", "optimize", "evaluate", "abtest", "serve", "run"]


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _register_stages() -> None:
    for stage in STAGES:
        importlib.import_module(f"rluf.{stage}.cli").register(app)


_register_stages()


def main() -> None:
    configure_threads()
    try:
        app()
    except RlufError as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
