#!/bin/sh
# Package the binaries of `make cross` (dist/cityedge-linux-{armv6,armv7,arm64,amd64})
# into release tarballs and .deb packages with SHA256SUMS: `make dist`.
#
# Reproducible: every archive member gets the commit time, root:root and fixed
# modes, so packaging one commit twice gives identical bytes.
#
# Environment (each optional):
#   VERSION            the version the binaries were built with; default as
#                      in the Makefile (git describe --tags --always --dirty)
#   SOURCE_DATE_EPOCH  time of every archive member; default the commit time
#   DIST               directory with the binaries and for the packages (dist)
#   TARGETS            architectures, comma-separated (armv6,armv7,arm64,amd64)
#   CITYEDGE_MAINTAINER  Maintainer field of the .deb
set -eu
cd "$(dirname "$0")/.."

GO=${GO:-go}
: "${VERSION:=$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null) || {
		echo "dist.sh: not a git checkout: set SOURCE_DATE_EPOCH (Unix seconds) for the archive times" >&2
		exit 1
	}
fi
export SOURCE_DATE_EPOCH

set -- -version "$VERSION" -dist "${DIST:-dist}" -targets "${TARGETS:-armv6,armv7,arm64,amd64}"
if [ -n "${CITYEDGE_MAINTAINER:-}" ]; then
	set -- "$@" -maintainer "$CITYEDGE_MAINTAINER"
fi
exec "$GO" run ./scripts/dist "$@"
