#!/usr/bin/env bash
# bench-arm: the buffer and SenML benchmarks and the drain benchmark (with
# their raw baselines) built for armv7 and arm64 and run under qemu-user.
# Absolute times under emulation mean nothing; the ratios to the raw
# baselines measured on the same emulator do. Even those moved by a third
# between two runs here (drain/raw on armv7 0.34 in one, 0.46 in the next),
# so every benchmark runs three times and `make bench` reports medians, and
# the drain and its raw baseline alternate, so that a slow minute on the
# shared host slows both rather than one. Writes bench-armv7.out and
# bench-arm64.out, which `make bench` adds to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BENCHTIME=${BENCHTIME:-1s}
ROUNDS=${ROUNDS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# run PKG BENCH BENCHTIME COUNT: one benchmark binary of the current
# platform ($name, $qemu) under qemu, from the package directory as go test
# runs it (testdata, binaries), appended to $out.
run() {
	echo "bench-arm: $name $1 ($2)" >&2
	(cd "$1" && "$qemu" "$tmp/$(echo "$1" | tr / -)-$name.test" -test.run '^$' -test.bench "$2" -test.benchtime "$3" -test.count "$4") 2>&1 |
		grep -v ' INFO ' | tee -a "$out"
}
for t in arm/7/armv7/qemu-arm-static arm64//arm64/qemu-aarch64-static; do
	IFS=/ read -r arch arm name qemu <<<"$t"
	if ! command -v "$qemu" >/dev/null; then
		echo "bench-arm: $qemu not found (apt-get install qemu-user-static)" >&2
		exit 1
	fi
	out=bench-$name.out
	: >"$out"
	for pkg in buffer uplink/senml uplink cmd/cityedge; do
		CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOARM=$arm $GO test -c -o "$tmp/$(echo "$pkg" | tr / -)-$name.test" "./$pkg"
	done
	run buffer . "$BENCHTIME" "$ROUNDS"
	run uplink/senml . "$BENCHTIME" "$ROUNDS"
	for _ in $(seq "$ROUNDS"); do
		run uplink 'RawPahoMTLS$' 2000x 1
		run cmd/cityedge 'DrainMTLS$' 2000x 1
	done
done
