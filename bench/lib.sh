# shellcheck shell=bash
# Shared by bench/run-cluster.sh and bench/join.sh (sourced, not run):
# a temp dir and the processes started in it, cleaned up on exit, logging,
# free loopback ports, waiting for readiness, building etcd-bench.
#
#   work_prefix=kvd-bench; source "$(dirname "$0")/lib.sh"
#   some-server & pids+=($!)          # killed and waited for on exit
#   base=$(pick_ports 6)              # base..base+5 are free

work=$(mktemp -d "${TMPDIR:-/tmp}/${work_prefix:-kvd-bench}.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '== %s\n' "$*" >&2; }

# port_free: nothing accepts connections on 127.0.0.1:$1.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_ports N: prints a base port such that base..base+N-1 are free. They
# are picked below the kernel's ephemeral range: there, outgoing connections
# (the load's clients, the polls) take their local ports, so a port nothing
# listens on may still be taken when a server binds it.
read -r port_hi _ </proc/sys/net/ipv4/ip_local_port_range
port_lo=10000
if ((port_hi - port_lo < 1000)); then port_lo=1024; fi
pick_ports() {
  local n=$1 base i ok
  for _ in $(seq 1 50); do
    base=$((port_lo + RANDOM % (port_hi - port_lo - n)))
    ok=1
    for i in $(seq 0 $((n - 1))); do
      if ! port_free $((base + i)); then ok=0; break; fi
    done
    if [ $ok = 1 ]; then echo "$base"; return 0; fi
  done
  echo "no $n free ports found" >&2
  return 1
}

# wait_ready URL...: every URL answers 2xx, within READY_TIMEOUT seconds
# (default 60). curl_opts, if set, are passed to curl (TLS: --cacert ...).
curl_opts=()
wait_ready() {
  local u deadline=$((SECONDS + ${READY_TIMEOUT:-60}))
  for u in "$@"; do
    until curl -sf -o /dev/null --max-time 1 ${curl_opts[@]+"${curl_opts[@]}"} "$u"; do
      if ((SECONDS >= deadline)); then echo "not ready after ${READY_TIMEOUT:-60} s: $u" >&2; return 1; fi
      sleep 0.1
    done
  done
}

# build_etcd_bench: with ETCD auto|1 and etcd installed, builds etcd-bench
# (bench/etcd, its own module) into $work/bin and sets have_etcd=1; ETCD=1
# without etcd, or a failed build, is fatal.
# shellcheck disable=SC2034 # have_etcd is read by the sourcing script
build_etcd_bench() {
  have_etcd=0
  if [ "$ETCD" != 0 ] && command -v etcd >/dev/null && command -v etcdctl >/dev/null; then
    log "building etcd-bench (bench/etcd, its own module)"
    if (cd bench/etcd && go build -o "$work/bin/etcd-bench" .); then
      have_etcd=1
    elif [ "$ETCD" = 1 ]; then
      exit 1
    fi
  elif [ "$ETCD" = 1 ]; then
    echo "ETCD=1 but no etcd/etcdctl binary (apt-get install etcd-server etcd-client)" >&2
    exit 1
  fi
}
