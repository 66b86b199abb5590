#!/usr/bin/env bash
# local-cluster.sh: a three-node membershipd cluster on this machine, in one
# command, the way a real one runs: mutual route TLS between the nodes,
# HTTPS and NATS TLS for clients, --bus-auth enforce, the control plane in
# replicated JetStream KV (--store kv, 3 replicas). For trying a cluster
# out and for tests; docs/cluster.md says how to deploy one on three hosts.
#
#   deploy/local-cluster.sh start [TOKEN]   start the nodes; seed TOKEN (a public
#                                           identity token) as the first admin, or
#                                           make an admin identity if none is given
#   deploy/local-cluster.sh status          membershipd cluster status
#   deploy/local-cluster.sh stop            stop the nodes (SIGTERM, then wait)
#   deploy/local-cluster.sh env             print the client settings again
#
# Everything lives under one directory, $UNIBUS_CLUSTER_DIR (default
# ./local_files/cluster): tls/ (the CA and certificates, made with
# `membershipd tls init` and `tls node` when missing), node1..node3/ (each
# node's data, its membershipd.log and its pid), admin.json (the admin
# identity, when the script made it). Starting again after a stop keeps the
# data.
#
# Settings (environment):
#   MEMBERSHIPD          the membershipd binary (default: membershipd on PATH,
#                        else built from this repository into the directory)
#   UNIBUS               the unibus binary, to make an admin identity (same)
#   UNIBUS_CLUSTER_DIR   the directory (default ./local_files/cluster)
#   HTTP_PORTS           the nodes' API ports   (default "8471 8472 8473")
#   NATS_PORTS           their NATS ports       (default "4251 4252 4253")
#   ROUTE_PORTS          their route ports      (default "6251 6252 6253")
#   START_TIMEOUT        seconds to wait for the nodes (default 60)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
dir=${UNIBUS_CLUSTER_DIR:-./local_files/cluster}
[[ $dir == /* ]] || dir=$PWD/$dir
read -r -a http_ports <<<"${HTTP_PORTS:-8471 8472 8473}"
read -r -a nats_ports <<<"${NATS_PORTS:-4251 4252 4253}"
read -r -a route_ports <<<"${ROUTE_PORTS:-6251 6252 6253}"
start_timeout=${START_TIMEOUT:-60}
nodes=(node1 node2 node3)
cluster_name=unibus-local

die() { echo "local-cluster: $*" >&2; exit 1; }
say() { echo "local-cluster: $*" >&2; }

usage() {
	sed -n '8,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# binary NAME PACKAGE VAR: the path of a binary: $VAR, else built from
# this repository into $dir/bin (go build is quick when nothing changed),
# else NAME on PATH.
binary() {
	local name=$1 pkg=$2 given=$3
	if [[ -n $given ]]; then
		[[ -x $given ]] || die "$name: $given is not an executable"
		echo "$given"
		return
	fi
	if [[ -f $repo/go.mod ]] && command -v go >/dev/null 2>&1; then
		mkdir -p "$dir/bin"
		(cd "$repo" && go build -o "$dir/bin/$name" "$pkg") || die "go build $pkg failed"
		echo "$dir/bin/$name"
		return
	fi
	command -v "$name" 2>/dev/null || die "no $name: set ${name^^}=PATH, or run this from a checkout with Go installed"
}

check_ports() {
	[[ ${#http_ports[@]} -eq 3 && ${#nats_ports[@]} -eq 3 && ${#route_ports[@]} -eq 3 ]] ||
		die "HTTP_PORTS, NATS_PORTS and ROUTE_PORTS need three ports each"
}

# pid_of NODE: the pid of a running node, or nothing.
pid_of() {
	local f=$dir/$1/pid pid
	[[ -f $f ]] || return 0
	pid=$(<"$f")
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		echo "$pid"
	fi
}

# ready URL: 0 once the node answers /readyz (or, on a membershipd without
# it, /healthz) with 200.
ready() {
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/tls/ca.crt" "$1/readyz" || true)
	if [[ $code == 404 ]]; then
		code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/tls/ca.crt" "$1/healthz" || true)
	fi
	[[ $code == 200 ]]
}

servers() {
	local urls=() i
	for i in 0 1 2; do urls+=("https://127.0.0.1:${http_ports[$i]}"); done
	(IFS=,; echo "${urls[*]}")
}

print_env() {
	echo "# unibus client settings for the local cluster (every node's URL; the CA):"
	echo "export UNIBUS_SERVER=$(servers)"
	echo "export UNIBUS_CA=$dir/tls/ca.crt"
	if [[ -f $dir/admin.json ]]; then
		echo "export UNIBUS_IDENTITY=$dir/admin.json"
	fi
}

start() {
	local token=${1:-}
	check_ports
	command -v curl >/dev/null 2>&1 || die "curl is needed to wait for the nodes"
	local md
	md=$(binary membershipd ./cmd/membershipd "${MEMBERSHIPD:-}")
	mkdir -p "$dir"

	# Certificates: a CA, the server certificate (127.0.0.1, localhost)
	# every node serves to clients, and one route certificate per node.
	if [[ ! -f $dir/tls/ca.crt ]]; then
		"$md" tls init --dir "$dir/tls" >/dev/null
		say "made a development CA in $dir/tls"
	fi
	local n
	for n in "${nodes[@]}"; do
		if [[ ! -f $dir/tls/$n.crt ]]; then
			"$md" tls node --dir "$dir/tls" --name "$n" >/dev/null
		fi
	done

	# --replicas is the newer name of --kv-replicas.
	local help replicas_flag=--kv-replicas
	help=$("$md" -h 2>&1 || true)
	if grep -qE '^[[:space:]]+-replicas ' <<<"$help"; then
		replicas_flag=--replicas
	fi

	local routes=() i
	for i in 0 1 2; do routes+=("nats://127.0.0.1:${route_ports[$i]}"); done
	routes=$(IFS=,; echo "${routes[*]}")

	# launch I: start node I in the background. setsid: the node outlives
	# this script and its terminal.
	launch() {
		local i=$1 n=${nodes[$1]}
		mkdir -p "$dir/$n"
		chmod 700 "$dir/$n"
		setsid "$md" \
			--bind 127.0.0.1 \
			--http-port "${http_ports[$i]}" \
			--nats-port "${nats_ports[$i]}" \
			--bus-auth enforce \
			--tls-cert "$dir/tls/$n.crt" --tls-key "$dir/tls/$n.key" \
			--store kv "$replicas_flag" 3 \
			--db "$dir/$n/unibus.db" \
			--store-dir "$dir/$n/blobs" \
			--nats-store "$dir/$n/nats" \
			--cluster-name "$cluster_name" --server-name "$n" \
			--cluster-port "${route_ports[$i]}" --routes "$routes" \
			--route-tls-cert "$dir/tls/$n.crt" --route-tls-key "$dir/tls/$n.key" \
			--route-tls-ca "$dir/tls/ca.crt" \
			>>"$dir/$n/membershipd.log" 2>&1 </dev/null &
		echo $! >"$dir/$n/pid"
		say "$n: pid $!, API https://127.0.0.1:${http_ports[$i]}, NATS ${nats_ports[$i]}, route ${route_ports[$i]}, log $dir/$n/membershipd.log"
	}
	for i in 0 1 2; do
		n=${nodes[$i]}
		if [[ -n $(pid_of "$n") ]]; then
			say "$n is running already (pid $(pid_of "$n"))"
			continue
		fi
		launch "$i"
	done

	# Wait for all three: each is ready once the cluster has a quorum and
	# its store is open. A node that gives up waiting for the others (a
	# membershipd without start-up retries) is started again, a few times,
	# as systemd's Restart=on-failure would.
	local deadline=$((SECONDS + start_timeout)) restarts=(0 0 0) waiting
	while :; do
		waiting=()
		for i in 0 1 2; do
			n=${nodes[$i]}
			ready "https://127.0.0.1:${http_ports[$i]}" && continue
			waiting+=("$n")
			if [[ -z $(pid_of "$n") ]]; then
				((restarts[i]++ < 5)) || die "$n exited; see $dir/$n/membershipd.log"
				say "$n exited while starting; starting it again"
				launch "$i"
			fi
		done
		((${#waiting[@]} > 0)) || break
		((SECONDS < deadline)) || die "${waiting[*]} not ready after ${start_timeout}s; see $dir/NODE/membershipd.log"
		sleep 0.2
	done
	say "three nodes ready"

	# The first admin, once: from TOKEN, or an identity made here.
	if [[ ! -f $dir/seeded ]]; then
		if [[ -z $token ]]; then
			local ub
			ub=$(binary unibus ./cmd/unibus "${UNIBUS:-}")
			if [[ ! -f $dir/admin.json ]]; then
				"$ub" id new --name admin --identity "$dir/admin.json" >/dev/null
			fi
			token=$("$ub" id show --public --identity "$dir/admin.json")
		fi
		"$md" user seed --admin --store kv \
			--nats-url "nats://127.0.0.1:${nats_ports[0]}" --ca "$dir/tls/ca.crt" \
			--control-key "$dir/node1/nats/control.nk" "$token" >&2
		touch "$dir/seeded"
	fi
	print_env
}

stop() {
	local n pid pids=()
	for n in "${nodes[@]}"; do
		pid=$(pid_of "$n")
		if [[ -n $pid ]]; then
			kill -TERM "$pid"
			pids+=("$n:$pid")
		fi
	done
	local entry deadline=$((SECONDS + 20))
	for entry in "${pids[@]}"; do
		n=${entry%%:*} pid=${entry#*:}
		while kill -0 "$pid" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				say "$n (pid $pid) did not stop within 20s; killing it"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
		rm -f "$dir/$n/pid"
		say "$n stopped"
	done
	if [[ ${#pids[@]} -eq 0 ]]; then
		say "no node running in $dir"
	fi
}

status() {
	check_ports
	local md n running=0
	md=$(binary membershipd ./cmd/membershipd "${MEMBERSHIPD:-}")
	for n in "${nodes[@]}"; do
		if [[ -n $(pid_of "$n") ]]; then
			running=1
			echo "$n: running, pid $(pid_of "$n")" >&2
		else
			echo "$n: stopped" >&2
		fi
	done
	((running)) || exit 1
	# Through the first running node, with its system key; the process
	# lines above go to stderr, so that --json prints only JSON.
	local i
	for i in 0 1 2; do
		n=${nodes[$i]}
		[[ -n $(pid_of "$n") ]] || continue
		exec "$md" cluster status --nats-url "nats://127.0.0.1:${nats_ports[$i]}" \
			--ca "$dir/tls/ca.crt" --nats-store "$dir/$n/nats" "${@}"
	done
}

case ${1:-} in
start)
	shift
	[[ $# -le 1 ]] || usage
	start "${1:-}"
	;;
stop)
	[[ $# -eq 1 ]] || usage
	stop
	;;
status)
	shift
	status "$@"
	;;
env)
	print_env
	;;
*)
	usage
	;;
esac
