#!/usr/bin/env bash
# `make run`: makes sure a NATS server with JetStream answers at the configured URL
# (starting a local one with its store under ./data when the URL is on this machine
# and nothing answers), then runs the pipeline in the foreground.
set -euo pipefail
bin="$1"; shift
config_args=()
if [ -n "${CONFIG:-}" ]; then config_args=(--config "$CONFIG"); fi

url=$("$bin" "${config_args[@]}" check-config 2>/dev/null | awk '/^nats:/{n=1;next} n && /^  url:/{print $2; exit}')
url="${url:-nats://127.0.0.1:4222}"
hostport="${url#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%,*}"
host="${hostport%:*}"; port="${hostport##*:}"
[ "$host" = "$port" ] && port=4222

if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  echo "NATS answers at $host:$port"
else
  case "$host" in
    127.0.0.1|localhost|0.0.0.0) ;;
    *) echo "nothing answers at $url; start NATS there or set nats.url" >&2; exit 1 ;;
  esac
  server=$(scripts/ensure-nats-server.sh)
  mkdir -p data/nats
  echo "starting $server with JetStream on $host:$port (store: data/nats, log: data/nats/nats-server.log)"
  "$server" -a 127.0.0.1 -p "$port" -js -sd data/nats >data/nats/nats-server.log 2>&1 &
  echo $! > data/nats/nats-server.pid
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
fi
exec "$bin" "${config_args[@]}" run
