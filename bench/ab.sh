#!/usr/bin/env bash
# A/B (or A/B/C) throughput of kvd builds on one machine: one 3-node
# cluster per binary on loopback, all side by side (an idle one costs a few
# heartbeats), and every workload run on each cluster in turn before the
# next workload, the order rotated every round, so that whatever else the
# (shared) machine does weighs on every build alike. The load generator is
# this tree's bench for all of them. Prints the median ops/s of each build
# per workload, the spread (min–max), the ratio of its median to the first
# build's, and the paired ratio: the median (and range) of its per-round
# ratios to the first build's run of the same round, measured moments
# apart, which cancels noise that lasts longer than a round.
# Beside it, the CPU time the cluster's three nodes spent per operation
# (warmup included: CPU seconds / (ops/s × (warmup + duration))), which
# other work on the machine sways less than the throughput.
#
#   git worktree add /tmp/kvd-before 65803cc && (cd /tmp/kvd-before && go build -o /tmp/kvd-before.bin ./cmd/kvd)
#   go build -o /tmp/kvd-after.bin ./cmd/kvd
#   bash bench/ab.sh before=/tmp/kvd-before.bin after=/tmp/kvd-after.bin
#
# Environment: ROUNDS (3), DURATION (10s), WARMUP (2s), CLIENTS_PUT (64:
# unary puts (--unary) and puts over the stream, the client's default),
# CLIENTS_GET (16: linearizable gets, the client's default), KEYSPACE (100000), KEY_SIZE (16), VALUE_SIZE (128); RESULTS=FILE
# copies the JSON lines there; KEEP=1 keeps the temp dir (node logs).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CLIENTS_PUT=${CLIENTS_PUT:-64}
CLIENTS_GET=${CLIENTS_GET:-16}
KEYSPACE=${KEYSPACE:-100000}
KEY_SIZE=${KEY_SIZE:-16}
VALUE_SIZE=${VALUE_SIZE:-128}
unset KVCTL_CACERT KVCTL_CERT KVCTL_KEY

if [ $# -lt 2 ]; then
  echo "usage: bash bench/ab.sh NAME=KVD_BINARY NAME=KVD_BINARY..." >&2
  exit 2
fi

work_prefix="kvd-ab"
# shellcheck source=bench/lib.sh
source bench/lib.sh

log "building bench into $work/bin"
mkdir -p "$work/bin"
go build -o "$work/bin/" ./bench
bench=$work/bin/bench
sizes=(--keyspace "$KEYSPACE" --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE" --json)

names=() ready=()
declare -A bins eps node_pids
for arg in "$@"; do
  name=${arg%%=*} bin=${arg#*=}
  [ -x "$bin" ] || { echo "$bin: not an executable" >&2; exit 2; }
  names+=("$name")
  bins[$name]=$bin
done

for name in "${names[@]}"; do
  base=$(pick_ports 6)
  members=""
  for i in 1 2 3; do
    members+="${members:+,}$i=127.0.0.1:$((base + 2 + i))"
    eps[$name]+="${eps[$name]:+,}127.0.0.1:$((base - 1 + i))"
    ready+=("http://127.0.0.1:$((base - 1 + i))/readyz")
  done
  log "$name (${bins[$name]}): 3 nodes, API ${eps[$name]}"
  for i in 1 2 3; do
    "${bins[$name]}" --node-id "$i" --data-dir "$work/$name/n$i" --listen "127.0.0.1:$((base - 1 + i))" \
      --raft-addr "127.0.0.1:$((base + 2 + i))" --initial-members "$members" --log-level warn \
      >"$work/$name-n$i.log" 2>&1 &
    pids+=($!)
    node_pids[$name]+=" $!"
  done
done
wait_ready "${ready[@]}" || { tail -n 20 "$work"/*.log >&2; exit 1; }
sleep 2 # let start-up work (snapshots, metadata) settle

# cpu_s NAME: CPU seconds (user + system) the cluster's nodes used so far.
tck=$(getconf CLK_TCK)
cpu_s() {
  local p
  for p in ${node_pids[$1]}; do cat "/proc/$p/stat"; done | awk -v t="$tck" '{s += $14 + $15} END {print s / t}'
}

# run NAME WORKLOAD ROUND ARGS...: one measured run, tagged NAME/WORKLOAD/ROUND,
# with the CPU seconds its cluster used meanwhile (warmup included): less
# swayed by other work on the machine than the throughput.
run() {
  local name=$1 workload=$2 round=$3 c0 out
  shift 3
  log "round $round, $name: $workload"
  c0=$(cpu_s "$name")
  out=$("$bench" --endpoints "${eps[$name]}" --spread --label "$name/$workload/$round" "$@")
  jq -c --argjson cpu "$(awk -v a="$c0" -v b="$(cpu_s "$name")" 'BEGIN {print b - a}')" '. + {kvd_cpu_s: $cpu}' <<<"$out" >>"$work/results.jsonl"
}

for name in "${names[@]}"; do # every key once, so that the gets find them
  run "$name" fill 0 --clients 64 --ops "$KEYSPACE" --warmup 0s --key-dist sequential "${sizes[@]}"
done

common=(--duration "$DURATION" --warmup "$WARMUP" "${sizes[@]}")
for round in $(seq 1 "$ROUNDS"); do
  # The order rotates by one build each round.
  k=$(((round - 1) % ${#names[@]}))
  order=("${names[@]:k}" "${names[@]:0:k}")
  for name in "${order[@]}"; do run "$name" "put-$CLIENTS_PUT" "$round" --unary --clients "$CLIENTS_PUT" "${common[@]}"; done
  for name in "${order[@]}"; do run "$name" "put-stream-$CLIENTS_PUT" "$round" --clients "$CLIENTS_PUT" "${common[@]}"; done
  for name in "${order[@]}"; do
    run "$name" "get-linearizable-$CLIENTS_GET" "$round" --clients "$CLIENTS_GET" --read-ratio 1 --consistency linearizable "${common[@]}"
  done
done

stop_pids() {
  local p
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
stop_pids "${pids[@]}"
pids=()

echo
echo "$(nproc) cores, $(go version | cut -d' ' -f3); $ROUNDS rounds of $DURATION after $WARMUP warmup; $KEY_SIZE-byte keys, $VALUE_SIZE-byte values, $KEYSPACE keys; clients spread over 3 nodes"
echo
jq -rs --arg first "${names[0]}" '
  def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def r3: . * 1000 | round / 1000;
  [ .[] | (.label | split("/")) as $l | select($l[1] != "fill")
    | {build: $l[0], workload: $l[1], round: $l[2], ops: .ops_per_sec, errors: .errors,
       cpu_us: (if .kvd_cpu_s then .kvd_cpu_s / (.ops_per_sec * (.duration_s + .warmup_s)) * 1e6 else null end)} ]
  | group_by(.workload) | .[]
  | (map(select(.build == $first)) | map({key: .round, value: .ops}) | from_entries) as $base
  | group_by(.build) | .[]
  | (map(.ops)) as $o
  | (map(.ops / $base[.round])) as $pr
  | "\(.[0].workload)\t\(.[0].build)\tmedian \($o | median | round)/s\tmin \($o | min | round)\tmax \($o | max | round)\terrors \(map(.errors) | add)\tratio of medians \((($o | median) / ($base | [.[]] | median)) | r3)\tpaired \($pr | median | r3) (\($pr | min | r3)–\($pr | max | r3))\tcluster CPU/op \(map(.cpu_us) | if any(. == null) then "-" else "\(median | round) µs (\(min | round)–\(max | round))" end)\truns \($o | map(round) | join(" "))"
' "$work/results.jsonl" | column -t -s $'\t'
if [ -n "${RESULTS:-}" ]; then cp "$work/results.jsonl" "$RESULTS"; fi
