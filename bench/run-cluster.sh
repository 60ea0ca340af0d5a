#!/usr/bin/env bash
# Measures a 3-node kvd cluster on loopback, the RPC ceiling, and (when the
# etcd binary is installed) a 3-member etcd cluster with the same load, and
# prints one comparison table. Everything listens on 127.0.0.1; everything
# started here is killed on exit.
#
#   bash bench/run-cluster.sh                 # about 2 minutes with etcd
#   DURATION=20s ETCD=0 bash bench/run-cluster.sh
#
# Environment: DURATION (each measured run, default 5s), WARMUP (1s),
# CLIENTS_PUT ("1 16 64"), CLIENTS_GET (16), CLIENTS_CEILING (64),
# KEYSPACE (100000), KEY_SIZE (16), VALUE_SIZE (128), ETCD (auto|0|1),
# KEEP=1 keeps the temp dir (logs, JSON results, plots).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CLIENTS_PUT=${CLIENTS_PUT:-"1 16 64"}
CLIENTS_GET=${CLIENTS_GET:-16}
CLIENTS_CEILING=${CLIENTS_CEILING:-64}
KEYSPACE=${KEYSPACE:-100000}
KEY_SIZE=${KEY_SIZE:-16}
VALUE_SIZE=${VALUE_SIZE:-128}
ETCD=${ETCD:-auto}

work=$(mktemp -d "${TMPDIR:-/tmp}/kvd-bench.XXXXXX")
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

# pick_ports N: prints a base port such that base..base+N-1 are free.
pick_ports() {
  local n=$1 try base i ok
  for try in $(seq 1 50); do
    base=$((20000 + RANDOM % 30000))
    ok=1
    for i in $(seq 0 $((n - 1))); do
      if ! port_free $((base + i)); then ok=0; break; fi
    done
    if [ $ok = 1 ]; then echo "$base"; return 0; fi
  done
  echo "no $n free ports found" >&2
  return 1
}

rss_mb() { awk '/^VmRSS:/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
hwm_mb() { awk '/^VmHWM:/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# wait_ready URL...: every URL answers 2xx, within 60 s.
wait_ready() {
  local i u all
  for i in $(seq 1 600); do
    all=1
    for u in "$@"; do
      if ! curl -sf -o /dev/null --max-time 1 "$u"; then all=0; break; fi
    done
    if [ $all = 1 ]; then return 0; fi
    sleep 0.1
  done
  echo "not ready after 60 s: $*" >&2
  return 1
}

common=(--duration "$DURATION" --warmup "$WARMUP" --keyspace "$KEYSPACE"
        --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE" --json)

# run_suite NAME BENCH ENDPOINTS PIDS...: puts at each CLIENTS_PUT, then
# every key written once in order (so that gets find them), then
# linearizable gets; RSS of PIDS idle and after the last put run.
run_suite() {
  local name=$1 bench=$2 eps=$3 c p
  shift 3
  local node_pids=("$@")
  sleep 2 # let start-up work (snapshots, compactions, metadata) settle
  for p in "${node_pids[@]}"; do echo "$name $p idle $(rss_mb "$p")" >>"$work/rss.txt"; done
  for c in $CLIENTS_PUT; do
    log "$name: puts, $c clients, $DURATION"
    "$bench" --endpoints "$eps" --spread --clients "$c" "${common[@]}" >>"$work/results.jsonl"
  done
  for p in "${node_pids[@]}"; do
    echo "$name $p loaded $(rss_mb "$p") $(hwm_mb "$p")" >>"$work/rss.txt"
  done
  log "$name: fill, every key once in order (64 clients, not in the table)"
  "$bench" --endpoints "$eps" --spread --clients 64 --ops "$KEYSPACE" --warmup 0s --key-dist sequential \
    --keyspace "$KEYSPACE" --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE" --json >>"$work/fill.jsonl"
  log "$name: linearizable gets, $CLIENTS_GET clients, $DURATION"
  "$bench" --endpoints "$eps" --spread --clients "$CLIENTS_GET" --read-ratio 1 --consistency linearizable \
    "${common[@]}" >>"$work/results.jsonl"
}

stop_pids() {
  local p
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

log "building kvd and bench into $work/bin"
mkdir -p "$work/bin"
go build -o "$work/bin/" ./cmd/kvd ./bench
bench=$work/bin/bench

log "RPC ceiling: in-process no-op Connect handler, $CLIENTS_CEILING clients, http1 and h2c"
"$bench" ceiling --clients "$CLIENTS_CEILING" "${common[@]}" >>"$work/results.jsonl"

# --- kvd --------------------------------------------------------------------
base=$(pick_ports 6)
members="" eps="" ready=()
for i in 1 2 3; do
  members+="${members:+,}$i=127.0.0.1:$((base + 2 + i))"
  eps+="${eps:+,}127.0.0.1:$((base - 1 + i))"
  ready+=("http://127.0.0.1:$((base - 1 + i))/readyz")
done
log "kvd: 3 nodes, API $eps"
kvd_pids=()
for i in 1 2 3; do
  "$work/bin/kvd" --node-id "$i" --data-dir "$work/kvd/n$i" --listen "127.0.0.1:$((base - 1 + i))" \
    --raft-addr "127.0.0.1:$((base + 2 + i))" --initial-members "$members" --log-level warn \
    >"$work/kvd-n$i.log" 2>&1 &
  kvd_pids+=($!)
  pids+=($!)
done
wait_ready "${ready[@]}" || { tail -n 20 "$work"/kvd-n*.log >&2; exit 1; }
run_suite kvd "$bench" "$eps" "${kvd_pids[@]}"
stop_pids "${kvd_pids[@]}"

# --- etcd -------------------------------------------------------------------
have_etcd=0
if [ "$ETCD" != 0 ] && command -v etcd >/dev/null; then
  log "building etcd-bench (bench/etcd, its own module)"
  if (cd bench/etcd && go build -o "$work/bin/etcd-bench" .); then
    have_etcd=1
  elif [ "$ETCD" = 1 ]; then
    exit 1
  fi
elif [ "$ETCD" = 1 ]; then
  echo "ETCD=1 but no etcd binary (apt-get install etcd-server etcd-client)" >&2
  exit 1
fi
if [ $have_etcd = 1 ]; then
  base=$(pick_ports 6)
  cluster="" eps="" ready=()
  for i in 1 2 3; do
    cluster+="${cluster:+,}e$i=http://127.0.0.1:$((base + 2 + i))"
    eps+="${eps:+,}127.0.0.1:$((base - 1 + i))"
    ready+=("http://127.0.0.1:$((base - 1 + i))/health")
  done
  log "etcd $(etcd --version | awk '/etcd Version/ {print $3}'): 3 members, clients $eps"
  etcd_pids=()
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$work/etcd/e$i" \
      --listen-client-urls "http://127.0.0.1:$((base - 1 + i))" \
      --advertise-client-urls "http://127.0.0.1:$((base - 1 + i))" \
      --listen-peer-urls "http://127.0.0.1:$((base + 2 + i))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((base + 2 + i))" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token kvd-bench \
      --logger zap --log-level warn >"$work/etcd-e$i.log" 2>&1 &
    etcd_pids+=($!)
    pids+=($!)
  done
  wait_ready "${ready[@]}" || { tail -n 20 "$work"/etcd-e*.log >&2; exit 1; }
  run_suite etcd "$work/bin/etcd-bench" "$eps" "${etcd_pids[@]}"
  stop_pids "${etcd_pids[@]}"
else
  log "etcd: not measured (no etcd binary, or ETCD=0)"
fi

# --- report -----------------------------------------------------------------
echo
echo "$(nproc) cores, $(go version | cut -d' ' -f3), $(uname -sr); each run $DURATION after $WARMUP warmup;"
echo "$KEY_SIZE-byte keys, $VALUE_SIZE-byte values, $KEYSPACE keys; clients spread over the 3 nodes; fsync on."
echo
"$bench" table "$work/results.jsonl"
echo
echo "RSS per node (MB): idle, after the put runs, peak (VmHWM)"
awk '
  $3 == "idle"   { idle[$1] = idle[$1] " " $4 }
  $3 == "loaded" { load[$1] = load[$1] " " $4; peak[$1] = peak[$1] " " $5 }
  END { for (s in idle) printf "  %-5s idle%s | after load%s | peak%s\n", s, idle[s], load[s], peak[s] }
' "$work/rss.txt"
echo
echo "fill (every key once, sequential, 64 clients; not in the table):"
while read -r line; do
  printf '%s\n' "$line" | "$bench" table - | sed -n 2p | awk '{print "  " $0}'
done <"$work/fill.jsonl" 2>/dev/null || true
cp "$work/results.jsonl" "${RESULTS:-/dev/null}" 2>/dev/null || true
