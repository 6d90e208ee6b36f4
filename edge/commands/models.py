"""``edge models``: install and verify the face models (placeholder until models.py lands)."""

import click


@click.group()
def models() -> None:
    """Install and verify face models listed in models/manifest.toml."""
