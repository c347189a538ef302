#!/usr/bin/env bash
# bench-arm: the buffer and SenML benchmarks and the drain benchmark (with
# their raw baselines) built for armv7 and arm64 and run under qemu-user.
# Absolute times under emulation mean nothing; the ratios to the raw
# baselines measured on the same emulator do. Writes bench-armv7.out and
# bench-arm64.out, which `make bench` adds to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BENCHTIME=${BENCHTIME:-1s}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for t in arm/7/armv7/qemu-arm-static arm64//arm64/qemu-aarch64-static; do
	IFS=/ read -r arch arm name qemu <<<"$t"
	if ! command -v "$qemu" >/dev/null; then
		echo "bench-arm: $qemu not found (apt-get install qemu-user-static)" >&2
		exit 1
	fi
	out=bench-$name.out
	: >"$out"
	for pkg in buffer uplink/senml uplink cmd/cityedge; do
		bin=$tmp/$(echo "$pkg" | tr / -)-$name.test
		CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOARM=$arm $GO test -c -o "$bin" "./$pkg"
		case $pkg in
		buffer | uplink/senml) bench=. time=$BENCHTIME ;;
		uplink) bench='RawPahoMTLS$' time=2000x ;;
		cmd/cityedge) bench='DrainMTLS$' time=2000x ;;
		esac
		echo "bench-arm: $name $pkg" >&2
		# Run from the package directory, as go test does (testdata, binaries).
		(cd "$pkg" && "$qemu" "$bin" -test.run '^$' -test.bench "$bench" -test.benchtime "$time") 2>&1 |
			grep -v ' INFO ' | tee -a "$out"
	done
done
