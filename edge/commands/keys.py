"""``edge keys``: CURVE key pairs for the node <-> hub link; the hub's HTTPS certificate."""

from __future__ import annotations

from pathlib import Path

import click

from edge.audit_signing import AuditSigner, generate_signing_key
from edge.hub.tls import DEFAULT_HOSTS, generate_tls, load_cert
from edge.hub.vapid import generate_vapid_key
from edge.link.curve_keys import generate_keypair, load_public_key


@click.group()
def keys() -> None:
    """Generate CURVE key pairs for nodes and the hub, and the hub's TLS certificate.

    \b
    Typical setup:
      edge keys generate hub --dir keys/hub          # on the hub
      edge keys generate NODE_ID --dir keys/node     # on each node (name = node_id)
      copy keys/node/NODE_ID.key  -> hub's allowed_node_keys_dir
      copy keys/hub/hub.key       -> each node (alerts.hub_public_key)
    Secret files (*.key_secret) are written with mode 0600; never copy them.
      edge keys tls --dir keys/tls --host HUB_NAME --host HUB_IP   # HTTPS for tablets
      edge keys audit --dir keys/audit        # signs the node's audit log (audit.signing_key)
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


@keys.command("tls")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("keys/tls"), show_default=True, help="Where to write the files.")
@click.option("--host", "hosts", multiple=True,
              help="Name or IP tablets use to reach the hub (repeat; default localhost, "
                   "127.0.0.1).")
@click.option("--days", type=int, default=397, show_default=True,
              help="Validity of the CA and server certificate.")
@click.option("--force", is_flag=True, help="Replace existing files in --dir.")
def tls(directory: Path, hosts: tuple[str, ...], days: int, force: bool) -> None:
    """Create a private CA (ca.crt, ca.key) and the hub's HTTPS certificate (server.crt/.key).

    \b
    Then in the hub config:
      [http]
      tls_cert = "keys/tls/server.crt"
      tls_key  = "keys/tls/server.key"
    Install ca.crt on each tablet as a trusted CA; keep ca.key offline (mode 0600).
    """
    files = generate_tls(directory, hosts or DEFAULT_HOSTS, days=days, force=force)
    cert = load_cert(files.server_cert)
    click.echo(f"CA certificate:     {files.ca_cert} (install on the tablets)")
    click.echo(f"CA key:             {files.ca_key} (mode 0600, keep offline)")
    click.echo(f"server certificate: {files.server_cert}")
    click.echo(f"server key:         {files.server_key} (mode 0600)")
    click.echo(f"hosts: {', '.join(hosts or DEFAULT_HOSTS)}; valid until "
               f"{cert.not_valid_after_utc:%Y-%m-%d} UTC")


@keys.command("audit")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("keys/audit"), show_default=True, help="Where to write the files.")
@click.option("--force", is_flag=True, help="Replace an existing key (records it signed then "
              "verify only with its public key: rotate with `edge audit rotate-key` instead).")
def audit_key(directory: Path, force: bool) -> None:
    """Create audit.key (Ed25519 private key, 0600) and audit.pub for the node's audit log.

    \b
    Node config:   [audit] signing_key = "keys/audit/audit.key"
    Keep audit.key outside the node's state directory (beside the watchlist key); give
    audit.pub to whoever verifies:  edge audit verify LOG --public-key audit.pub
    """
    priv, pub = generate_signing_key(directory, force=force)
    click.echo(f"signing key: {priv} (mode 0600, key id {AuditSigner.from_file(priv).key_id})")
    click.echo(f"public key:  {pub} (for `edge audit verify --public-key`)")


@keys.command("vapid")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("keys/push"), show_default=True, help="Where to write the key.")
@click.option("--force", is_flag=True, help="Replace an existing key (every tablet must then "
              "enable alerts again).")
def vapid_key(directory: Path, force: bool) -> None:
    """Create vapid_private.pem (P-256, 0600): the hub's key for web push to locked tablets.

    \b
    Hub config:
      [push]
      enabled = true
      vapid_private_key = "keys/push/vapid_private.pem"
      subject = "mailto:control-room@example.org"   # the push services' contact for you
    """
    path, public = generate_vapid_key(directory, force=force)
    click.echo(f"VAPID private key: {path} (mode 0600)")
    click.echo(f"public key (tablets fetch it from /api/push/key): {public}")
