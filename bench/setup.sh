#!/usr/bin/env bash
# Installs the system packages the benchmark harness (npm run bench) needs, from Debian:
#   prometheus   - the real Prometheus that scrapes the broker (and promtool, used by test/metrics)
#   redis-server - the Redis Streams peer
#   nats-server  - the NATS JetStream peer
# The packages' own services are not used: the harness starts each server itself on free loopback
# ports with temporary data dirs, and stops it when the run ends.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(prometheus redis-server nats-server)
missing=()
for bin in prometheus promtool redis-server nats-server; do
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("$bin")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "bench/setup.sh: prometheus, promtool, redis-server and nats-server are already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${packages[@]}"
# Debian may start the packaged services; the harness does not need them listening on fixed ports.
for svc in prometheus redis-server nats-server; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl stop "$svc" || true
  fi
done
echo "bench/setup.sh: installed ${packages[*]}"
