#!/usr/bin/env bash
# compare.sh: loopbot against Debian's mosquitto, same matrix, same run.
#
#   bench/compare.sh [--quick] [--time-limit SECONDS] [--out DIR] [LOOPBOT]
#   bench/compare.sh --table DIR/results.txt     (reprint a table)
#
# LOOPBOT defaults to build-bench/broker/loopbot (built Release here, with
# mqttload, if missing). Each scenario runs once per broker, alternating
# which broker goes first, with a fresh broker (generated config, fresh
# port on 127.0.0.1) per run. Prints a table plus loopbot/mosquitto ratios;
# raw RESULT lines and broker logs stay in the output directory.
# See docs/performance.md for what each figure means.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
quick=0
table_only=""
limit=""
out=""
loopbot=""
mosquitto=/usr/sbin/mosquitto
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --time-limit) limit=$2; shift ;;
    --out) out=$2; shift ;;
    --mosquitto) mosquitto=$2; shift ;;
    --table) table_only=$2; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
    *) loopbot=$1 ;;
    esac
    shift
done
print_table() {
awk '
function kv(line, k,   m) {
    if (match(line, " " k "=[^ ]*")) return substr(line, RSTART + length(k) + 2, RLENGTH - length(k) - 2)
    return ""
}
function num(x) { return x == "" || x == "-" ? -1 : x + 0 }
function fmt(x, d) { return x < 0 ? "-" : sprintf("%." d "f", x) }
function ratio(a, b) { return (a < 0 || b <= 0) ? "-" : sprintf("%.2f", a / b) }
/^ROW / {
    name = kv($0, "name"); b = kv($0, "broker")
    if (kv($0, "skipped") == "1") { order[++n] = name; skipped[name] = 1; next }
    if (!(name in seen)) { seen[name] = 1; order[++n] = name }
    sc = kv($0, "scenario")
    msgs[name, b] = num(kv($0, "msg_s"))
    cpu[name, b] = num(kv($0, "cpu_s_per_M"))
    q = kv($0, "qos")
    lost[name, b] = (q == "0" ? "q0:" : "") kv($0, "lost")
    dups[name, b] = kv($0, "dups")
    p50[name, b] = num(kv($0, "p50_us")); p99[name, b] = num(kv($0, "p99_us")); mx[name, b] = num(kv($0, "max_us"))
    rc = num(kv($0, "rss_per_conn_b")); rs = num(kv($0, "rss_per_sub_b"))
    rss[name, b] = rs >= 0 ? rs : rc
    rsskind[name] = rs >= 0 ? "/sub" : "/conn"
    idle[name] = (sc == "conn")
    lg[name, b] = kv($0, "longest")
    ok[name, b] = kv($0, "ok") == "1" && kv($0, "broker_died") == "" ? "" : " !"
    err[name, b] = kv($0, "errors")
    d = num(kv($0, "duration"))
    bc = num(kv($0, "broker_cpu_s")); gc = num(kv($0, "gen_cpu_s"))
    cpus[name, b] = (d > 0 && bc >= 0 ? sprintf("%.0f", 100 * bc / d) : "-") "/" (d > 0 && gc > 0 ? sprintf("%.0f", 100 * gc / d) : "-")
}
END {
    printf "%-18s %-9s %9s %9s %9s %5s %9s %9s %9s %10s %8s %s\n", "scenario", "broker", "msg/s", "CPUs/1M",
           "loss", "dups", "p50 ms", "p99 ms", "max ms", "RSS B", "cpu% b/g", "loop longest"
    for (i = 1; i <= n; i++) {
        s = order[i]
        if (skipped[s]) { printf "%-18s (skipped: time limit)\n", s; continue }
        for (j = 1; j <= 2; j++) {
            b = j == 1 ? "loopbot" : "mosquitto"
            if (!((s, b) in msgs)) continue
            if (idle[s])
                printf "%-18s %-9s %9s %9s %9s %5s %9s %9s %9s %10s %8s %s%s\n", s, b, "-", "-", "-", "-",
                       "-", "-", "-", fmt(rss[s, b], 0) rsskind[s], "-", lg[s, b], ok[s, b]
            else
                printf "%-18s %-9s %9s %9s %9s %5s %9s %9s %9s %10s %8s %s%s\n", s, b, fmt(msgs[s, b], 0),
                       fmt(cpu[s, b], 2), lost[s, b], dups[s, b], fmt(p50[s, b] / 1000, 2),
                       fmt(p99[s, b] / 1000, 2), fmt(mx[s, b] / 1000, 1), "-", cpus[s, b], lg[s, b], ok[s, b]
        }
        if (idle[s])
            printf "%-18s %-9s %9s %9s %9s %5s %9s %9s %9s %10s\n", "", "ratio", "", "", "", "", "", "", "",
                   ratio(rss[s, "loopbot"], rss[s, "mosquitto"])
        else
            printf "%-18s %-9s %9s %9s %9s %5s %9s %9s %9s\n", "", "ratio", ratio(msgs[s, "loopbot"], msgs[s, "mosquitto"]),
                   ratio(cpu[s, "loopbot"], cpu[s, "mosquitto"]), "", "", ratio(p50[s, "loopbot"], p50[s, "mosquitto"]),
                   ratio(p99[s, "loopbot"], p99[s, "mosquitto"]), ratio(mx[s, "loopbot"], mx[s, "mosquitto"])
    }
    print ""
    print "ratio = loopbot / mosquitto. loss: QoS 1 = acknowledged but never delivered (must be 0);"
    print "q0: = QoS 0 messages not delivered (allowed). \"!\" = the run reported errors or ok=0."
    print "cpu% b/g = broker / generator CPU over the window (100 = one core). loop longest = loopbot, the measurement window (idle rows: whole run): the longest callback by CPU time, then by wall time (preemption by other processes included)."
}' "$1"
}
if [ -n "$table_only" ]; then print_table "$table_only"; exit 0; fi
[ -n "$limit" ] || { [ $quick = 1 ] && limit=300 || limit=1500; }

build="$root/build-bench"
mqttload="$build/bench/mqttload"
if [ -z "$loopbot" ]; then
    loopbot="$build/broker/loopbot"
fi
if [ ! -x "$mqttload" ] || [ ! -x "$loopbot" ]; then
    echo "== building loopbot and mqttload (Release) in $build"
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLOOPBOT_TESTS=OFF >/dev/null &&
        cmake --build "$build" -j"$(nproc)" >/dev/null || { echo "build failed" >&2; exit 1; }
fi
if [ -f "$build/CMakeCache.txt" ] && ! grep -q '^CMAKE_BUILD_TYPE:STRING=Release$' "$build/CMakeCache.txt"; then
    echo "compare.sh: warning: $build is not a Release build" >&2
fi
if [ ! -x "$mosquitto" ]; then
    echo "== installing mosquitto"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y mosquitto >/dev/null || { echo "cannot install mosquitto" >&2; exit 1; }
fi

[ -n "$out" ] || out=$(mktemp -d /tmp/loopbot-compare.XXXXXX)
mkdir -p "$out"
results="$out/results.txt"
: > "$results"
t_start=$(date +%s)
deadline=$((t_start + limit))

# Window, warm-up and sizes. Rates are ones both brokers sustain here.
if [ $quick = 1 ]; then
    W="--duration 3 --warmup 1 --drain 3"; HOLD="--duration 2"
    IDLE1=1000 IDLE2=2000 PUBS=20 FANSUBS=100 PAIRS=50
    R_FANIN=5000 R_FANOUT=20 R_PAIRS=2000
else
    W="--duration 10 --warmup 2 --drain 5"; HOLD="--duration 5"
    IDLE1=10000 IDLE2=19900 PUBS=100 FANSUBS=1000 PAIRS=500
    R_FANIN=20000 R_FANOUT=50 R_PAIRS=10000
fi

# name | mqttload arguments
matrix=(
    "idle-$IDLE1|conn -n $IDLE1 $HOLD"
    "idle-$IDLE2|conn -n $IDLE2 $HOLD"
    "idle-${IDLE1}x1sub|conn -n $IDLE1 --subs-per-conn 1 $HOLD"
    "fanin-q0-fixed|fanin --pubs $PUBS --qos 0 --rate $R_FANIN $W"
    "fanin-q0-closed|fanin --pubs $PUBS --qos 0 --rate 0 $W"
    "fanin-q1-fixed|fanin --pubs $PUBS --qos 1 --rate $R_FANIN $W"
    "fanin-q1-closed|fanin --pubs $PUBS --qos 1 --rate 0 $W"
    "fanout-q0-fixed|fanout --subs $FANSUBS --qos 0 --rate $R_FANOUT $W"
    "fanout-q0-closed|fanout --subs $FANSUBS --qos 0 --rate 0 $W"
    "pairs-q1-fixed|pairs -n $PAIRS --qos 1 --rate $R_PAIRS $W"
    "pairs-q1-closed|pairs -n $PAIRS --qos 1 --rate 0 $W"
)

# Listen ports below the ephemeral range (32768+), where no client socket can
# already hold the port; checked against every TCP socket, not just listeners.
port_base=$((20000 + $$ % 10000))
runs=0
port_free() { ! ss -Htan "sport = :$1" 2>/dev/null | grep -q .; }
next_port() { # sets $port (no subshell: port_base must advance)
    while :; do
        port_base=$((port_base + 1))
        [ $port_base -lt 32000 ] || port_base=20000
        port_free $port_base && { port=$port_base; return; }
    done
}

# run_one BROKER NAME ARGS
run_one() {
    local broker=$1 name=$2 args=$3 port conf log pid rc line longest
    next_port
    conf="$out/$name.$broker.conf"
    log="$out/$name.$broker.log"
    {
        echo "listener $port 127.0.0.1"
        echo "allow_anonymous true"
        echo "max_connections -1"
        echo "max_queued_messages 1000"
        echo "max_inflight_messages 20"
        [ "$broker" = mosquitto ] && echo "user root"
    } > "$conf"
    if [ "$broker" = loopbot ]; then
        "$loopbot" -c "$conf" 2> "$log" >&2 &
    else
        "$mosquitto" -c "$conf" 2> "$log" >&2 &
    fi
    pid=$!
    local i=0
    while port_free "$port"; do
        sleep 0.1; i=$((i + 1))
        if [ $i -gt 50 ] || ! kill -0 $pid 2>/dev/null; then
            echo "!! $broker did not start for $name (see $log)"; kill $pid 2>/dev/null; wait $pid 2>/dev/null
            return 1
        fi
    done
    # mqttload stops by itself (alarm); timeout is a second bound.
    # loopbot logs its loop statistics for the window alone on SIGUSR2 (sent
    # as the window starts and ends); mosquitto is not signalled.
    local sig=
    [ "$broker" = loopbot ] && sig="--window-signal usr2"
    line=$(timeout -k 5 300 "$mqttload" $args $sig --port "$port" --broker-pid $pid --label "$broker" \
               2> "$out/$name.$broker.mqttload.err" | tee "$out/$name.$broker.mqttload.out" | grep '^RESULT ')
    rc=$?
    if ! kill -0 $pid 2>/dev/null; then
        echo "!! $broker DIED during $name (see $log)"
        line="$line broker_died=1"
    fi
    kill -TERM $pid 2>/dev/null
    i=0
    while kill -0 $pid 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    longest=-
    if [ "$broker" = loopbot ]; then
        # Three Loop lines with a window (its start, its end, shutdown): the
        # second covers the window; idle scenarios have one (the whole run).
        longest=$(sed -n 's/.*Loop: .*longest \([0-9.]*\) ms (\([^)]*\)), \([0-9.]*\) ms wall.*/\1ms(\2)_wall_\3ms/p' "$log" | tr ' ' '_')
        if [ "$(echo "$longest" | wc -l)" -ge 3 ]; then
            longest=$(echo "$longest" | sed -n 2p)
        else
            longest=$(echo "$longest" | tail -1)
        fi
        [ -n "$longest" ] || longest=-
    fi
    [ -n "$line" ] || line="RESULT scenario=? label=$broker fail=no_result"
    echo "ROW name=$name broker=$broker longest=$longest ${line#RESULT }" >> "$results"
    printf '   %-9s %s\n' "$broker" "$(grep -m1 -E 'delivered|broker RSS|FAILED' "$out/$name.$broker.mqttload.out" | sed 's/^ *//')"
    runs=$((runs + 1))
}

echo "== loopbot:   $loopbot"
echo "== mosquitto: $mosquitto ($("$mosquitto" -h 2>&1 | sed -n 's/^mosquitto version //p'))"
echo "== output:    $out   (time limit ${limit}s)"
n=0
for entry in "${matrix[@]}"; do
    name=${entry%%|*}
    args=${entry#*|}
    now=$(date +%s)
    if [ $now -ge $deadline ]; then
        echo "!! time limit reached: skipping $name and the rest"
        echo "ROW name=$name broker=- skipped=1" >> "$results"
        continue
    fi
    echo "-- $name: mqttload $args"
    if [ $((n % 2)) = 0 ]; then order="loopbot mosquitto"; else order="mosquitto loopbot"; fi
    for b in $order; do run_one "$b" "$name" "$args"; done
    n=$((n + 1))
done

echo
echo "== results ($(date -u +%Y-%m-%dT%H:%MZ), $(( $(date +%s) - t_start )) s; raw: $results)"
print_table "$results" | tee "$out/table.txt"
