#!/usr/bin/env bash
# Put throughput with and without the watch history, side by side: two
# 3-node kvd clusters on 127.0.0.1, one with the default history (100,000
# revisions) and one with --watch-history -1, and REPEAT rounds of puts at
# CLIENTS clients on each, taking turns to go first. Prints the median run
# of each and the ratio.
#
#   REPEAT=3 bash bench/history.sh
#
# Environment: CLIENTS (64), DURATION (5s), WARMUP (1s), REPEAT (3),
# KEEP=1 keeps the temp dir (logs, JSON results).
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-64}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
REPEAT=${REPEAT:-3}

command -v jq >/dev/null || { echo "bench/history.sh needs jq (apt-get install jq)" >&2; exit 1; }
work_prefix="kvd-history"
# shellcheck source=bench/lib.sh
source bench/lib.sh

log "building kvd and bench into $work/bin"
mkdir -p "$work/bin"
go build -o "$work/bin/" ./cmd/kvd ./bench

declare -A eps node_pids
ready=()
tck=$(getconf CLK_TCK)
# cpu_s PID...: CPU seconds (user + system) the processes have used.
cpu_s() {
  local p
  for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk -v t="$tck" '{s += $1} END {printf "%.2f", s / t}'
}
# start_cluster NAME FLAGS...: 3 nodes with static --initial-members.
start_cluster() {
  local name=$1 base members="" i
  shift
  base=$(pick_ports 6)
  for i in 1 2 3; do
    members+="${members:+,}$i=127.0.0.1:$((base + 2 + i))"
    eps[$name]+="${eps[$name]:+,}127.0.0.1:$((base - 1 + i))"
    ready+=("http://127.0.0.1:$((base - 1 + i))/readyz")
  done
  log "$name: 3 nodes, API ${eps[$name]}${*:+, $*}"
  for i in 1 2 3; do
    "$work/bin/kvd" --node-id "$i" --data-dir "$work/$name/n$i" --listen "127.0.0.1:$((base - 1 + i))" \
      --raft-addr "127.0.0.1:$((base + 2 + i))" --initial-members "$members" --log-level warn "$@" \
      >"$work/$name-n$i.log" 2>&1 &
    pids+=($!)
    node_pids[$name]+=" $!"
  done
}
start_cluster history
start_cluster no-history --watch-history -1
wait_ready "${ready[@]}" || { tail -n 20 "$work"/*.log >&2; exit 1; }
sleep 2 # let start-up work settle

order="history no-history"
for round in $(seq 1 "$REPEAT"); do
  for sys in $order; do
    log "round $round, $sys: puts, $CLIENTS clients, $DURATION"
    c0=$(cpu_s ${node_pids[$sys]})
    "$work/bin/bench" --endpoints "${eps[$sys]}" --spread --clients "$CLIENTS" --duration "$DURATION" \
      --warmup "$WARMUP" --label "round=$round" --json >>"$work/$sys.jsonl"
    # CPU ms of the 3 nodes per 1000 puts (the warmup's CPU included, its puts not)
    awk -v a="$(cpu_s ${node_pids[$sys]})" -v b="$c0" -v n="$(tail -n 1 "$work/$sys.jsonl" | jq .ops)" \
      'BEGIN {printf "%.1f\n", 1e6 * (a - b) / n}' >>"$work/$sys.cpu"
  done
  order=$(printf '%s\n' $order | tac | paste -sd' ')
done

# median SYS: "ops/s p50 p99" of the median run by ops/s.
median() {
  jq -s -r 'sort_by(.ops_per_sec) | .[(length - 1) / 2 | floor] | "\(.ops_per_sec) \(.p50_ms) \(.p99_ms) \(.errors)"' "$work/$1.jsonl"
}
read -r on_ops on_p50 on_p99 on_err < <(median history)
read -r off_ops off_p50 off_p99 off_err < <(median no-history)
echo
echo "$(nproc) cores; puts at $CLIENTS clients spread over 3 nodes, $DURATION after $WARMUP warmup, median of $REPEAT"
awk -v a="$on_ops" -v b="$on_p50" -v c="$on_p99" -v d="$on_err" -v e="$off_ops" -v f="$off_p50" -v g="$off_p99" -v h="$off_err" 'BEGIN {
  printf "| kvd | puts/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|\n"
  printf "| history (100,000 revisions) | %.0f | %.2f | %.1f | %d |\n", a, b, c, d
  printf "| --watch-history -1 | %.0f | %.2f | %.1f | %d |\n", e, f, g, h
  printf "with / without history: %.2fx puts/s, %.2fx p50, %.2fx p99\n", a / e, b / f, c / g
}'
echo "all runs (ops/s | CPU ms of the 3 nodes per 1000 puts):"
for sys in history no-history; do
  printf '  %-11s %s | %s (median %s)\n' "$sys" "$(jq -r '.ops_per_sec | floor' "$work/$sys.jsonl" | paste -sd' ')" \
    "$(paste -sd' ' "$work/$sys.cpu")" "$(sort -n "$work/$sys.cpu" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')"
done
