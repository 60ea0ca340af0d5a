#!/usr/bin/env bash
# Measures, side by side on loopback, how long a new member takes to become a
# voter in a one-node cluster that holds ~100 MB (KEYS × VALUE_SIZE), and in
# an empty one for reference: kvd (`kvd --join`, the node promotes itself)
# and, when the etcd binary is installed, etcd (`etcdctl member add
# --learner`, start the learner, `etcdctl member promote` retried every 50 ms
# until etcd accepts it). Prints one table. Everything listens on 127.0.0.1;
# everything started here is killed on exit.
#
#   bash bench/join.sh                        # about a minute with etcd
#   REPEAT=3 bash bench/join.sh               # 3 joins per cluster, medians: 1.5 min
#   KEYS=20000 ETCD=0 bash bench/join.sh
#   TLS=1 ETCD=0 REPEAT=3 bash bench/join.sh  # kvd with TLS beside kvd without
#
# What is timed:
# - kvd: from starting `kvd --join BOOT --promote-after PROMOTE_AFTER` to the
#   moment BOOT lists the new node as a voter and ready (`kvctl members -o
#   json`, polled every 50 ms; the criterion of e2e's joinTime). "caught up"
#   is the first poll of the joiner's own /readyz that answers 200 (it has
#   applied the leader's commit index as of a ReadIndex and serves reads;
#   still an observer), as etcd's is the learner's own status API. (Until
#   November 2026 it was the first poll of BOOT's list that showed it
#   ready, which lags by up to one of the leader's 500 ms probes.)
# - etcd: from just before `etcdctl member add NAME --learner` to the first
#   `etcdctl member promote ID` that succeeds (etcd refuses while the
#   learner's Raft match index is below 90% of the leader's). "caught up" is
#   the first time the learner's own status API (maintenance status over
#   the HTTP gateway, polled every 50 ms) answers with an applied index at
#   least the leader's commit index right after the add: it then holds every
#   key and serves clients (etcd opens its client port only once the new
#   member has published itself through Raft).
# - "snapshot": when the joiner's own log says it has loaded the streamed
#   snapshot (kvd: "recovered from snapshot", etcd: "applied snapshot").
# The clusters that hold data compact their logs early, so that the joiner
# gets the whole store as a snapshot, not as log entries: kvd runs with
# --snapshot-entries 100 --compaction-overhead 10 (as e2e's
# TestJoinerCatchesUp100MB), etcd with --snapshot-count SNAPSHOT_COUNT
# (10000; etcd keeps 5000 entries behind its last snapshot, so a new member
# needs a snapshot as soon as the log is longer than that); the empty
# clusters run with the defaults. Both systems get the
# same Raft timing: kvd --rtt RTT_MS (a heartbeat every 2 ticks, elections
# after 20-40), etcd --heartbeat-interval 2×RTT_MS --election-timeout
# 20×RTT_MS (with the default 50 ms: kvd's and etcd's defaults).
#
# Data: KEYS keys written once each, in order, by LOAD_CLIENTS clients (bench and
# bench/etcd's etcd-bench, the same load loop): "k" + index zero-padded to
# KEY_SIZE bytes, one random VALUE_SIZE-byte value (the same bytes for every
# key, as bench writes them: compressible across keys).
#
# Environment: KEYS (100000), VALUE_SIZE (1024), KEY_SIZE (16), REPEAT (1:
# joins per cluster; before the next one the joiner is removed, stopped and
# wiped, and the system that went first goes second), PROMOTE_AFTER (500ms,
# kvd's dwell before it promotes itself; kvd's default is 2s), RTT_MS (50),
# SNAPSHOT_COUNT (10000), LOAD_CLIENTS (64), EMPTY=0 skips the empty-store
# joins, ETCD (auto|0|1), TIMEOUT (300: seconds any wait may take before the
# script gives up), KEEP=1 keeps the temp dir (logs, data dirs), TLS=1 adds
# "kvd-tls": the same kvd clusters and joins with --cert-file --key-file
# --trusted-ca-file (certificates from kvctl certs; the API serves only TLS,
# Raft runs mutual TLS, the snapshot streams over it), reported beside kvd.
#
# Writes during a join (WRITES=1, the default; WRITES=only runs just this,
# WRITES=0 skips it): a 3-node cluster per system holding the same data
# takes WRITE_CLIENTS (16) clients' puts spread over its members for
# WRITE_DURATION (10) s, twice right after each other: alone, and with a
# node joining JOIN_AT (2) s after the load starts (kvd: --join, promoted
# to a fourth voter; etcd: learner add, start, promote as above); the
# order takes turns between rounds. Reported: puts/s, p50 and p99 of both
# runs, the p99 ratio, and the joiner's times.
#
#   WRITES=only REPEAT=3 bash bench/join.sh   # writes during a join only
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-100000}
VALUE_SIZE=${VALUE_SIZE:-1024}
KEY_SIZE=${KEY_SIZE:-16}
REPEAT=${REPEAT:-1}
PROMOTE_AFTER=${PROMOTE_AFTER:-500ms}
RTT_MS=${RTT_MS:-50}
SNAPSHOT_COUNT=${SNAPSHOT_COUNT:-10000}
LOAD_CLIENTS=${LOAD_CLIENTS:-64}
EMPTY=${EMPTY:-1}
ETCD=${ETCD:-auto}
TIMEOUT=${TIMEOUT:-300}
TLS=${TLS:-0}
WRITES=${WRITES:-1}
WRITE_CLIENTS=${WRITE_CLIENTS:-16}
WRITE_DURATION=${WRITE_DURATION:-10}
JOIN_AT=${JOIN_AT:-2}
export ETCDCTL_API=3
READY_TIMEOUT=$TIMEOUT

work_prefix="kvd-join"
# shellcheck source=bench/lib.sh
source bench/lib.sh
die() { printf 'join.sh: %s\n' "$*" >&2; exit 1; }

# since T0: seconds from T0 (an $EPOCHREALTIME) to now, 3 decimals.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }


stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# retry WHAT CMD...: runs CMD every 0.5 s until it succeeds, for TIMEOUT at
# most (etcd refuses to remove a voter that connected less than 5 s ago:
# "unhealthy cluster").
retry() {
  local what=$1 deadline=$((SECONDS + TIMEOUT)) out
  shift
  until out=$("$@" 2>&1); do
    ((SECONDS < deadline)) || die "$what failed for $TIMEOUT s: $out"
    sleep 0.5
  done
}

# log_since T0 FILE STRING: seconds from T0 to the time stamp of FILE's first
# line that holds STRING (kvd's time=... and etcd's "ts":"..." are both UTC
# with milliseconds), or - when no line does.
log_since() {
  local line ts
  line=$(grep -m 1 -F -- "$3" "$2") || { echo -; return 0; }
  ts=$(grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z' <<<"$line" | head -n 1)
  awk -v a="$1" -v b="$(date -d "$ts" +%s.%N)" 'BEGIN { printf "%.3f", b - a }'
}

log "building kvd, kvctl and bench into $work/bin"
mkdir -p "$work/bin"
go build -o "$work/bin/" ./cmd/kvd ./cmd/kvctl ./bench
kvd=$work/bin/kvd
kvctl=$work/bin/kvctl

build_etcd_bench

stores=(full)
if [ "$EMPTY" = 1 ]; then stores=(empty full); fi
if [ "$WRITES" = only ]; then stores=(); fi
systems=(kvd)
if [ $have_etcd = 1 ]; then systems+=(etcd); fi
# tls_flags SYSTEM / tls_client SYSTEM: the kvd flags, and the kvctl/bench
# flags, of SYSTEM (none but for kvd-tls).
tls_flags=() tls_client=()
if [ "$TLS" = 1 ]; then
  systems+=(kvd-tls)
  "$kvctl" certs ca --out "$work/tls" >/dev/null
  "$kvctl" certs issue --ca "$work/tls" --name node --host 127.0.0.1,localhost --out "$work/tls" >/dev/null
  tls_flags=(--cert-file "$work/tls/node.crt" --key-file "$work/tls/node.key" --trusted-ca-file "$work/tls/ca.crt")
  tls_client=(--cacert "$work/tls/ca.crt")
  curl_opts=(--cacert "$work/tls/ca.crt")
fi
flags_of() { if [ "$1" = kvd-tls ]; then echo "${tls_flags[@]}"; fi; }
client_of() { if [ "$1" = kvd-tls ]; then echo "${tls_client[@]}"; fi; }
scheme_of() { if [ "$1" = kvd-tls ]; then echo https; else echo http; fi; }

# --- the clusters that are joined --------------------------------------------
# One single-node cluster per system and store; each keeps its first member
# for the whole run.
declare -A boot
ready=()
base=$(pick_ports 12)
for store in "${stores[@]}"; do
  kvd_compact=() etcd_compact=()
  if [ "$store" = full ]; then
    kvd_compact=(--snapshot-entries 100 --compaction-overhead 10)
    etcd_compact=(--snapshot-count "$SNAPSHOT_COUNT")
  fi
  for sys in kvd kvd-tls; do
    if [ "$sys" = kvd-tls ] && [ "$TLS" != 1 ]; then continue; fi
    api=127.0.0.1:$base raft=127.0.0.1:$((base + 1))
    base=$((base + 2))
    boot[$sys-$store]=$api
    # shellcheck disable=SC2046 # flags_of prints separate words
    "$kvd" --data-dir "$work/$sys-$store/boot" --listen "$api" --raft-addr "$raft" \
      --rtt "${RTT_MS}ms" --promote-after "$PROMOTE_AFTER" \
      "${kvd_compact[@]}" $(flags_of $sys) --log-level warn \
      >"$work/$sys-$store-boot.log" 2>&1 &
    pids+=($!)
    ready+=("$(scheme_of $sys)://$api/readyz")
    log "$sys ($store): 1 node, API $api"
  done
  if [ $have_etcd = 1 ]; then
    client=http://127.0.0.1:$base peer=http://127.0.0.1:$((base + 1))
    base=$((base + 2))
    boot[etcd-$store]=${client#http://}
    etcd --name boot --data-dir "$work/etcd-$store/boot" \
      --listen-client-urls "$client" --advertise-client-urls "$client" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "boot=$peer" --initial-cluster-state new --initial-cluster-token "kvd-join-$store" \
      "${etcd_compact[@]}" \
      --heartbeat-interval $((2 * RTT_MS)) --election-timeout $((20 * RTT_MS)) \
      --logger zap --log-level warn >"$work/etcd-$store-boot.log" 2>&1 &
    pids+=($!)
    ready+=("$client/health")
    log "etcd $(etcd --version | awk '/etcd Version/ {print $3}') ($store): 1 member, client $client"
  fi
done
wait_ready "${ready[@]}" || { tail -n 20 "$work"/*.log >&2; exit 1; }

# --- the data -------------------------------------------------------------------
load_args=(--clients "$LOAD_CLIENTS" --ops "$KEYS" --warmup 0s --key-dist sequential
           --keyspace "$KEYS" --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE" --json)
mb=$(awk -v k="$KEYS" -v s=$((KEY_SIZE + VALUE_SIZE)) 'BEGIN { printf "%.0f", k * s / 1e6 }')
# load_data SYSTEM ENDPOINTS NAME: writes the KEYS keys through ENDPOINTS
# (the load's JSON: load-NAME.json).
load_data() {
  local sys=$1 eps=$2 f=$work/load-$3.json b=$work/bin/bench
  log "$sys: writing $KEYS keys × $VALUE_SIZE B ($mb MB of keys and values), $LOAD_CLIENTS clients"
  if [ "$sys" = etcd ]; then b=$work/bin/etcd-bench; fi
  # shellcheck disable=SC2046
  "$b" --endpoints "$eps" --spread $(client_of "$sys") "${load_args[@]}" >"$f"
  jq -r --arg s "$3" '"\($s): \(.ops) puts in \(.duration_s * 10 | round / 10) s, \(.ops_per_sec | round) puts/s, \(.errors) errors"' \
    "$f" >>"$work/notes.txt"
  jq -e --argjson k "$KEYS" '.ops == $k and .errors == 0' "$f" >/dev/null ||
    die "$3: the load did not write every key once: $(cat "$f")"
}
for sys in "${systems[@]}"; do
  if [ ${#stores[@]} = 0 ]; then break; fi
  load_data "$sys" "${boot[$sys-full]}" "$sys"
done
sleep 2 # let the load's compactions settle

# dir_mb DIR: its size on disk in MB.
dir_mb() { du -sk "$1" | awk '{ printf "%.0f", $1 / 1024 }'; }

# --- kvd ---------------------------------------------------------------------------
# kvd_join STORE ROUND: starts a node that joins the STORE cluster and times
# it; appends one line to $results (results.txt); join_flags are added to
# the joiner's flags.
kvd_join() { kvd_join_as kvd "$@"; }
kvd-tls_join() { kvd_join_as kvd-tls "$@"; }

# kvd_join_as SYSTEM STORE ROUND: kvd_join for kvd or kvd-tls.
kvd_join_as() {
  local sys=$1
  shift
  local store=$1 round=$2 b=${boot[$sys-$1]} name="$sys-$1-r$2" port api raft t0 jpid st caught="" voter="" id
  local tf tc
  tf=$(flags_of "$sys") tc=$(client_of "$sys")
  port=$(pick_ports 2)
  api=127.0.0.1:$port raft=127.0.0.1:$((port + 1))
  t0=$EPOCHREALTIME
  # shellcheck disable=SC2086 # $tf: separate words
  "$kvd" --data-dir "$work/$name" --listen "$api" --raft-addr "$raft" --join "$b" $tf \
    --rtt "${RTT_MS}ms" --promote-after "$PROMOTE_AFTER" ${join_flags[@]+"${join_flags[@]}"} \
    --log-level info >"$work/$name.log" 2>&1 &
  jpid=$!
  pids+=("$jpid")
  local deadline=$((SECONDS + TIMEOUT))
  while :; do
    # shellcheck disable=SC2086
    st=$("$kvctl" --endpoints "$b" $tc --timeout 2s -o json members 2>/dev/null |
      jq -r --arg a "$api" '.[] | select(.api_addr == $a) | "\(.role) \(.ready)"' 2>/dev/null) || st=""
    if [ -z "$caught" ] && curl -sf -o /dev/null --max-time 1 ${curl_opts[@]+"${curl_opts[@]}"} "$(scheme_of "$sys")://$api/readyz"; then
      caught=$(since "$t0")
    fi
    if [ "$st" = "voter true" ]; then voter=$(since "$t0"); caught=${caught:-$voter}; break; fi
    kill -0 "$jpid" 2>/dev/null || { tail -n 20 "$work/$name.log" >&2; die "$name exited"; }
    ((SECONDS < deadline)) || die "$name: not a ready voter after $TIMEOUT s (last seen: ${st:-not listed})"
    sleep 0.05
  done
  echo "$sys $store $round $caught $voter $(log_since "$t0" "$work/$name.log" "recovered from snapshot") $(dir_mb "$work/$name")" \
    >>"$results"
  log "$name: caught up ${caught} s, voter ${voter} s"
  joiner=("$sys" "$b" "$api" "$jpid" "$name")
  if [ "$round" -lt "$REPEAT" ] && [ "$defer_removal" = 0 ]; then remove_joiner; fi
}

# remove_joiner: removes, stops and wipes the last joiner (joiner: system,
# the member it joined through, its API address (kvd) or member ID (etcd),
# its pid, its name), to make room for the next one.
remove_joiner() {
  local sys=${joiner[0]} b=${joiner[1]} id=${joiner[2]} tc
  tc=$(client_of "$sys")
  if [ "$sys" != etcd ]; then
    # shellcheck disable=SC2086
    id=$("$kvctl" --endpoints "$b" $tc -o json members | jq -r --arg a "$id" '.[] | select(.api_addr == $a) | .id')
    # shellcheck disable=SC2086
    retry "${joiner[4]}: members remove $id" "$kvctl" --endpoints "$b" $tc --timeout 10s members remove "$id"
  else
    retry "${joiner[4]}: member remove $id" etcdctl --endpoints "$b" --command-timeout 10s member remove "$id"
  fi
  stop_pid "${joiner[3]}"
  rm -rf "${work:?}/${joiner[4]}"
}

# --- etcd ---------------------------------------------------------------------------
# etcd_status URL: the member's maintenance status (JSON, numbers as strings).
etcd_status() { curl -sf --max-time 1 -XPOST "$1/v3/maintenance/status" -d '{}'; }

# etcd_join STORE ROUND: adds a learner to the STORE cluster, starts it,
# promotes it as soon as etcd accepts; appends one line to $results.
etcd_join() {
  local store=$1 round=$2 b=${boot[etcd-$1]} name="etcd-$1-r$2" port peer client t0 out id ic lead jpid wpid applied
  local voter="" caught tries=0
  port=$(pick_ports 2)
  peer=http://127.0.0.1:$port client=http://127.0.0.1:$((port + 1))
  t0=$EPOCHREALTIME
  out=$(etcdctl --endpoints "$b" --command-timeout 10s member add "$name" --learner --peer-urls="$peer" 2>&1) ||
    die "$name: member add failed: $out"
  id=$(awk '$1 == "Member" && $3 == "added" {print $2}' <<<"$out")
  ic=$(sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p' <<<"$out")
  if [ -z "$id" ] || [ -z "$ic" ]; then die "$name: cannot read member add's answer: $out"; fi
  # (tried 3 times: under the writes, one answer may take more than 1 s)
  for _ in 1 2 3; do
    if lead=$(etcd_status "http://$b" | jq -r '.raftIndex | tonumber'); then break; fi
    lead=""
  done
  [ -n "$lead" ] || die "$name: no status from $b"
  etcd --name "$name" --data-dir "$work/$name" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "$ic" --initial-cluster-state existing \
    --heartbeat-interval $((2 * RTT_MS)) --election-timeout $((20 * RTT_MS)) \
    --logger zap --log-level info >"$work/$name.log" 2>&1 &
  jpid=$!
  pids+=("$jpid")
  # The learner holds every key once it has applied the leader's commit
  # index of right after the add: watched beside the promote loop.
  (
    deadline=$((SECONDS + TIMEOUT))
    while :; do
      applied=$(etcd_status "$client" | jq -r '.raftAppliedIndex // 0' 2>/dev/null) || applied=0
      if [ "${applied:-0}" -ge "$lead" ]; then break; fi
      ((SECONDS < deadline)) || { echo "$name: learner not caught up after $TIMEOUT s" >&2; exit 1; }
      sleep 0.05
    done
    since "$t0" >"$work/$name.caught"
  ) &
  wpid=$!
  pids+=("$wpid")
  local deadline=$((SECONDS + TIMEOUT))
  while :; do
    tries=$((tries + 1))
    if etcdctl --endpoints "$b" --command-timeout 2s member promote "$id" >/dev/null 2>>"$work/$name.promote.err"; then
      voter=$(since "$t0")
      break
    fi
    kill -0 "$jpid" 2>/dev/null || { tail -n 20 "$work/$name.log" >&2; die "$name exited"; }
    ((SECONDS < deadline)) || die "$name: promote refused for $TIMEOUT s: $(tail -n 1 "$work/$name.promote.err")"
    sleep 0.05
  done
  wait "$wpid" || die "$name: the learner did not catch up"
  caught=$(cat "$work/$name.caught")
  echo "etcd $store $round $caught $voter $(log_since "$t0" "$work/$name.log" '"msg":"applied snapshot"') $(dir_mb "$work/$name")" \
    >>"$results"
  echo "$name: promote refused $((tries - 1)) time(s): $(grep -o 'desc = [^"]*' "$work/$name.promote.err" | sort | uniq -c | sort -rn | head -n 2 | sed 's/^ *//' | paste -sd';' || true)" \
    >>"$work/notes.txt"
  if grep -qF '"msg":"failed to publish local member to cluster through raft"' "$work/$name.log"; then
    echo "$name: its first proposal to publish itself through Raft timed out ($(log_since "$t0" "$work/$name.log" '"msg":"failed to publish local member') s after the add); etcd serves clients only once that is done" \
      >>"$work/notes.txt"
  fi
  log "$name: caught up ${caught} s, voter ${voter} s"
  joiner=(etcd "$b" "$id" "$jpid" "$name")
  if [ "$round" -lt "$REPEAT" ] && [ "$defer_removal" = 0 ]; then remove_joiner; fi
}

# --- the joins ----------------------------------------------------------------------
results=$work/results.txt join_flags=() defer_removal=0 joiner=()
: >"$results"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$REPEAT"); do
  order=("${systems[@]}")
  if [ $((round % 2)) = 0 ]; then mapfile -t order < <(printf '%s\n' "${systems[@]}" | tac); fi
  for store in "${stores[@]}"; do
    for sys in "${order[@]}"; do
      log "round $round, $sys: join the $store cluster"
      "${sys}_join" "$store" "$round"
    done
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ---------------------------------------------------------------------------
# report_joins: the table of the joins above (none with WRITES=only).
report_joins() {
  sizes=""
  for sys in "${systems[@]}"; do
    sizes+="${sizes:+; }$sys $(dir_mb "$work/$sys-full/boot") MB"
  done
  echo
  echo "$(nproc) cores, $(go version | cut -d' ' -f3), $(uname -sr), etcd $(etcd --version 2>/dev/null | awk '/etcd Version/ {print $3}')"
  echo "data: $KEYS keys × ($KEY_SIZE + $VALUE_SIZE) B = $mb MB; first member's data dir on disk: $sizes"
  echo "kvd --promote-after $PROMOTE_AFTER --rtt ${RTT_MS}ms; data clusters: kvd --snapshot-entries 100 --compaction-overhead 10, etcd --snapshot-count $SNAPSHOT_COUNT"
  echo "load average (1, 5, 15 min) before the joins: $load0; after: $load1"
  echo
  # results.txt: system store round caught-up voter snapshot-loaded joiner-MB
  awk -v mb="$mb" -v keys="$KEYS" -v repeat="$REPEAT" '
    function med(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
      return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
    }
    function secs(x) { return x == "-" ? "-" : sprintf("%.3f s", x) }
    function data(store) { return store == "empty" ? "empty" : mb " MB, " keys " keys" }
    function row(sy, sto, rd, sn, cu, vo, dd,   r) {
      r = ""
      if (sy == "kvd" && (("etcd", sto, rd) in voter)) r = sprintf("%.2fx", vo / voter["etcd", sto, rd])
      if (sy == "kvd-tls" && (("kvd", sto, rd) in voter)) r = sprintf("%.2fx of kvd", vo / voter["kvd", sto, rd])
      printf "%-7s %-19s %-7s %10s %10s %10s %7s %15s\n", sy, data(sto), rd, secs(sn), secs(cu), secs(vo), dd, r
    }
    { line[NR] = $0; voter[$1, $2, $3] = $5
      k = $1 SUBSEP $2; n[k]++; cs[k, n[k]] = $4; vs[k, n[k]] = $5
      if ($6 != "-") { ns[k]++; ss[k, ns[k]] = $6 } }
    END {
      printf "%-7s %-19s %-7s %10s %10s %10s %7s %15s\n", "system", "data", "round", "snapshot", "caught up", "voter", "joiner", "kvd/etcd voter"
      for (i = 1; i <= NR; i++) { split(line[i], f, " "); row(f[1], f[2], f[3], f[6], f[4], f[5], f[7] " MB") }
      if (repeat < 2) exit
      print ""
      for (k in n) {
        for (i = 1; i <= n[k]; i++) { a[i] = cs[k, i]; b[i] = vs[k, i] }
        mc[k] = med(a, n[k]); mv[k] = med(b, n[k]); voter[k, "median"] = mv[k]
        msn[k] = "-"
        if (ns[k]) { for (i = 1; i <= ns[k]; i++) c[i] = ss[k, i]; msn[k] = med(c, ns[k]) }
      }
      split("empty full", stores, " "); split("kvd etcd kvd-tls", systems, " ")
      for (s = 1; s <= 2; s++) for (y = 1; y <= 3; y++) {
        k = systems[y] SUBSEP stores[s]
        if (k in n) row(systems[y], stores[s], "median", msn[k], mc[k], mv[k], "", "")
      }
    }' "$work/results.txt"
  echo
  echo "All times from the start (kvd: kvd --join; etcd: etcdctl member add) to:"
  echo "  snapshot: the joiner's log says it has loaded the streamed snapshot (kvd: \"recovered from"
  echo "    snapshot\"; etcd: \"applied snapshot\"); - : none was sent (the log was enough)."
  echo "  caught up: the joiner serves clients with everything up to the add: kvd: the first poll of its own"
  echo "    /readyz that answered 200 (it has applied the leader's commit index as of a ReadIndex); etcd: its own status API"
  echo "    answers with an applied index at least the leader's commit index of right after the add."
  echo "  voter: kvd: the first poll that showed it a ready voter (it promotes itself once it has been caught"
  echo "    up for $PROMOTE_AFTER); etcd: the first member promote etcd accepted (tried every 50 ms; etcd accepts"
  echo "    once the learner's Raft match index is at least 90% of the leader's)."
  echo "  joiner: its data dir on disk right after (etcd's includes its preallocated 64 MB WAL segments)."
  echo
  sed 's/^/  /' "$work/notes.txt"
}
if [ ${#stores[@]} -gt 0 ]; then report_joins; fi

# --- writes during a join -------------------------------------------------------------
# One 3-node cluster per system (kvd, etcd) holding the same KEYS keys and
# keeping the same log: etcd --snapshot-count SNAPSHOT_COUNT keeps 5000
# entries behind each snapshot, kvd --snapshot-entries SNAPSHOT_COUNT
# --compaction-overhead 5000 (kvd's defaults with 10000); not the full
# clusters' 100/10, under which the writes compact the log past a snapshot
# while the joiner loads it, and the joiner needs a second one. kvd also
# runs with --voters 5, so that a fourth node is promoted. Every round runs the puts (WRITE_CLIENTS
# clients spread over the 3 members, random keys of the same keyspace and
# value size, so the store stays at ~$mb MB) for WRITE_DURATION s twice per
# system, right after each other: once alone, once with a node joining
# JOIN_AT s after the load starts (1 s of it unmeasured warmup), the order
# taking turns between rounds. The joiner is removed once the load is over.
if [ "$WRITES" != 0 ]; then
  declare -A weps
  wsystems=(kvd)
  if [ $have_etcd = 1 ]; then wsystems+=(etcd); fi
  ready=()
  base=$(pick_ports 6)
  members=""
  for i in 1 2 3; do
    members+="${members:+,}$i=127.0.0.1:$((base + 2 + i))"
    weps[kvd]+="${weps[kvd]:+,}127.0.0.1:$((base - 1 + i))"
    ready+=("http://127.0.0.1:$((base - 1 + i))/readyz")
  done
  for i in 1 2 3; do
    "$kvd" --node-id "$i" --data-dir "$work/kvd-writes/n$i" --listen "127.0.0.1:$((base - 1 + i))" \
      --raft-addr "127.0.0.1:$((base + 2 + i))" --initial-members "$members" --voters 5 \
      --rtt "${RTT_MS}ms" --promote-after "$PROMOTE_AFTER" --snapshot-entries "$SNAPSHOT_COUNT" --compaction-overhead 5000 \
      --log-level warn >"$work/kvd-writes-n$i.log" 2>&1 &
    pids+=($!)
  done
  boot[kvd-writes]=127.0.0.1:$base
  log "kvd (writes): 3 nodes, API ${weps[kvd]}"
  if [ $have_etcd = 1 ]; then
    base=$(pick_ports 6)
    cluster=""
    for i in 1 2 3; do
      cluster+="${cluster:+,}e$i=http://127.0.0.1:$((base + 2 + i))"
      weps[etcd]+="${weps[etcd]:+,}127.0.0.1:$((base - 1 + i))"
      ready+=("http://127.0.0.1:$((base - 1 + i))/health")
    done
    for i in 1 2 3; do
      etcd --name "e$i" --data-dir "$work/etcd-writes/e$i" \
        --listen-client-urls "http://127.0.0.1:$((base - 1 + i))" \
        --advertise-client-urls "http://127.0.0.1:$((base - 1 + i))" \
        --listen-peer-urls "http://127.0.0.1:$((base + 2 + i))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((base + 2 + i))" \
        --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token kvd-join-writes \
        --snapshot-count "$SNAPSHOT_COUNT" \
        --heartbeat-interval $((2 * RTT_MS)) --election-timeout $((20 * RTT_MS)) \
        --logger zap --log-level warn >"$work/etcd-writes-e$i.log" 2>&1 &
      pids+=($!)
    done
    boot[etcd-writes]=127.0.0.1:$base
    log "etcd (writes): 3 members, clients ${weps[etcd]}"
  fi
  wait_ready "${ready[@]}" || { tail -n 20 "$work"/*writes*.log >&2; exit 1; }
  for sys in "${wsystems[@]}"; do load_data "$sys" "${weps[$sys]}" "$sys-writes"; done
  sleep 2

  # writes_run SYSTEM ROUND MODE (alone|join): one load run; appends
  # "system round mode ops/s p50 p99 errors voter end snapshot caught" to
  # writes.txt (the joiner's times as the joins above measure them, and end:
  # seconds from the load's start to the joiner being a voter; - alone).
  writes_run() {
    local sys=$1 round=$2 mode=$3 b=$work/bin/bench f bpid t0 voter=- end=- snap=- caught=-
    if [ "$sys" = etcd ]; then b=$work/bin/etcd-bench; fi
    f=$work/writes-$sys-$mode-r$round.json
    log "round $round, $sys: $WRITE_CLIENTS clients' puts for ${WRITE_DURATION}s, $mode"
    t0=$EPOCHREALTIME
    "$b" --endpoints "${weps[$sys]}" --spread --clients "$WRITE_CLIENTS" --duration "${WRITE_DURATION}s" \
      --warmup 1s --keyspace "$KEYS" --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE" --json >"$f" &
    bpid=$!
    pids+=("$bpid")
    if [ "$mode" = join ]; then
      sleep "$JOIN_AT"
      : >"$work/writes-join.txt"
      results=$work/writes-join.txt "${sys}_join" writes "$round"
      read -r _ _ _ caught voter snap _ <"$work/writes-join.txt"
      end=$(since "$t0")
    fi
    wait "$bpid" || die "$sys: the load failed: $(cat "$f")"
    if [ "$mode" = join ]; then remove_joiner; fi
    jq -r --arg s "$sys" --arg r "$round" --arg m "$mode" --arg v "$voter" --arg e "$end" --arg n "$snap" --arg c "$caught" \
      '"\($s) \($r) \($m) \(.ops_per_sec) \(.p50_ms) \(.p99_ms) \(.errors) \($v) \($e) \($n) \($c)"' "$f" >>"$work/writes.txt"
  }

  : >"$work/writes.txt"
  join_flags=(--voters 5) defer_removal=1
  wload0=$(cut -d' ' -f1-3 /proc/loadavg)
  for round in $(seq 1 "$REPEAT"); do
    order=("${wsystems[@]}") modes=(alone join)
    if [ $((round % 2)) = 0 ]; then
      mapfile -t order < <(printf '%s\n' "${wsystems[@]}" | tac)
      modes=(join alone)
    fi
    for sys in "${order[@]}"; do
      for mode in "${modes[@]}"; do writes_run "$sys" "$round" "$mode"; done
    done
  done
  wload1=$(cut -d' ' -f1-3 /proc/loadavg)

  echo
  echo "Writes during a join: $WRITE_CLIENTS clients' puts (random keys of the $KEYS, $VALUE_SIZE B values) spread over"
  echo "a 3-node cluster holding $mb MB, ${WRITE_DURATION} s measured after 1 s of warmup, alone and with a node"
  echo "joining ${JOIN_AT} s after the load starts (kvd --join --voters 5 --promote-after $PROMOTE_AFTER; etcd member add"
  echo "--learner, start, promote), right after each other. load average before: $wload0; after: $wload1"
  echo
  awk -v dur="$WRITE_DURATION" -v repeat="$REPEAT" '
    function med(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
      return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
    }
    function row(sy, rd, ao, ap5, ap9, jo, jp5, jp9, n, c, v, e) {
      printf "%-6s %-7s %8.0f %7.2f %7.2f   %8.0f %7.2f %7.2f   %6.2fx %8s %8s %8s %8s\n", sy, rd, ao, ap5, ap9, jo, jp5, jp9, jp9 / ap9, n, c, v, e
    }
    { k = $1 SUBSEP $2; ops[k, $3] = $4; p50[k, $3] = $5; p99[k, $3] = $6; errs[$1] += $7
      if ($3 == "join") { v[k] = $8; e[k] = $9; sn[k] = $10; cu[k] = $11 }
      if (!(k in seen)) { seen[k] = 1; keys[++nk] = k }
      sys[$1] = 1 }
    END {
      printf "%-6s %-7s %8s %7s %7s   %8s %7s %7s   %7s %8s %8s %8s %8s\n", "", "", "alone", "", "", "join", "", "", "p99", "join →", "", "", "voter at"
      printf "%-6s %-7s %8s %7s %7s   %8s %7s %7s   %7s %8s %8s %8s %8s\n", "system", "round", "puts/s", "p50 ms", "p99 ms", "puts/s", "p50 ms", "p99 ms", "ratio", "snapshot", "caught", "voter", "load s"
      for (i = 1; i <= nk; i++) { split(keys[i], f, SUBSEP); k = keys[i]
        row(f[1], f[2], ops[k, "alone"], p50[k, "alone"], p99[k, "alone"], ops[k, "join"], p50[k, "join"], p99[k, "join"], sn[k], cu[k], v[k], e[k]) }
      if (repeat >= 2) for (s in sys) {
        n = 0
        for (i = 1; i <= nk; i++) { split(keys[i], f, SUBSEP); if (f[1] != s) continue; k = keys[i]; n++
          a1[n] = ops[k, "alone"]; a2[n] = p50[k, "alone"]; a3[n] = p99[k, "alone"]
          b1[n] = ops[k, "join"]; b2[n] = p50[k, "join"]; b3[n] = p99[k, "join"]; c1[n] = cu[k]; c2[n] = v[k] }
        row(s, "median", med(a1, n), med(a2, n), med(a3, n), med(b1, n), med(b2, n), med(b3, n), "", med(c1, n), med(c2, n), "")
      }
      for (s in sys) if (errs[s]) printf "%s: %d puts failed\n", s, errs[s]
    }' "$work/writes.txt"
  echo
  echo "p99 ratio: the p99 with the join over the p99 alone (target: ≤ 2x). join →: snapshot loaded, caught up and"
  echo "voter, in seconds, as in the joins above. voter at: seconds from the load's start to the joiner being a voter;"
  echo "the measured window is 1-$((WRITE_DURATION + 1)) s (a later one means the join outlasted it)."
fi
