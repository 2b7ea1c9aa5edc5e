#!/usr/bin/env bash
# Installs the NATS clients of other languages that the hotel-client tests drive, at
# pinned versions, under target/hotel-clients: nats-py (PyPI) in a venv and nats.js
# (npm). Prints the directory; exits 1 when either cannot be installed.
set -euo pipefail
NATS_PY_VERSION=2.16.0
NATS_JS_VERSION=2.29.3
dir="$(realpath -m "${CARGO_TARGET_DIR:-target}/hotel-clients")"
mkdir -p "$dir"
if ! "$dir/py/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('nats-py') != '$NATS_PY_VERSION')" 2>/dev/null; then
  python3 -m venv "$dir/py" >&2
  "$dir/py/bin/pip" install --quiet --disable-pip-version-check "nats-py==$NATS_PY_VERSION" >&2
fi
if [ "$(node -p "require('$dir/js/node_modules/nats/package.json').version" 2>/dev/null)" != "$NATS_JS_VERSION" ]; then
  npm install --silent --no-audit --no-fund --prefix "$dir/js" "nats@$NATS_JS_VERSION" >&2
fi
echo "$dir"
