#!/usr/bin/env bash
# Committed writes per second of a three-node Pullback cluster next to a three-member etcd
# cluster on the same machine, with the same payload size and client concurrency and durable
# writes on both (etcd with its default fsync behaviour, Pullback with its synced Raft log).
# The two clusters run one after the other, never together, each on 127.0.0.1 only, driven by
# `loadgen` from this workspace. Prints both results and the ratio Pullback / etcd.
#
#   benches/cluster_vs_etcd.sh [both|etcd|pullback]     (default: both)
#
# Settings from the environment:
#   CONCURRENCY    client tasks, each with one write in flight (64)
#   PAYLOAD        bytes of user data per write (512)
#   BATCH          records per request: an etcd transaction of BATCH puts, a Pullback push of
#                  BATCH alerts (1)
#   DURATION       measured seconds per cluster (20)
#   PAD_INTO       where a Pullback alert carries its user data: subject (every padding word
#                  becomes a search term) or details (a field kept but not searched, beside a
#                  short subject and a threat URL) (subject)
#   WARMUP         seconds of writes before the measured window (3)
#   ETCD_PORT_BASE etcd members listen on BASE+1..3 for clients and BASE+11..13 for peers (23790)
#   ETCD_TLS       1: etcd with client TLS and mutual peer TLS, as Pullback's API and Raft
#                  (0: plain HTTP, etcd's default)
#   PROFILE        release or debug: which build of the binaries to run (release)
#   SKIP_BUILD     1: do not run cargo first
#   KEEP_LOGS      a folder to copy the clusters' logs into before they are removed
#   PULLBACK_LOCAL_CLUSTER  the command that starts and stops local Pullback clusters
#                  (cluster/local of this checkout)
#   PULLBACK_BIN   the pullback binary the cluster runs (the one of PROFILE)
#   PULLBACK_LOCAL_BASE_PORT  cluster/local's base port (28400: APIs on 28410, 28420, 28430)
#
# The Pullback half needs that command: `up N DIR` starts N nodes with data under DIR/nodeK,
# each node's API address in DIR/nodeK/api as https://127.0.0.1:PORT, the cluster CA in
# DIR/ca.crt and an admin API key in DIR/admin.key; `down DIR` stops them. The script stops
# with a message before building or starting anything when it is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
source "$root/scripts/env.sh"

what="${1:-both}"
case "$what" in
both | etcd | pullback) ;;
*)
    echo "usage: $0 [both|etcd|pullback]" >&2
    exit 2
    ;;
esac

CONCURRENCY="${CONCURRENCY:-64}"
BATCH="${BATCH:-1}"
PAYLOAD="${PAYLOAD:-512}"
PAD_INTO="${PAD_INTO:-subject}"
DURATION="${DURATION:-20}"
WARMUP="${WARMUP:-3}"
ETCD_PORT_BASE="${ETCD_PORT_BASE:-23790}"
ETCD_TLS="${ETCD_TLS:-0}"
PROFILE="${PROFILE:-release}"
for name in CONCURRENCY PAYLOAD DURATION WARMUP ETCD_PORT_BASE; do
    [[ "${!name}" =~ ^[0-9]+$ ]] || { echo "$name must be a whole number" >&2; exit 2; }
done
case "$PROFILE" in
release | debug) ;;
*) echo "PROFILE must be release or debug" >&2; exit 2 ;;
esac

# Every step has a deadline; a loadgen run ends by itself after WARMUP + DURATION plus one
# request timeout, and is killed if it does not.
readonly HEALTH_WAIT_SECS=60
readonly CLUSTER_UP_SECS=300
readonly LOADGEN_SECS=$((WARMUP + DURATION + 40))

local_cluster="${PULLBACK_LOCAL_CLUSTER:-$root/cluster/local}"
loadgen="$CARGO_TARGET_DIR/$PROFILE/loadgen"
work="$(mktemp -d "${TMPDIR:-/tmp}/cluster-vs-etcd.XXXXXX")"
etcd_pids=()
pullback_dir=""
sampler_pid=""
contention=""

log() { echo "cluster_vs_etcd: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

stop_etcd() {
    local pid
    for pid in "${etcd_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${etcd_pids[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    etcd_pids=()
}

stop_pullback() {
    if [ -n "$pullback_dir" ]; then
        timeout 120 "$local_cluster" down "$pullback_dir" >&2 || log "cluster/local down failed"
        pullback_dir=""
    fi
}

keep_logs() {
    if [ -n "${KEEP_LOGS:-}" ]; then
        local into
        into="$(mkdir -p "$KEEP_LOGS" && cd "$KEEP_LOGS" && pwd)"
        # Not the write-ahead logs under the data folders, which are also called *.log.
        (cd "$work" && find . -type f \( -name '*.log' -o -name log \) -not -path '*/data/*' \
            -exec cp --parents -t "$into" {} +) || true
    fi
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$sampler_pid" ]; then
        kill "$sampler_pid" 2>/dev/null || true
        wait "$sampler_pid" 2>/dev/null || true
    fi
    stop_etcd
    stop_pullback
    keep_logs
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Fails unless the Pullback half can run, before anything is built or started.
check_pullback_prerequisites() {
    [ -x "$local_cluster" ] || die "cluster/local is missing: no executable at $local_cluster \
to start a local Pullback cluster with \`up 3 DIR\` and stop it with \`down DIR\`, so the \
Pullback half cannot run. \`$0 etcd\` runs the etcd half alone."
}

build() {
    if [ "${SKIP_BUILD:-0}" = 1 ]; then
        log "SKIP_BUILD=1: using the binaries already in $CARGO_TARGET_DIR/$PROFILE"
    else
        local flags=(--workspace --bins)
        [ "$PROFILE" = release ] && flags=(--release "${flags[@]}")
        log "building: cargo build ${flags[*]}"
        (cd "$root" && cargo build "${flags[@]}")
    fi
    [ -x "$loadgen" ] || die "$loadgen was not built"
}

# Notes, every half second until stopped, whether a compiler or cargo was running: the
# machine has two cores, and a build next to the benchmark changes its figures.
start_sampler() {
    local out="$1" deadline=$(($(date +%s) + LOADGEN_SECS + 30))
    : >"$out"
    (
        while [ "$(date +%s)" -lt "$deadline" ]; do
            # shellcheck disable=SC2009 # pgrep's pattern is limited to 15 characters
            if ps -eo comm= | grep -qE '^(cargo|rustc|cc1plus|cc1|ld|clippy-driver)$'; then
                echo busy >>"$out"
            else
                echo idle >>"$out"
            fi
            sleep 0.5
        done
    ) &
    sampler_pid=$!
}

# Stops the sampler and sets `contention` to "<busy samples>/<samples>".
stop_sampler() {
    local out="$1"
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=""
    contention="$(grep -c busy "$out" || true)/$(wc -l <"$out")"
}

# Runs loadgen against one target and leaves its JSON result in $work/<target>.json.
run_loadgen() {
    local target="$1"
    shift
    local samples="$work/$target.samples"
    start_sampler "$samples"
    local output status=0
    output=$(timeout --kill-after=5 "$LOADGEN_SECS" "$loadgen" "$target" \
        --concurrency "$CONCURRENCY" --payload "$PAYLOAD" --batch "$BATCH" \
        --duration-secs "$DURATION" --warmup-secs "$WARMUP" --json "$@") || status=$?
    stop_sampler "$samples"
    echo "$output" | grep -v '^{' >&2 || true
    [ "$status" -eq 0 ] || die "loadgen $target failed (exit $status)"
    echo "$output" | grep '^{' | tail -n 1 |
        jq --arg busy "$contention" '. + {build_busy_samples: $busy}' >"$work/$target.json"
    if [ "${contention%%/*}" != 0 ]; then
        log "warning: a compiler was running in $contention samples during the $target run; \
its figures are not those of an idle machine"
    fi
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Writes a CA and one certificate for 127.0.0.1, good for servers and clients, under $1.
make_etcd_certs() {
    local dir="$1"
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=cluster-vs-etcd CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=127.0.0.1" -keyout "$dir/member.key" -out "$dir/member.csr" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        "extendedKeyUsage=serverAuth,clientAuth" >"$dir/member.ext"
    openssl x509 -req -in "$dir/member.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 2 -extfile "$dir/member.ext" -out "$dir/member.crt" 2>/dev/null
}

run_etcd() {
    [ -x /usr/bin/etcd ] || need_packages etcd-server etcd-client
    [ -x /usr/bin/etcd ] || die "etcd-server did not install /usr/bin/etcd"
    need_packages etcd-client jq
    local version
    version=$(/usr/bin/etcd --version | awk '/^etcd Version/ {print $3}')

    local scheme=http tls_flags=() peer_tls_flags=() ctl_tls=() loadgen_tls=()
    if [ "$ETCD_TLS" = 1 ]; then
        local certs="$work/etcd-certs"
        make_etcd_certs "$certs"
        scheme=https
        tls_flags=(--cert-file "$certs/member.crt" --key-file "$certs/member.key")
        peer_tls_flags=(--peer-cert-file "$certs/member.crt" --peer-key-file "$certs/member.key"
            --peer-trusted-ca-file "$certs/ca.crt" --peer-client-cert-auth)
        ctl_tls=(--cacert "$certs/ca.crt")
        loadgen_tls=(--ca-file "$certs/ca.crt")
    fi

    local members=(1 2 3) initial="" clients=() member
    for member in "${members[@]}"; do
        local peer_port=$((ETCD_PORT_BASE + 10 + member)) client_port=$((ETCD_PORT_BASE + member))
        port_free "$client_port" || die "port $client_port is in use; set ETCD_PORT_BASE"
        port_free "$peer_port" || die "port $peer_port is in use; set ETCD_PORT_BASE"
        initial+="${initial:+,}m$member=$scheme://127.0.0.1:$peer_port"
        clients+=("$scheme://127.0.0.1:$client_port")
    done
    local endpoints
    endpoints=$(IFS=,; echo "${clients[*]}")

    log "starting etcd $version: 3 members on $endpoints (data in $work/etcd)"
    for member in "${members[@]}"; do
        local peer_port=$((ETCD_PORT_BASE + 10 + member)) client_port=$((ETCD_PORT_BASE + member))
        mkdir -p "$work/etcd/m$member"
        /usr/bin/etcd --name "m$member" --data-dir "$work/etcd/m$member/data" \
            --listen-client-urls "$scheme://127.0.0.1:$client_port" \
            --advertise-client-urls "$scheme://127.0.0.1:$client_port" \
            --listen-peer-urls "$scheme://127.0.0.1:$peer_port" \
            --initial-advertise-peer-urls "$scheme://127.0.0.1:$peer_port" \
            --initial-cluster "$initial" --initial-cluster-state new \
            --initial-cluster-token "cluster-vs-etcd-$$" \
            --logger zap --log-outputs stderr \
            "${tls_flags[@]}" "${peer_tls_flags[@]}" \
            >"$work/etcd/m$member/etcd.log" 2>&1 &
        etcd_pids+=($!)
    done

    local deadline=$((SECONDS + HEALTH_WAIT_SECS))
    until ETCDCTL_API=3 etcdctl --endpoints="$endpoints" "${ctl_tls[@]}" --dial-timeout=2s \
        --command-timeout=3s endpoint health >/dev/null 2>&1; do
        for member in "${members[@]}"; do
            if ! kill -0 "${etcd_pids[member - 1]}" 2>/dev/null; then
                tail -n 20 "$work/etcd/m$member/etcd.log" >&2
                die "etcd member m$member exited"
            fi
        done
        [ "$SECONDS" -lt "$deadline" ] || die "etcd was not healthy after ${HEALTH_WAIT_SECS}s"
        sleep 0.5
    done
    log "etcd is healthy"

    run_loadgen etcd --endpoints "$endpoints" "${loadgen_tls[@]}"

    # Every write counted must be in the store: the keys of the run, warm-up and writes
    # answered after the window included, are at least as many. A range answer limited to one
    # key still counts them all.
    local run_id stored committed
    run_id=$(jq -r .run_id "$work/etcd.json")
    committed=$(jq -r .committed "$work/etcd.json")
    stored=$(ETCDCTL_API=3 etcdctl --endpoints="${clients[0]}" "${ctl_tls[@]}" \
        --command-timeout=10s get "loadgen-$run_id-" --prefix --limit=1 -w json | jq '.count // 0')
    log "etcd holds $stored keys of run $run_id; loadgen counted $committed in the window"
    [ "$stored" -ge "$committed" ] || die "etcd holds fewer keys than loadgen counted"
    ETCDCTL_API=3 etcdctl --endpoints="$endpoints" "${ctl_tls[@]}" endpoint status -w table >&2 ||
        true

    jq --arg version "$version" --arg tls "$ETCD_TLS" \
        '. + {etcd_version: $version, etcd_tls: ($tls == "1")}' "$work/etcd.json" \
        >"$work/etcd.result.json"
    stop_etcd
    keep_logs
    rm -rf "$work/etcd"
    log "etcd stopped and its data removed"
}

run_pullback() {
    check_pullback_prerequisites
    need_packages curl jq
    pullback_dir="$work/pullback"
    # cluster/local runs PULLBACK_BIN, or the debug build when it is unset.
    export PULLBACK_BIN="${PULLBACK_BIN:-$CARGO_TARGET_DIR/$PROFILE/pullback}"
    # Ports of their own, away from cluster/local's default, which a developer may be using.
    export PULLBACK_LOCAL_BASE_PORT="${PULLBACK_LOCAL_BASE_PORT:-28400}"
    [ -x "$PULLBACK_BIN" ] || die "no pullback binary at $PULLBACK_BIN"
    log "starting Pullback ($PULLBACK_BIN): cluster/local up 3 $pullback_dir"
    timeout "$CLUSTER_UP_SECS" "$local_cluster" up 3 "$pullback_dir" >&2 ||
        die "cluster/local up 3 failed or took more than ${CLUSTER_UP_SECS}s"

    local ca="$pullback_dir/ca.crt" key="$pullback_dir/admin.key" clients=() node address
    [ -s "$ca" ] || die "cluster/local wrote no cluster CA at $ca"
    [ -s "$key" ] || die "cluster/local wrote no admin API key at $key"
    for node in 1 2 3; do
        [ -s "$pullback_dir/node$node/api" ] || die "no API address in $pullback_dir/node$node/api"
        address=$(tr -d '[:space:]' <"$pullback_dir/node$node/api")
        [[ "$address" =~ ^https://(127\.[0-9.]+|localhost):[0-9]+$ ]] ||
            die "node$node's API address $address is not https on the loopback"
        clients+=("$address")
    done
    local endpoints
    endpoints=$(IFS=,; echo "${clients[*]}")

    local deadline=$((SECONDS + HEALTH_WAIT_SECS)) address
    for address in "${clients[@]}"; do
        until curl -sf --noproxy '*' --max-time 3 --cacert "$ca" "$address/health/ready" \
            >/dev/null; do
            [ "$SECONDS" -lt "$deadline" ] ||
                die "$address was not ready after ${HEALTH_WAIT_SECS}s"
            sleep 0.5
        done
    done
    log "Pullback is ready on $endpoints"

    run_loadgen pullback --endpoints "$endpoints" --ca-file "$ca" --api-key-file "$key" \
        --pad-into "$PAD_INTO"
    jq --arg rev "$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)" \
        '. + {pullback_commit: $rev}' "$work/pullback.json" >"$work/pullback.result.json"
    stop_pullback
    keep_logs
    rm -rf "$work/pullback"
    log "Pullback stopped and its data removed"
}

[ "$what" = etcd ] || check_pullback_prerequisites
need_packages jq
build
log "concurrency=$CONCURRENCY payload=$PAYLOAD duration=${DURATION}s warmup=${WARMUP}s \
profile=$PROFILE etcd_tls=$ETCD_TLS cores=$(nproc)"

[ "$what" = pullback ] || run_etcd
[ "$what" = etcd ] || run_pullback

echo
for target in etcd pullback; do
    [ -f "$work/$target.result.json" ] || continue
    jq -r '"\(.target): \(.writes_per_sec) writes/s, p50 \(.p50_ms) ms, p99 \(.p99_ms) ms, " +
        "max \(.max_ms) ms, errors \(.errors), committed \(.committed) in \(.window_secs) s"' \
        "$work/$target.result.json"
    jq -c . "$work/$target.result.json"
done
if [ -f "$work/etcd.result.json" ] && [ -f "$work/pullback.result.json" ]; then
    jq -rn --slurpfile etcd "$work/etcd.result.json" \
        --slurpfile pullback "$work/pullback.result.json" '
        ($pullback[0].writes_per_sec / $etcd[0].writes_per_sec) as $ratio
        | "ratio pullback/etcd: \($ratio * 100 | round / 100) (goal 1.5: " +
          (if $ratio >= 1.5 then "met" else "not met" end) + ")"'
fi
