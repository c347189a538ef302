#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a fixed time each (default 2s).
# Usage: scripts/fuzz.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-2s}
n=0
while IFS= read -r file; do
	pkg=./$(dirname "$file")
	for f in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
		echo "fuzz: $pkg $f ($t)"
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" >/tmp/cityedge-fuzz.$$ 2>&1 || { cat /tmp/cityedge-fuzz.$$; rm -f /tmp/cityedge-fuzz.$$; exit 1; }
		n=$((n + 1))
	done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort)
rm -f /tmp/cityedge-fuzz.$$
echo "fuzz: $n targets, $t each, no failures"
