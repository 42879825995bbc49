#!/usr/bin/env bash
# install-deps.sh — installs the Debian packages p2pcore needs, only those missing.
# Idempotent: a machine that has everything is left alone (no apt-get update).
#   scripts/install-deps.sh            build + test dependencies
#   scripts/install-deps.sh bench      also the benchmark tools
set -euo pipefail

pkgs=(
  # build
  cmake make gcc pkg-config
  libh2o-dev libwslay-dev libuv1-dev libjansson-dev libyaml-dev libssl-dev libnghttp2-dev libjwt-dev liblz4-dev
  libzstd-dev zlib1g-dev
  libhiredis-dev
  # tests: unit (cmocka), system (pytest with Debian's python3), fuzzing (clang + libFuzzer runtime)
  libcmocka-dev python3 python3-pytest python3-pytest-xdist python3-cryptography curl clang libclang-rt-14-dev openssl procps iproute2 nftables
  # tests: the cache's L2 (each test starts its own redis-server on a free port)
  redis-server redis-tools
  # tests: the dashboard in a real browser (tests/browser, driven by playwright-core from web/)
  chromium
  # make deb and its test: dpkg-shlibdeps (dpkg-dev); systemd-analyze verify/security (Debian 12's systemd package)
  dpkg-dev systemd
)
# node + npm: the dashboard's assets are embedded with node at build time (web/embed.mjs)
# and its npm packages come from web/package-lock.json. A machine with another node build
# that brings its own npm (e.g. nodesource's nodejs) keeps it.
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  pkgs+=(nodejs npm)
fi
if [[ "${1:-}" == "bench" ]]; then
  pkgs+=(python3-fastapi python3-uvicorn nginx-light nghttp2-client wrk serf rsyslog)
fi

# The dashboard's npm packages (uPlot, bundled into the binary; playwright-core for the
# browser tests): `npm ci` in web/ whenever node_modules is missing or older than the lock.
npm_deps() {
  local web
  web="$(cd "$(dirname "$0")/.." && pwd)/web"
  if [[ ! -f $web/node_modules/.package-lock.json || $web/package-lock.json -nt $web/node_modules/.package-lock.json ]]; then
    echo "install-deps: npm ci in $web"
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  npm_deps
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then
    SUDO="sudo"
  else
    echo "install-deps: not root and no sudo; run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
npm_deps
