"""``edge keys``: CURVE key pairs for the encrypted node <-> hub link."""

from __future__ import annotations

from pathlib import Path

import click

from edge.link.curve_keys import generate_keypair, load_public_key


@click.group()
def keys() -> None:
    """Generate CURVE key pairs for nodes and the hub.

    \b
    Typical setup:
      edge keys generate hub --dir keys/hub          # on the hub
      edge keys generate NODE_ID --dir keys/node     # on each node (name = node_id)
      copy keys/node/NODE_ID.key  -> hub's allowed_node_keys_dir
      copy keys/hub/hub.key       -> each node (alerts.hub_public_key)
    Secret files (*.key_secret) are written with mode 0600; never copy them.
    """


@keys.command("generate")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("keys"), show_default=True, help="Where to write the key files.")
@click.option("--force", is_flag=True, help="Replace existing key files of that name.")
def generate(name: str, directory: Path, force: bool) -> None:
    """Create NAME.key (public) and NAME.key_secret (secret, 0600) in --dir."""
    public_path, secret_path = generate_keypair(name, directory, force=force)
    click.echo(f"public key: {public_path}")
    click.echo(f"secret key: {secret_path} (mode 0600, keep it on this machine)")
    click.echo(f"z85 public: {load_public_key(public_path).decode()}")
