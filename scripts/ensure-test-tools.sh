#!/usr/bin/env bash
# Installs what the test suite needs besides Rust, nats-server and PostgreSQL: Debian's
# prometheus package (prometheus and promtool) and docker-compose (which checks the
# compose file without a Docker engine), for the deploy-kit tests; chromium, for the
# live page; npm (with Node.js), for the nats.js hotel client; zsh and fish, whose
# completion scripts are driven by the tests. Prints what to install when apt is not
# available.
set -euo pipefail
missing=()
if ! { [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus ]; } \
   && ! { [ -n "${PROMTOOL_BIN:-}" ] && [ -n "${PROMETHEUS_BIN:-}" ]; }; then
  missing+=(prometheus)
fi
if ! command -v docker-compose >/dev/null 2>&1; then missing+=(docker-compose); fi
if ! command -v chromium >/dev/null 2>&1 && [ -z "${CHROMIUM_BIN:-}" ]; then missing+=(chromium); fi
if ! { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; }; then missing+=(nodejs npm); fi
for shell in zsh fish; do
  if ! command -v "$shell" >/dev/null 2>&1; then missing+=("$shell"); fi
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing Debian's ${missing[*]} for the deploy tests" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  exit 0
fi
echo "the tests need: ${missing[*]} (or PROMETHEUS_BIN and PROMTOOL_BIN for prometheus)" >&2
exit 1
