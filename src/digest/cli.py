"""Command line (placeholder until wired)."""

import click


@click.group()
def main() -> None:
    """digest."""
