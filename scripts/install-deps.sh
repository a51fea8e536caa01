#!/usr/bin/env bash
# Installs every Debian package Tianhe's build, tests and benchmarks need. Idempotent: only
# missing packages are installed, and the list is printed first. Runs as root, or with sudo.
set -euo pipefail

PACKAGES=(
  # toolchain
  g++ clang clang-format clang-tidy libclang-rt-14-dev cmake ninja-build make pkg-config
  # libraries
  libgtest-dev libgmock-dev libbenchmark-dev libsqlite3-dev sqlite3 libzstd-dev libtomlplusplus-dev
  nlohmann-json3-dev protobuf-compiler libprotobuf-dev librocksdb-dev liblmdb-dev
  # sink clients: MySQL/MariaDB/TiDB, PostgreSQL, Redis, NATS, HTTP (webhook)
  libmariadb-dev libpq-dev libhiredis-dev libnats-dev libcurl4-openssl-dev libssl-dev
  # MQTT input: client libraries (libmosquitto, Eclipse Paho C)
  libmosquitto-dev libpaho-mqtt-dev
  # user codecs: SpiderMonkey (JavaScript and WebAssembly), YAML example files; WebAssembly
  # examples are built with clang --target=wasm32, wasm-ld (lld) and wabt's wat2wasm
  libmozjs-102-dev libyaml-cpp-dev lld wabt
  # test peers and tools: promtool (prometheus), curl, python with protobuf
  prometheus curl python3 python3-protobuf python3-scapy python3-pymodbus procps iproute2
  ccache
  # google-pprof (gperftools' pprof), which reads the gateway's /debug/pprof/profile
  google-perftools
  # the sinks' real servers, started by the tests on loopback (never as system services)
  mariadb-server mariadb-client postgresql redis-server redis-tools nats-server
  # the MQTT broker and its clients, for the MQTT input's tests and benchmark
  mosquitto mosquitto-clients
)

missing=()
# Node.js and npm: a machine that has them (any source) keeps its own; a bare Debian gets Debian's.
if ! command -v npm >/dev/null 2>&1; then PACKAGES+=(nodejs npm); fi

for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Independent protocol implementations from npm (lora-packet, cayenne-lpp) that the tests check
# Tianhe against, pinned by test/npm/package-lock.json into test/npm/node_modules.
npm_peers() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/test/npm"
  # The stamp is the lock file as last installed: a difference means the lock changed since.
  if cmp -s "$dir/package-lock.json" "$dir/node_modules/.tianhe-installed-lock" 2>/dev/null; then
    return 0
  fi
  echo "install-deps: npm ci in test/npm"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error &&
   cp package-lock.json node_modules/.tianhe-installed-lock)
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  npm_peers
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps it small; services (prometheus) are not started by the package
# in a container, and tests start what they need on loopback ports of their own.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
npm_peers
echo "install-deps: done"
