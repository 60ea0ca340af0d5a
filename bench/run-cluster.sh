#!/usr/bin/env bash
# Measures the RPC ceiling, a 3-node kvd cluster on loopback and (when the
# etcd binary is installed) a 3-member etcd cluster with the same load, and
# prints one comparison table. Everything listens on 127.0.0.1; everything
# started here is killed on exit.
#
#   bash bench/run-cluster.sh                 # about 4 minutes with etcd
#   DURATION=20s ETCD=0 bash bench/run-cluster.sh
#   REPEAT=3 bash bench/run-cluster.sh        # on a shared machine: medians
#   TLS=1 bash bench/run-cluster.sh           # also puts over TLS, side by side
#
# kvd is driven three ways beside etcd: by bench with the Go client's
# defaults (Put and Get over one KV/Stream per node), with --unary (one
# request per call), and with --protocol grpc-go (grpc-go's own transport
# and the generated stubs, one HTTP/2 connection per node, like etcd's
# client); each is a row of its own with the etcd ratio.
#
# Environment: DURATION (each measured run, default 5s), WARMUP (1s),
# CLIENTS_PUT ("1 16 64": puts, default client and --unary), CLIENTS_GET
# (16: linearizable and serializable gets), CLIENTS_CEILING (64),
# CLIENTS_STREAM (64: kvd puts over the stream with --prefer-leader, all
# to the leader; "" skips them), UNARY (1; 0 skips the --unary puts),
# CLIENTS_GRPCGO ("1 64": grpc-go puts; "" skips them), GRPCGO_GETS (1;
# 0 skips the grpc-go gets),
# KEYSPACE (100000), KEY_SIZE (16), VALUE_SIZE (128), ETCD (auto|0|1),
# REPEAT (1: rounds of the ceiling, puts and gets, kvd and etcd taking turns
# to go first; the table shows each workload's median kvd run beside the
# etcd run and the ceiling of the same round),
# KEEP=1 keeps the temp dir (logs, JSON results), RESULTS=FILE copies the
# JSON results there (bench table FILE prints the table again).
# TLS=1 also starts a second 3-node kvd cluster that serves only TLS, with
# certificates made by kvctl certs (--cert-file, --key-file,
# --trusted-ca-file, and --client-cert-auth unless TLS_CLIENT_AUTH=0), and
# in every round runs the puts at CLIENTS_TLS (64) clients on it right
# beside the same run on the plaintext cluster (taking turns to go first);
# the table's notes give the ratio. The default run measures nothing more.
# WATCHERS=N adds the watch comparison: the kvd cluster gets OBSERVERS (2)
# more nodes that join as observers, and every round runs the puts at
# CLIENTS_WATCH (64) clients on kvd without watchers, with N watchers spread
# over all 5 nodes and with N watchers on the observers only (in an order
# that rotates between rounds), and on etcd without and with N watchers
# spread over its 3 members; the puts always go to the 3 voters. The CPU
# time the kvd voters and observers used in each kvd run is noted, and the
# report gives it per put. WATCH_ONLY=1 runs just that (no ceiling, other
# client counts, stream, put seq or gets).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CLIENTS_PUT=${CLIENTS_PUT:-"1 16 64"}
CLIENTS_GET=${CLIENTS_GET:-16}
CLIENTS_CEILING=${CLIENTS_CEILING:-64}
CLIENTS_STREAM=${CLIENTS_STREAM:-64}
UNARY=${UNARY:-1}
CLIENTS_GRPCGO=${CLIENTS_GRPCGO-"1 64"}
GRPCGO_GETS=${GRPCGO_GETS:-1}
KEYSPACE=${KEYSPACE:-100000}
KEY_SIZE=${KEY_SIZE:-16}
VALUE_SIZE=${VALUE_SIZE:-128}
ETCD=${ETCD:-auto}
REPEAT=${REPEAT:-1}
TLS=${TLS:-0}
CLIENTS_TLS=${CLIENTS_TLS:-64}
TLS_CLIENT_AUTH=${TLS_CLIENT_AUTH:-1}
WATCHERS=${WATCHERS:-0}
CLIENTS_WATCH=${CLIENTS_WATCH:-64}
OBSERVERS=${OBSERVERS:-2}
WATCH_ONLY=${WATCH_ONLY:-0}
if [ "$WATCH_ONLY" = 1 ]; then
  [ "$WATCHERS" -gt 0 ] || { echo "WATCH_ONLY=1 needs WATCHERS=N" >&2; exit 1; }
  CLIENTS_PUT="" CLIENTS_STREAM="" CLIENTS_GRPCGO=""
fi
if [ "$WATCHERS" -gt 0 ]; then
  # The watch runs include the puts at CLIENTS_WATCH without watchers.
  CLIENTS_PUT=$(printf '%s\n' $CLIENTS_PUT | grep -vx "$CLIENTS_WATCH" | paste -sd' ' || true)
fi
# The plaintext runs must not pick up TLS settings from the environment
# (bench reads kvctl's variables).
unset KVCTL_CACERT KVCTL_CERT KVCTL_KEY

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

log "building kvd, kvctl and bench into $work/bin"
mkdir -p "$work/bin"
go build -o "$work/bin/" ./cmd/kvd ./cmd/kvctl ./bench
bench=$work/bin/bench

# With TLS=1: a cluster CA, a certificate per node (good for 127.0.0.1,
# where the nodes listen and dial each other) and one for bench, all made
# with kvctl certs.
tls_dir=$work/tls
if [ "$TLS" = 1 ]; then
  if ! "$work/bin/kvd" --help 2>&1 | grep -q -- '--cert-file'; then
    echo "TLS=1: this kvd has no --cert-file flag (the server side of TLS is not built in)" >&2
    exit 1
  fi
  case " $CLIENTS_PUT " in
    *" $CLIENTS_TLS "*) ;;
    *) CLIENTS_PUT="$CLIENTS_PUT $CLIENTS_TLS" ;;
  esac
  log "TLS: certificates by kvctl certs in $tls_dir"
  "$work/bin/kvctl" certs ca --out "$tls_dir" >/dev/null
  for i in 1 2 3; do
    "$work/bin/kvctl" certs issue --ca "$tls_dir" --name "kvd-$i" --host 127.0.0.1,localhost --out "$tls_dir" >/dev/null
  done
  "$work/bin/kvctl" certs issue --ca "$tls_dir" --name bench --host bench --out "$tls_dir" >/dev/null
fi


# --- clusters ---------------------------------------------------------------
# Both clusters run side by side (the idle one costs a few heartbeats) and
# every workload runs on one, then at once on the other: on a shared
# machine whatever else runs then weighs on both alike.
build_etcd_bench

cpu_mark
systems=(kvd) ready=()
declare -A eps node_pids benches extra
benches[kvd]=$bench
# Other clients of the kvd cluster, run like systems of their own (run_bench
# adds their flags); they are not in systems: they have no nodes.
benches[kvd-unary]=$bench extra[kvd-unary]=--unary
benches[grpc-go]=$bench extra[grpc-go]="--protocol grpc-go"
base=$(pick_ports 6)
members=""
for i in 1 2 3; do
  members+="${members:+,}$i=127.0.0.1:$((base + 2 + i))"
  eps[kvd]+="${eps[kvd]:+,}127.0.0.1:$((base - 1 + i))"
  ready+=("http://127.0.0.1:$((base - 1 + i))/readyz")
done
log "kvd: 3 nodes, API ${eps[kvd]}"
eps[kvd-unary]=${eps[kvd]} eps[grpc-go]=${eps[kvd]}
for i in 1 2 3; do
  "$work/bin/kvd" --node-id "$i" --data-dir "$work/kvd/n$i" --listen "127.0.0.1:$((base - 1 + i))" \
    --raft-addr "127.0.0.1:$((base + 2 + i))" --initial-members "$members" --log-level warn \
    >"$work/kvd-n$i.log" 2>&1 &
  node_pids[kvd]+=" $!"
  pids+=($!)
done
# With WATCHERS: observers that join the 3 voters (they stay observers:
# --voters is 3). Watchers may use them; the puts never do.
for i in $(seq 1 $((WATCHERS > 0 ? OBSERVERS : 0))); do
  base=$(pick_ports 2)
  "$work/bin/kvd" --data-dir "$work/kvd/o$i" --listen "127.0.0.1:$base" --raft-addr "127.0.0.1:$((base + 1))" \
    --join "${eps[kvd]}" --log-level warn >"$work/kvd-o$i.log" 2>&1 &
  node_pids[kvd]+=" $!"
  pids+=($!)
  ready+=("http://127.0.0.1:$base/readyz")
done
[ "$WATCHERS" -gt 0 ] && log "kvd: $OBSERVERS observers joining, for the watchers"

if [ "$TLS" = 1 ]; then
  systems+=(kvd-tls)
  benches[kvd-tls]=$bench
  base=$(pick_ports 6)
  members=""
  for i in 1 2 3; do
    members+="${members:+,}$i=127.0.0.1:$((base + 2 + i))"
    eps[kvd-tls]+="${eps[kvd-tls]:+,}127.0.0.1:$((base - 1 + i))"
    ready+=("https://127.0.0.1:$((base - 1 + i))/readyz")
  done
  client_auth=()
  if [ "$TLS_CLIENT_AUTH" = 1 ]; then client_auth=(--client-cert-auth); fi
  log "kvd-tls: 3 nodes serving only TLS${client_auth[*]:+ (client certificates required)}, API ${eps[kvd-tls]}"
  for i in 1 2 3; do
    "$work/bin/kvd" --node-id "$i" --data-dir "$work/kvd-tls/n$i" --listen "127.0.0.1:$((base - 1 + i))" \
      --raft-addr "127.0.0.1:$((base + 2 + i))" --initial-members "$members" --log-level warn \
      --cert-file "$tls_dir/kvd-$i.crt" --key-file "$tls_dir/kvd-$i.key" --trusted-ca-file "$tls_dir/ca.crt" \
      "${client_auth[@]}" >"$work/kvd-tls-n$i.log" 2>&1 &
    node_pids[kvd-tls]+=" $!"
    pids+=($!)
  done
  # wait_ready's curl trusts the cluster CA and shows bench's certificate
  # (ignored by the plaintext URLs).
  curl_opts=(--cacert "$tls_dir/ca.crt" --cert "$tls_dir/bench.crt" --key "$tls_dir/bench.key")
fi

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

# run_bench SYS ARGS...: the system's load generator, with its extra
# flags; for kvd-tls with the cluster CA and bench's client certificate
# (through bench's environment variables, so that no flag reaches
# etcd-bench).
run_bench() {
  local sys=$1
  shift
  # shellcheck disable=SC2206 # the extra flags are words
  local flags=(${extra[$sys]:-})
  if [ "$sys" = kvd-tls ]; then
    KVCTL_CACERT="$tls_dir/ca.crt" KVCTL_CERT="$tls_dir/bench.crt" KVCTL_KEY="$tls_dir/bench.key" \
      "${benches[$sys]}" "$@"
  else
    "${benches[$sys]}" "${flags[@]}" "$@"
  fi
}

# with_clients ORDER CLIENT...: ORDER with the other kvd clients right
# after kvd (right before it in the reversed rounds, so that each run is
# next to its etcd run in every other round).
with_clients() {
  local base=$1 sys out=""
  shift
  for sys in $base; do
    if [ "$sys" != kvd ]; then
      out+=" $sys"
    elif [ $((round % 2)) = 0 ]; then
      out+=" $(printf '%s\n' "$@" | tac | paste -sd' ') kvd"
    else
      out+=" kvd $*"
    fi
  done
  echo $out
}

# each NAME ARGS...: runs the workload on every system in $order, one
# after the other.
each() {
  local what=$1 sys
  shift
  for sys in $order; do
    log "round $round, $sys: $what"
    run_bench "$sys" --endpoints "${eps[$sys]}" --spread --label "round=$round" "$@" >>"$work/results.jsonl"
  done
}

# cpu_s PID...: CPU seconds (user + system) the processes have used.
cpu_s() {
  local p
  for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk -v t="$tck" '{s += $1} END {printf "%.2f", s / t}'
}

# watch_kvd KIND ARGS...: one kvd put run at CLIENTS_WATCH clients (KIND:
# none, all, observers), noting the CPU seconds its voters and observers
# used and the puts done.
watch_kvd() {
  local kind=$1 voters observers v0 o0
  shift
  voters=$(echo ${node_pids[kvd]} | cut -d' ' -f1-3)
  observers=$(echo ${node_pids[kvd]} | cut -d' ' -f4-)
  v0=$(cpu_s $voters) o0=$(cpu_s $observers)
  log "round $round, kvd: puts, $CLIENTS_WATCH clients, watchers: $kind, $DURATION"
  "$bench" --endpoints "${eps[kvd]}" --spread --label "round=$round" --clients "$CLIENTS_WATCH" "${common[@]}" "$@" >"$work/last.json"
  cat "$work/last.json" >>"$work/results.jsonl"
  echo "$round $kind $(grep -o '"ops":[0-9]*' "$work/last.json" | cut -d: -f2) $(awk -v a="$(cpu_s $voters)" -v b="$v0" 'BEGIN {print a - b}') $(awk -v a="$(cpu_s $observers)" -v b="$o0" 'BEGIN {print a - b}')" >>"$work/watchcpu.txt"
}

# watch_round: the watch comparison of one round (WATCHERS).
watch_round() {
  local sys kinds k
  kinds=$(printf 'none\nall\nobservers\n' | tail -n +$(((round - 1) % 3 + 1)); printf 'none\nall\nobservers\n' | head -n $(((round - 1) % 3)))
  for sys in $order; do
    case $sys in
      kvd)
        for k in $kinds; do
          case $k in
            none) watch_kvd none ;;
            all) watch_kvd all --watchers "$WATCHERS" ;;
            observers) watch_kvd observers --watchers "$WATCHERS" --watch-observers ;;
          esac
        done ;;
      etcd)
        log "round $round, etcd: puts, $CLIENTS_WATCH clients, without and with $WATCHERS watchers, $DURATION"
        run_bench etcd --endpoints "${eps[etcd]}" --spread --label "round=$round" --clients "$CLIENTS_WATCH" "${common[@]}" >>"$work/results.jsonl"
        run_bench etcd --endpoints "${eps[etcd]}" --spread --label "round=$round" --clients "$CLIENTS_WATCH" --watchers "$WATCHERS" "${common[@]}" >>"$work/results.jsonl" ;;
    esac
  done
}

rss_note idle
for round in $(seq 1 "$REPEAT"); do
  # all: every system, kvd-tls right beside kvd, reversed every other
  # round; order: the same without kvd-tls, which runs only the puts at
  # $CLIENTS_TLS clients.
  all=""
  for sys in "${systems[@]}"; do
    case $sys in
      kvd-tls) ;;
      kvd) all+=" kvd"; if [ "$TLS" = 1 ]; then all+=" kvd-tls"; fi ;;
      *) all+=" $sys" ;;
    esac
  done
  if [ $((round % 2)) = 0 ]; then all=$(printf '%s\n' $all | tac | paste -sd' '); fi
  order=$(printf '%s\n' $all | grep -vx kvd-tls | paste -sd' ')
  if [ "$WATCH_ONLY" != 1 ]; then
    log "round $round: RPC ceiling, in-process no-op Connect handler, $CLIENTS_CEILING clients, http1, h2c and the stream"
    "$bench" ceiling --clients "$CLIENTS_CEILING" --transport http1,h2c,stream --label "round=$round" "${common[@]}" >>"$work/results.jsonl"
  fi
  if [ "$WATCHERS" -gt 0 ]; then watch_round; fi
  plain_order=$order
  # puts: the default client (the stream), --unary and grpc-go (at their
  # client counts) and etcd, then the same with the next client count.
  for c in $(printf '%s\n' $CLIENTS_PUT $CLIENTS_GRPCGO | sort -nu); do
    others=() with_kvd=0
    case " $CLIENTS_PUT " in *" $c "*) with_kvd=1; if [ "$UNARY" = 1 ]; then others+=(kvd-unary); fi ;; esac
    case " $CLIENTS_GRPCGO " in *" $c "*) others+=(grpc-go) ;; esac
    puts_order=$plain_order
    if [ "$TLS" = 1 ] && [ "$c" = "$CLIENTS_TLS" ]; then puts_order=$all; fi
    order=$(with_clients "$puts_order" "${others[@]}")
    if [ $with_kvd = 0 ]; then order=$(printf '%s\n' $order | grep -vx 'kvd\|kvd-tls' | paste -sd' '); fi
    each "puts, $c clients, $DURATION" --clients "$c" "${common[@]}"
  done
  order=$plain_order
  for c in $CLIENTS_STREAM; do
    log "round $round, kvd: puts over the stream, $c clients, $DURATION, one client to the leader"
    "$bench" --endpoints "${eps[kvd]}" --prefer-leader --label "round=$round" --clients "$c" "${common[@]}" >>"$work/results.jsonl"
  done
  if [ "$WATCH_ONLY" = 1 ]; then continue; fi
  if [ "$round" = 1 ]; then
    rss_note loaded
    each "every key once in order, 64 clients (the \"put seq\" row, so that the gets find them all)" \
      --clients 64 --ops "$KEYSPACE" --warmup 0s --key-dist sequential \
      --keyspace "$KEYSPACE" --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE" --json
  fi
  if [ "$GRPCGO_GETS" = 1 ]; then order=$(with_clients "$plain_order" grpc-go); fi
  each "linearizable gets, $CLIENTS_GET clients, $DURATION" \
    --clients "$CLIENTS_GET" --read-ratio 1 --consistency linearizable "${common[@]}"
  each "serializable gets, $CLIENTS_GET clients, $DURATION" \
    --clients "$CLIENTS_GET" --read-ratio 1 --consistency serializable "${common[@]}"
  order=$plain_order
done

stop_pids "${pids[@]}"
pids=()
cpu_others "during the runs"

# --- report -----------------------------------------------------------------
echo
echo "$(nproc) cores, $(go version | cut -d' ' -f3), $(uname -sr); each run $DURATION after $WARMUP warmup, $REPEAT round(s);"
echo "$KEY_SIZE-byte keys, $VALUE_SIZE-byte values, $KEYSPACE keys; clients spread over the 3 nodes; fsync on."
if [ "$WATCHERS" -gt 0 ]; then
  echo "watch rows: $WATCHERS watchers of the bench's keys (prefix k) during the puts; kvd has $OBSERVERS observers beside its 3 voters (puts go to the voters)."
fi
if [ "$TLS" = 1 ]; then
  echo "TLS rows: a second kvd cluster serving only TLS (ECDSA P-256 certificates from kvctl certs$([ "$TLS_CLIENT_AUTH" = 1 ] && echo ", client certificates required")), run beside the plaintext one."
fi
echo
"$bench" table "$work/results.jsonl"
echo
echo "RSS per node (MB, VmRSS): idle before the load | right after the first round's put runs | peak (VmHWM)"
for sys in "${systems[@]}"; do
  awk -v sys="$sys" '
    $1 == sys && $3 == "idle"   { idle = idle " " $4 }
    $1 == sys && $3 == "loaded" { load = load " " $4; peak = peak " " $5 }
    END { if (idle != "") printf "  %-7s%s |%s |%s\n", sys, idle, load, peak }
  ' "$work/rss.txt"
done
if [ "$WATCHERS" -gt 0 ]; then
  echo
  echo "kvd CPU per put during the $CLIENTS_WATCH-client puts (ms of CPU of all 3 voters / of both observers, per 1000 puts), by round:"
  awk '{ printf "  round %s %-9s %6d puts  voters %6.1f  observers %6.1f\n", $1, $2, $3, 1e6 * $4 / $3, 1e6 * $5 / $3 }' "$work/watchcpu.txt"
  # cpu_median KIND COLUMN: the median CPU ms per 1000 puts of the kind's runs.
  cpu_median() { awk -v k="$1" -v c="$2" '$2 == k { print 1e6 * $c / $3 }' "$work/watchcpu.txt" | sort -n |
    awk '{ v[NR] = $1 } END { if (NR) printf "%.1f", v[int((NR + 1) / 2)] }'; }
  for k in none all observers; do
    echo "  median, watchers $k: voters $(cpu_median $k 4), observers $(cpu_median $k 5)"
  done
fi
echo
echo "share of all cores used by other processes meanwhile (the machine is shared):"
sed 's/^/  /' "$work/load.txt"
if [ -n "${RESULTS:-}" ]; then cp "$work/results.jsonl" "$RESULTS"; fi
