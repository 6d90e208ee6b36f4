#!/bin/sh
# Creates the key material docker/compose.yaml passes as Docker secrets (docker/README.md,
# "First start"). Run from the repository root with the venv active:
#
#   sh docker/make-secrets.sh [DIR] [--host NAME_OR_IP ...]     # DIR defaults to docker/secrets
#
# DIR/hub/hub.key(_secret)        the hub's CURVE pair (edge keys generate hub)
# DIR/node/NODE_ID.key(_secret)   the node's CURVE pair; NODE_ID = [node] node_id in node.toml
# DIR/allowed-nodes/NODE_ID.key   the node public keys the hub accepts (mounted, not secret)
# DIR/tls/{ca,server}.{crt,key}   private CA + HTTPS certificate for names "hub", "localhost",
#                                 127.0.0.1 and every --host given (the name tablets use)
# The watchlist key (DIR/watchlist.key) is written by `edge watchlist create --key-file`.
# Every secret file is mode 0600; the containers run as uid 10001, so afterwards:
#   sudo chown -R 10001:10001 DIR
set -eu
DIR=docker/secrets
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then DIR=$1; shift; fi
NODE_ID=${EDGE_NODE_ID:-edge-node-docker-1}
mkdir -p "$DIR/allowed-nodes"
chmod 0700 "$DIR"
edge keys generate hub --dir "$DIR/hub"
edge keys generate "$NODE_ID" --dir "$DIR/node"
cp "$DIR/node/$NODE_ID.key" "$DIR/allowed-nodes/$NODE_ID.key"
edge keys tls --dir "$DIR/tls" --host hub --host localhost --host 127.0.0.1 "$@"
echo "secrets in $DIR; next: edge watchlist create ... --key-file $DIR/watchlist.key"
