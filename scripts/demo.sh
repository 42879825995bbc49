#!/usr/bin/env bash
# demo.sh — starts a local cluster from build/p2p in a temporary directory and
# tells you how to talk to it: a coordinator and two workers, which enroll with
# it by themselves (a join token made through the coordinator's API). Ctrl-C
# stops every node cleanly and removes the directory. Ports: P2P_DEMO_PORT
# (default 8001) for the coordinator, the next two for the workers.
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
# Ctrl-C or SIGTERM ends the script (even in the middle of the deploy) through cleanup.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_node() { # name role port [extra args]
  local name=$1 role=$2 p=$3
  shift 3
  # the example services (build/services: hello in C, pyhello in Python) on every node
  mkdir -p "$dir/$name/services"
  cp -r build/services/. "$dir/$name/services/"
  # Own session: a Ctrl-C on the terminal reaches only this script, which then
  # stops each node once with SIGTERM (a second signal would skip the drain).
  # The log prefixer ignores SIGINT so the nodes' last lines are still shown.
  setsid "$bin" agent "--$role" --node-id "$name" --port "$p" --bind-address 127.0.0.1 \
    --data-dir "$dir/$name" --admin-api-key-file "$dir/admin.key" "$@" \
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

# One join token for both workers (shown once; it carries the CA pin the workers check).
join=$("$bin" token create --join --uses 2 --ttl 600 --addr "127.0.0.1:$port" \
  --data-dir "$dir/coordinator-1" --api-key-file "$dir/admin.key" 2>/dev/null)
export P2P_JOIN_TOKEN=$join
for i in 1 2; do
  start_node "worker-$i" worker $((port + i)) --coordinator-addresses "127.0.0.1:$port" --enroll-challenge-port 0
done
unset P2P_JOIN_TOKEN
for i in 1 2; do wait_healthy "worker-$i" $((port + i)); done

token=$("$bin" token --addr 127.0.0.1:$port --data-dir "$dir/coordinator-1" --api-key-file "$dir/admin.key" 2>/dev/null || true)
cat <<MSG

  p2pcore demo is running (state in $dir)

  coordinator-1   https://127.0.0.1:$port   (CA: $dir/coordinator-1/certs/ca.crt)
  worker-1        https://127.0.0.1:$((port + 1))   (enrolled: its certificate comes from the coordinator's CA)
  worker-2        https://127.0.0.1:$((port + 2))
  admin API key   $dir/admin.key
  vault password  P2P_VAULT_PASSWORD=$P2P_VAULT_PASSWORD
  services        hello (C) and pyhello (Python) on each node, from $dir/<node>/services

  In another terminal, paste this once (an admin token valid 24 h):

    export P2P_ADDR=127.0.0.1:$port P2P_DATA_DIR=$dir/coordinator-1 PATH=$PWD/build:\$PATH
    export P2P_TOKEN=$token

  then:
    p2p members                                    # the cluster as coordinator-1 sees it
    p2p services --all                             # every node's services
    p2p call hello/greet '{"name":"you"}'          # a C service
    p2p call pyhello/echo '{"hi":1}'               # a Python service
    p2p call --node worker-2 pyhello/ping_node '{"target":"worker-1"}'   # worker-2 calls worker-1
    p2p services reload hello --node worker-1      # hot reload, no failed call
    p2p call system/get_system_info
    p2p logs -f                                    # follow every node's log lines (on coordinator-1)
    curl --cacert \$P2P_DATA_DIR/certs/ca.crt -H "Authorization: Bearer \$P2P_TOKEN" "https://\$P2P_ADDR/metrics?format=prometheus"

  Dashboard: https://127.0.0.1:$port/dashboard
    log in with the admin API key: $(cat "$dir/admin.key" 2>/dev/null || echo "see $dir/admin.key")
    (or with the token above; the browser warns about the cluster's own CA: accept it once,
    or import $dir/coordinator-1/certs/ca.crt)
  Press Ctrl-C to stop.

MSG
# the membership table once all three see each other (a few seconds at most)
members=""
if [ -n "$token" ]; then
  for _ in $(seq 1 50); do
    members=$(P2P_TOKEN=$token build/p2p members --addr 127.0.0.1:$port --data-dir "$dir/coordinator-1" 2>&1) &&
      [ "$(grep -c ' alive ' <<<"$members")" -ge 3 ] && break
    sleep 0.2
  done
fi
printf '\n  p2p members (on coordinator-1):\n%s\n' "$(sed 's/^/    /' <<<"${members:-(no answer)}")"
svcs=$(P2P_TOKEN=$token build/p2p services --all --addr 127.0.0.1:$port --data-dir "$dir/coordinator-1" 2>&1 || true)
printf '\n  p2p services --all:\n%s\n\n' "$(sed 's/^/    /' <<<"$svcs")"
# cluster logs: every node's lines are collected on coordinator-1; show the last few and how to follow them
logs=$(P2P_TOKEN=$token NO_COLOR=1 build/p2p logs -n 6 --addr 127.0.0.1:$port --data-dir "$dir/coordinator-1" 2>&1 || true)
printf '  p2p logs -n 6 (the three nodes'"'"' lines, collected on coordinator-1):\n%s\n\n' "$(sed 's/^/    /' <<<"$logs")"
cat <<MSG
  Follow the cluster's logs (all three nodes, new lines as they arrive; Ctrl-C stops):
    P2P_TOKEN=$token \\
      $PWD/build/p2p logs -f --addr 127.0.0.1:$port --data-dir $dir/coordinator-1
  or, after the exports above:  p2p logs -f   (add --node worker-1, --level WARNING, --grep TEXT)

MSG

# A rolling deploy and an automatic rollback of the example C service `hello` on the two
# workers (docs/deploy.md). P2P_DEMO_DEPLOY=0 skips it.
if [ "${P2P_DEMO_DEPLOY:-1}" = 1 ] && [ -n "$token" ]; then
  p2pc() { P2P_TOKEN=$token NO_COLOR=1 "$bin" "$@" --addr "127.0.0.1:$port" --data-dir "$dir/coordinator-1"; }
  # version_dir VERSION SO: a copy of the built hello folder with its manifest at VERSION
  version_dir() {
    local d="$dir/hello-$1"
    mkdir -p "$d"
    cp -r build/services/hello/. "$d/"
    cp "$2" "$d/service.so"
    sed -i "s/\"version\": *\"[^\"]*\"/\"version\": \"$1\"/" "$d/manifest.json"
    echo "$d"
  }
  echo "  Deploy: hello 1.1.0 to every worker (a rollout, 2 nodes at a time, each healthy 1 s)"
  echo "    p2p deploy $dir/hello-1.1.0 --target all:worker --max-parallel 2 --min-healthy-time 1"
  v11=$(version_dir 1.1.0 build/services/hello/service.so)
  out=$(p2pc deploy "$v11" --target all:worker --max-parallel 2 --min-healthy-time 1 2>&1) && rc=0 || rc=$?
  printf '%s\n' "$(sed 's/^/    /' <<<"$out")"
  echo "    (exit status $rc)"
  echo
  # 1.2.0 is broken: the test build hello-critical starts, then reports critical health,
  # so it never becomes healthy and each node puts 1.1.0 back; without the test build, a
  # service.so that is not a shared object fails to load at all.
  if [ -f build/test-services/hello-critical/service.so ]; then
    v12=$(version_dir 1.2.0 build/test-services/hello-critical/service.so)
    why="starts, then reports critical health"
  else
    v12=$(version_dir 1.2.0 build/services/hello/service.so)
    echo "not a shared object" >"$v12/service.so"
    why="its service.so does not load"
  fi
  echo "  Deploy: a broken hello 1.2.0 ($why): the rollout reverts by itself"
  echo "    p2p deploy $dir/hello-1.2.0 --target all:worker --max-parallel 2 --min-healthy-time 1 --healthy-deadline 3"
  out=$(p2pc deploy "$v12" --target all:worker --max-parallel 2 --min-healthy-time 1 --healthy-deadline 3 2>&1) && rc=0 || rc=$?
  printf '%s\n' "$(sed 's/^/    /' <<<"$out")"
  echo "    (exit status $rc)"
  echo
  out=$(p2pc rollout status 2>&1 || true)
  printf '  p2p rollout status:\n%s\n\n' "$(sed 's/^/    /' <<<"$out")"
  out=$(p2pc services --all 2>&1 | awk '$1 == "NODE" || $2 == "hello"' || true)
  printf '  hello now (p2p services --all):\n%s\n\n' "$(sed 's/^/    /' <<<"$out")"
  echo "  demo: deploy and rollback shown; the cluster keeps running (Ctrl-C stops it)"
fi
wait "${pids[0]}"
