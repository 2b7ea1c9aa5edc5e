#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers for the tests and prints its URL
# (BUTLER_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres).
# When none answers: installs Debian's postgresql package if it is missing, starts its
# cluster, and lets local TCP connections in without a password (a test machine's
# server, trust authentication as on the development machines). Exits 1 with what to
# do otherwise.
set -euo pipefail
url="${BUTLER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

answers() { psql "$url" -tAc 'SELECT 1' >/dev/null 2>&1; }

if command -v psql >/dev/null 2>&1 && answers; then echo "$url"; exit 0; fi
if [ -n "${BUTLER_TEST_POSTGRES_URL:-}" ]; then
  echo "no PostgreSQL answers at BUTLER_TEST_POSTGRES_URL ($url)" >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "PostgreSQL 15 or newer is needed: install it, or set BUTLER_TEST_POSTGRES_URL" >&2
    exit 1
  fi
  echo "no PostgreSQL answers at $url: installing Debian's postgresql package" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
fi
version="$(ls /etc/postgresql | sort -V | tail -n 1)"
hba="/etc/postgresql/$version/main/pg_hba.conf"
if ! $sudo grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
  echo "letting local TCP connections into the test cluster without a password ($hba)" >&2
  $sudo sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
fi
echo "starting PostgreSQL $version" >&2
$sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 2>/dev/null \
  || $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main reload >&2 || true
for _ in $(seq 1 60); do
  if answers; then echo "$url"; exit 0; fi
  sleep 0.5
done
echo "PostgreSQL $version did not answer at $url" >&2
exit 1
