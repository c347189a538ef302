#!/usr/bin/env bash
# `make demo`: starts the development broker (mutual TLS, throwaway PKI in
# .demo/pki), runs the agent on simulated sensors against it, and shows the
# messages as the broker receives them. Ctrl-C stops both. Everything stays
# on this machine; the agent's own log goes to .demo/agent.log.
# Both run in their own sessions so that Ctrl-C reaches only this script,
# which then stops the agent first (it says goodbye) and the broker last.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${DEMO_PORT:-18883}
mkdir -p .demo
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
	echo "demo: port $port is in use; run with DEMO_PORT=<free port> make demo" >&2
	exit 1
fi
sed "s/@PORT@/$port/" scripts/demo.toml > .demo/cityedge.toml

pids=()
tailer=
cleanup() {
	trap - INT TERM EXIT
	[ -z "$tailer" ] || kill "$tailer" 2>/dev/null || true
	# The agent first, so that it can still say goodbye to the broker.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	echo
	# The agent delivers what it sampled before it stops (up to 2 s) and says
	# what, if anything, stays in the buffer for its next start.
	left=$(grep -E "stay in the buffer|buffer is empty" .demo/agent.log 2>/dev/null | tail -n 1 || true)
	case $left in
	*"stay in the buffer"*)
		n=$(echo "$left" | sed -n 's/.*readings=\([0-9]*\).*/\1/p')
		echo "demo: ${n:-some} readings were not acknowledged yet; they stay in .demo/state/buffer.db and are delivered at the next make demo" ;;
	*"buffer is empty"*) echo "demo: every reading was delivered before the agent stopped" ;;
	esac
	echo "demo: stopped. Agent log: .demo/agent.log; buffer: .demo/state/buffer.db"
}
trap cleanup EXIT
trap "cleanup; exit 0" INT TERM

setsid bin/devbroker --pki .demo/pki --listen "127.0.0.1:$port" --client-cn gw-demo &
pids+=($!)
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	sleep 0.1
done
chmod 600 .demo/pki/*.key
echo "demo: starting the agent (bin/cityedge --config .demo/cityedge.toml --simulate); log in .demo/agent.log"
setsid bin/cityedge --config .demo/cityedge.toml --simulate 2>>.demo/agent.log &
pids+=($!)
# What the simulated signs show, read back from their display RAM (or lamp
# line), next to the zone lines the broker prints.
tail -n 0 -F .demo/agent.log 2>/dev/null |
	sed -un 's/.*msg="simulated sign" sign=\([^ ]*\) zone=\([^ ]*\) shows=\(.*\)$/── sign \1 (zone \2) shows \3/p' &
tailer=$!
wait -n "${pids[@]}" || true
if ! kill -0 "${pids[1]}" 2>/dev/null; then
	echo "demo: the agent stopped; the end of .demo/agent.log:" >&2
	tail -n 20 .demo/agent.log >&2
fi
