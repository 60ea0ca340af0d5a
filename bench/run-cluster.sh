#!/usr/bin/env bash
# Measures the RPC ceiling, a 3-node kvd cluster on loopback and (when the
# etcd binary is installed) a 3-member etcd cluster with the same load, and
# prints one comparison table. Everything listens on 127.0.0.1; everything
# started here is killed on exit.
#
#   bash bench/run-cluster.sh                 # about 4 minutes with etcd
#   DURATION=20s ETCD=0 bash bench/run-cluster.sh
#   REPEAT=3 bash bench/run-cluster.sh        # on a shared machine: medians
#
# Environment: DURATION (each measured run, default 5s), WARMUP (1s),
# CLIENTS_PUT ("1 16 64"), CLIENTS_GET (16), CLIENTS_CEILING (64),
# CLIENTS_STREAM (64: kvd puts over client.Config.Stream; "" skips them),
# KEYSPACE (100000), KEY_SIZE (16), VALUE_SIZE (128), ETCD (auto|0|1),
# REPEAT (1: rounds of the ceiling, puts and gets, kvd and etcd taking turns
# to go first; the table shows each workload's median kvd run beside the
# etcd run and the ceiling of the same round),
# KEEP=1 keeps the temp dir (logs, JSON results), RESULTS=FILE copies the
# JSON results there (bench table FILE prints the table again).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CLIENTS_PUT=${CLIENTS_PUT:-"1 16 64"}
CLIENTS_GET=${CLIENTS_GET:-16}
CLIENTS_CEILING=${CLIENTS_CEILING:-64}
CLIENTS_STREAM=${CLIENTS_STREAM:-64}
KEYSPACE=${KEYSPACE:-100000}
KEY_SIZE=${KEY_SIZE:-16}
VALUE_SIZE=${VALUE_SIZE:-128}
ETCD=${ETCD:-auto}
REPEAT=${REPEAT:-1}

work_prefix="kvd-bench"
# shellcheck source=bench/lib.sh
source bench/lib.sh

# On a shared machine other work competes for the cores. cpu_now sets
# cpu_busy (the machine's busy CPU seconds, /proc/stat), cpu_kids (CPU
# seconds of this shell's finished children: bench runs, stopped nodes;
# bash's times, run in this shell, not a subshell) and cpu_wall;
# cpu_mark remembers them, and cpu_others NAME notes which share of all
# cores other processes used since. Call it after the nodes were waited for.
tck=$(getconf CLK_TCK)
cpu_now() {
  cpu_busy=$(awk -v t="$tck" '/^cpu / {print ($2+$3+$4+$7+$8+$9)/t}' /proc/stat)
  times >"$work/times.txt"
  cpu_kids=$(awk 'NR == 2 {
    s = 0
    for (i = 1; i <= NF; i++) { split($i, p, "m"); sub("s", "", p[2]); s += p[1] * 60 + p[2] }
    print s }' "$work/times.txt")
  cpu_wall=$(date +%s.%N)
}
cpu_mark() { cpu_now; mark=("$cpu_busy" "$cpu_kids" "$cpu_wall"); }
cpu_others() {
  cpu_now
  awk -v n="$1" -v b0="${mark[0]}" -v k0="${mark[1]}" -v t0="${mark[2]}" \
      -v b1="$cpu_busy" -v k1="$cpu_kids" -v t1="$cpu_wall" -v c="$(nproc)" \
      'BEGIN { o = ((b1 - b0) - (k1 - k0)) / ((t1 - t0) * c) * 100; if (o < 0) o = 0
               printf "%s: %.0f%%\n", n, o }' >>"$work/load.txt"
}

rss_mb() { awk '/^VmRSS:/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
hwm_mb() { awk '/^VmHWM:/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }


common=(--duration "$DURATION" --warmup "$WARMUP" --keyspace "$KEYSPACE"
        --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE" --json)

stop_pids() {
  local p
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

log "building kvd and bench into $work/bin"
mkdir -p "$work/bin"
go build -o "$work/bin/" ./cmd/kvd ./bench
bench=$work/bin/bench


# --- clusters ---------------------------------------------------------------
# Both clusters run side by side (the idle one costs a few heartbeats) and
# every workload runs on one, then at once on the other: on a shared
# machine whatever else runs then weighs on both alike.
build_etcd_bench

cpu_mark
systems=(kvd) ready=()
declare -A eps node_pids benches
benches[kvd]=$bench
base=$(pick_ports 6)
members=""
for i in 1 2 3; do
  members+="${members:+,}$i=127.0.0.1:$((base + 2 + i))"
  eps[kvd]+="${eps[kvd]:+,}127.0.0.1:$((base - 1 + i))"
  ready+=("http://127.0.0.1:$((base - 1 + i))/readyz")
done
log "kvd: 3 nodes, API ${eps[kvd]}"
for i in 1 2 3; do
  "$work/bin/kvd" --node-id "$i" --data-dir "$work/kvd/n$i" --listen "127.0.0.1:$((base - 1 + i))" \
    --raft-addr "127.0.0.1:$((base + 2 + i))" --initial-members "$members" --log-level warn \
    >"$work/kvd-n$i.log" 2>&1 &
  node_pids[kvd]+=" $!"
  pids+=($!)
done

if [ $have_etcd = 1 ]; then
  systems+=(etcd)
  benches[etcd]=$work/bin/etcd-bench
  base=$(pick_ports 6)
  cluster=""
  for i in 1 2 3; do
    cluster+="${cluster:+,}e$i=http://127.0.0.1:$((base + 2 + i))"
    eps[etcd]+="${eps[etcd]:+,}127.0.0.1:$((base - 1 + i))"
    ready+=("http://127.0.0.1:$((base - 1 + i))/health")
  done
  log "etcd $(etcd --version | awk '/etcd Version/ {print $3}'): 3 members, clients ${eps[etcd]}"
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$work/etcd/e$i" \
      --listen-client-urls "http://127.0.0.1:$((base - 1 + i))" \
      --advertise-client-urls "http://127.0.0.1:$((base - 1 + i))" \
      --listen-peer-urls "http://127.0.0.1:$((base + 2 + i))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((base + 2 + i))" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token kvd-bench \
      --logger zap --log-level warn >"$work/etcd-e$i.log" 2>&1 &
    node_pids[etcd]+=" $!"
    pids+=($!)
  done
else
  log "etcd: not measured (no etcd binary, or ETCD=0)"
fi
wait_ready "${ready[@]}" || { tail -n 20 "$work"/*.log >&2; exit 1; }
sleep 2 # let start-up work (snapshots, compactions, metadata) settle

# rss_note STATE: every node's RSS (and peak) now.
rss_note() {
  local sys p
  for sys in "${systems[@]}"; do
    for p in ${node_pids[$sys]}; do echo "$sys $p $1 $(rss_mb "$p") $(hwm_mb "$p")" >>"$work/rss.txt"; done
  done
}

# each NAME ARGS...: runs the workload on every system, one after the
# other, in the order of $order.
each() {
  local what=$1 sys
  shift
  for sys in $order; do
    log "round $round, $sys: $what"
    "${benches[$sys]}" --endpoints "${eps[$sys]}" --spread --label "round=$round" "$@" >>"$work/results.jsonl"
  done
}

rss_note idle
for round in $(seq 1 "$REPEAT"); do
  order="${systems[*]}"
  if [ $((round % 2)) = 0 ]; then order=$(printf '%s\n' "${systems[@]}" | tac | paste -sd' '); fi
  log "round $round: RPC ceiling, in-process no-op Connect handler, $CLIENTS_CEILING clients, http1, h2c and the stream"
  "$bench" ceiling --clients "$CLIENTS_CEILING" --transport http1,h2c,stream --label "round=$round" "${common[@]}" >>"$work/results.jsonl"
  for c in $CLIENTS_PUT; do
    each "puts, $c clients, $DURATION" --clients "$c" "${common[@]}"
  done
  for c in $CLIENTS_STREAM; do
    log "round $round, kvd: puts over the stream, $c clients, $DURATION: one client per node, then one client to the leader"
    "$bench" --endpoints "${eps[kvd]}" --spread --stream --label "round=$round" --clients "$c" "${common[@]}" >>"$work/results.jsonl"
    "$bench" --endpoints "${eps[kvd]}" --prefer-leader --stream --label "round=$round" --clients "$c" "${common[@]}" >>"$work/results.jsonl"
  done
  if [ "$round" = 1 ]; then
    rss_note loaded
    each "every key once in order, 64 clients (the \"put seq\" row, so that the gets find them all)" \
      --clients 64 --ops "$KEYSPACE" --warmup 0s --key-dist sequential \
      --keyspace "$KEYSPACE" --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE" --json
  fi
  each "linearizable gets, $CLIENTS_GET clients, $DURATION" \
    --clients "$CLIENTS_GET" --read-ratio 1 --consistency linearizable "${common[@]}"
done

stop_pids "${pids[@]}"
pids=()
cpu_others "during the runs"

# --- report -----------------------------------------------------------------
echo
echo "$(nproc) cores, $(go version | cut -d' ' -f3), $(uname -sr); each run $DURATION after $WARMUP warmup, $REPEAT round(s);"
echo "$KEY_SIZE-byte keys, $VALUE_SIZE-byte values, $KEYSPACE keys; clients spread over the 3 nodes; fsync on."
echo
"$bench" table "$work/results.jsonl"
echo
echo "RSS per node (MB, VmRSS): idle before the load | right after the first round's put runs | peak (VmHWM)"
for sys in "${systems[@]}"; do
  awk -v sys="$sys" '
    $1 == sys && $3 == "idle"   { idle = idle " " $4 }
    $1 == sys && $3 == "loaded" { load = load " " $4; peak = peak " " $5 }
    END { if (idle != "") printf "  %-5s%s |%s |%s\n", sys, idle, load, peak }
  ' "$work/rss.txt"
done
echo
echo "share of all cores used by other processes meanwhile (the machine is shared):"
sed 's/^/  /' "$work/load.txt"
if [ -n "${RESULTS:-}" ]; then cp "$work/results.jsonl" "$RESULTS"; fi
