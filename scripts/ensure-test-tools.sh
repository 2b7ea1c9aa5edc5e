#!/usr/bin/env bash
# Installs what the test suite needs besides Rust and nats-server: Debian's prometheus
# package (prometheus and promtool, for the deploy-kit tests). Prints what to install
# when apt is not available.
set -euo pipefail
if [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus ]; then exit 0; fi
if [ -n "${PROMTOOL_BIN:-}" ] && [ -n "${PROMETHEUS_BIN:-}" ]; then exit 0; fi
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing Debian's prometheus package (prometheus, promtool) for the deploy tests" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq prometheus >&2
  exit 0
fi
echo "prometheus and promtool are needed by the tests: install them, or set PROMETHEUS_BIN and PROMTOOL_BIN" >&2
exit 1
