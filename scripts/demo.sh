#!/usr/bin/env bash
# demo.sh — starts a local cluster from build/p2p in a temporary directory and
# tells you how to talk to it. Ctrl-C stops every node cleanly and removes the
# directory. Ports: P2P_DEMO_PORT (default 8001) for the coordinator.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/build/p2p
[[ -x $bin ]] || { echo "demo: build/p2p is missing; run 'make' first" >&2; exit 1; }
port=${P2P_DEMO_PORT:-8001}
dir=$(mktemp -d /tmp/p2p-demo.XXXXXX)
pids=()
# Each node keeps its secrets in an encrypted vault; the demo makes up a password.
P2P_VAULT_PASSWORD=${P2P_VAULT_PASSWORD:-demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')}
export P2P_VAULT_PASSWORD

cleanup() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping nodes..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
  echo "demo: stopped, $dir removed"
}
trap cleanup INT TERM EXIT

start_node() { # name role port
  local name=$1 role=$2 p=$3
  # Own session: a Ctrl-C on the terminal reaches only this script, which then
  # stops each node once with SIGTERM (a second signal would skip the drain).
  # The log prefixer ignores SIGINT so the nodes' last lines are still shown.
  setsid "$bin" agent "--$role" --node-id "$name" --port "$p" --bind-address 127.0.0.1 \
    --data-dir "$dir/$name" --admin-api-key-file "$dir/admin.key" \
    2> >(trap '' INT; sed -u "s/^/[$name] /" >&2) &
  pids+=($!)
}

wait_healthy() { # name port
  local name=$1 p=$2
  for _ in $(seq 1 100); do
    if curl -sf --cacert "$dir/$name/certs/ca.crt" "https://127.0.0.1:$p/health" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "demo: $name did not become healthy on port $p" >&2
  return 1
}

start_node coordinator-1 coordinator "$port"
wait_healthy coordinator-1 "$port"

cat <<MSG

  p2pcore demo is running (state in $dir)

  coordinator-1   https://127.0.0.1:$port   (CA: $dir/coordinator-1/certs/ca.crt)
  admin API key   $dir/admin.key
  vault password  P2P_VAULT_PASSWORD=$P2P_VAULT_PASSWORD

  Log in (a bearer token for 24 h), then call the node:
    export P2P_TOKEN=\$(build/p2p token --addr 127.0.0.1:$port --data-dir $dir/coordinator-1 --api-key-file $dir/admin.key)
    build/p2p call --addr 127.0.0.1:$port --data-dir $dir/coordinator-1 system/get_system_info
    build/p2p call --addr 127.0.0.1:$port --data-dir $dir/coordinator-1 system/ping '{"message":"hi"}'
    curl --cacert $dir/coordinator-1/certs/ca.crt https://127.0.0.1:$port/health
    curl --cacert $dir/coordinator-1/certs/ca.crt -H "Authorization: Bearer \$P2P_TOKEN" 'https://127.0.0.1:$port/metrics?format=prometheus'

  Workers join once the cluster layer lands.
  Press Ctrl-C to stop.

MSG
wait "${pids[0]}"
