#!/usr/bin/env bash
# bench-cluster.sh: `unibus bench` on a single node and on a three-node
# cluster of this machine, in one run, with the same settings and the same
# bench arguments, so that the two sets of figures sit side by side
# (BENCHMARKS.md, "A single node beside three").
#
#   deploy/bench-cluster.sh [BENCH ARGS...]     default: --msgs 50000 --skip api
#
# The cluster is deploy/local-cluster.sh's (route TLS, HTTPS and NATS TLS,
# --bus-auth enforce, --store kv --replicas 3). The single node runs with
# the same flags, standalone (--replicas 1), with the cluster's CA and
# node1's certificate. Both are made fresh under $BENCH_DIR (default: a new
# temporary directory, removed at the end) and stopped at the end. Each
# bench's report is printed under a heading; with --json, one JSON
# document a line, "single" then "cluster".
#
# Settings (environment): MEMBERSHIPD, UNIBUS (the binaries; default built
# from this repository), BENCH_DIR, and the ports: SINGLE_PORTS ("HTTP
# NATS", default "8481 4261") and local-cluster.sh's HTTP_PORTS,
# NATS_PORTS, ROUTE_PORTS.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
die() { echo "bench-cluster: $*" >&2; exit 1; }
say() { echo "bench-cluster: $*" >&2; }

args=("$@")
((${#args[@]} > 0)) || args=(--msgs 50000 --skip api)
command -v curl >/dev/null 2>&1 || die "curl is needed to wait for the nodes"

keep=1
dir=${BENCH_DIR:-}
if [[ -z $dir ]]; then
	dir=$(mktemp -d "${TMPDIR:-/tmp}/unibus-bench-XXXXXX")
	keep=0
fi
mkdir -p "$dir/bin"
[[ $dir == /* ]] || dir=$PWD/$dir

md=${MEMBERSHIPD:-}
ub=${UNIBUS:-}
if [[ -z $md || -z $ub ]]; then
	command -v go >/dev/null 2>&1 || die "set MEMBERSHIPD and UNIBUS, or install Go to build them"
	(cd "$repo" && go build -o "$dir/bin/membershipd" ./cmd/membershipd && go build -o "$dir/bin/unibus" ./cmd/unibus) || die "go build failed"
	md=${md:-$dir/bin/membershipd}
	ub=${ub:-$dir/bin/unibus}
fi
read -r http_port nats_port <<<"${SINGLE_PORTS:-8481 4261}"

single_pid=
cleanup() {
	if [[ -n $single_pid ]]; then
		kill -TERM "$single_pid" 2>/dev/null || true
		wait "$single_pid" 2>/dev/null || true
	fi
	UNIBUS_CLUSTER_DIR=$dir/cluster MEMBERSHIPD=$md UNIBUS=$ub "$here/local-cluster.sh" stop >/dev/null 2>&1 || true
	((keep)) || rm -rf "$dir"
}
trap cleanup EXIT

# The cluster first: it makes the CA, the certificates and the admin.
say "starting three nodes under $dir/cluster"
UNIBUS_CLUSTER_DIR=$dir/cluster MEMBERSHIPD=$md UNIBUS=$ub "$here/local-cluster.sh" start >"$dir/cluster.env"
tls=$dir/cluster/tls
admin=$dir/cluster/admin.json
cluster_servers=$(sed -n 's/^export UNIBUS_SERVER=//p' "$dir/cluster.env")

say "starting a single node under $dir/single"
mkdir -p "$dir/single"
chmod 700 "$dir/single"
"$md" \
	--bind 127.0.0.1 --http-port "$http_port" --nats-port "$nats_port" \
	--bus-auth enforce \
	--tls-cert "$tls/node1.crt" --tls-key "$tls/node1.key" \
	--store kv --replicas 1 \
	--db "$dir/single/unibus.db" --store-dir "$dir/single/blobs" --nats-store "$dir/single/nats" \
	>>"$dir/single/membershipd.log" 2>&1 </dev/null &
single_pid=$!
single_server=https://127.0.0.1:$http_port
deadline=$((SECONDS + 60))
until [[ $(curl -s -o /dev/null -w '%{http_code}' --cacert "$tls/ca.crt" "$single_server/readyz" || true) == 200 ]]; do
	kill -0 "$single_pid" 2>/dev/null || die "the single node exited; see $dir/single/membershipd.log"
	((SECONDS < deadline)) || die "the single node not ready after 60s; see $dir/single/membershipd.log"
	sleep 0.2
done
"$md" user seed --admin --store kv --nats-url "nats://127.0.0.1:$nats_port" --ca "$tls/ca.crt" \
	--control-key "$dir/single/nats/control.nk" "$("$ub" id show --public --identity "$admin")" >&2

json=0
for a in "${args[@]}"; do [[ $a == --json ]] && json=1; done
bench() {
	local name=$1 servers=$2
	((json)) || echo "## $name ($servers)"
	"$ub" bench --server "$servers" --ca "$tls/ca.crt" --identity "$admin" "${args[@]}"
	((json)) || echo
}
bench "single node" "$single_server"
bench "three nodes, R3" "$cluster_servers"
