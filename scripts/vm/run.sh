#!/usr/bin/env bash
# The emulated ARM gateway test (issue 7): boots Debian's own arm64 and armhf
# kernels under qemu (TCG) with an initramfs holding busybox, our simulated
# I2C chips (cityedge_i2csim), gpio-sim and the static cityedge binary; the
# agent publishes over mutual TLS to a mosquitto on the host, reached through
# qemu's user-mode network; vmcheck then checks what the broker received and
# what the guest printed. See scripts/vm/README.md.
#
#   scripts/vm/run.sh [arm64|armhf|all]      (default all)
#
# Environment:
#   CITYEDGE_VM_TEST=0        skip (prints a SKIP: line, exits 0)
#   CITYEDGE_REQUIRE_VM=1     fail instead of skipping when tools are missing and cannot be installed
#   CITYEDGE_VM_CACHE=DIR     downloads, kernels, built modules
#                             (default ${XDG_CACHE_HOME:-$HOME/.cache}/cityedge-vm)
#   CITYEDGE_VM_REFRESH=1     look up the newest Debian kernel again
#   CITYEDGE_VM_TIMEOUT=SEC   hard limit for one guest run (default 300)
#   CITYEDGE_VM_SRC=DIR       build the agent from another checkout (default: this one)
#
# Exit status: 0 all checks passed (or skipped), 1 a check failed or a tool
# or package could not be had (the reason is printed).
set -euo pipefail

if [[ "${CITYEDGE_VM_TEST:-1}" == 0 ]]; then
	echo "SKIP: emulated ARM gateway test (CITYEDGE_VM_TEST=0)"
	exit 0
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${CITYEDGE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cityedge-vm}
TIMEOUT=${CITYEDGE_VM_TIMEOUT:-300}
KSERIES=6.1 # Debian bookworm's kernel series; its source must match the image exactly
GUEST_RTC_BASE=2021-06-01T12:00:00 # the guest's clock at boot: years wrong (the clock phase)

case "${1:-all}" in
arm64 | armhf) ARCHES=("$1") ;;
all) ARCHES=(arm64 armhf) ;;
*)
	echo "usage: scripts/vm/run.sh [arm64|armhf|all]" >&2
	exit 2
	;;
esac

die() {
	echo "vm-test: FAIL: $*" >&2
	exit 1
}
say() { echo "vm-test: $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# Processes this script started; ended on exit, by pid.
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
trap cleanup EXIT

T_START=$(now)

# ---- host tools ----------------------------------------------------------

# command:Debian package
TOOLS=(
	qemu-system-aarch64:qemu-system-arm
	qemu-system-arm:qemu-system-arm
	qemu-arm-static:qemu-user-static
	aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu
	arm-linux-gnueabihf-gcc:gcc-arm-linux-gnueabihf
	gcc:gcc
	make:make
	mosquitto:mosquitto
	mosquitto_sub:mosquitto-clients
	dpkg-deb:dpkg
	apt-get:apt
	xz:xz-utils
	timeout:coreutils
)

missing_tools() {
	local t cmd pkg
	for t in "${TOOLS[@]}"; do
		cmd=${t%%:*} pkg=${t#*:}
		if ! command -v "$cmd" >/dev/null && ! [[ -x /usr/sbin/$cmd ]]; then
			echo "$pkg"
		fi
	done | sort -u
}

ensure_tools() {
	command -v go >/dev/null || die "go is not installed: the agent and vmcheck are built from source (Go 1.25 or later)"
	local missing
	missing=$(missing_tools | xargs)
	[[ -z "$missing" ]] && return
	if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
		# A developer without root gets a clear skip, so that `make test`
		# passes on a fresh machine; CI (root) installs, and
		# CITYEDGE_REQUIRE_VM=1 turns the skip into a failure.
		if [[ ${CITYEDGE_REQUIRE_VM:-0} == 1 ]]; then
			die "missing Debian packages: $missing; install them with: sudo apt-get install --no-install-recommends $missing"
		fi
		echo "SKIP: emulated ARM gateway test: missing Debian packages $missing; install them with: sudo apt-get install --no-install-recommends $missing"
		exit 0
	fi
	say "installing $missing"
	apt-get update -qq >/dev/null || die "apt-get update failed; install by hand: apt-get install $missing"
	# shellcheck disable=SC2086 # one word per package
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
		die "apt-get install $missing failed"
	missing=$(missing_tools | xargs)
	[[ -z "$missing" ]] || die "still missing after apt-get install: $missing"
}

# ---- Debian packages of the guest architectures --------------------------

# A private apt state under the cache: the guests' packages are downloaded,
# never installed, and the host's dpkg configuration is left alone (no
# dpkg --add-architecture).
APTDIR=$CACHE/apt
HOSTARCH=
aptx() {
	apt-get -q \
		-o Dir::State::Lists="$APTDIR/lists" -o Dir::State::status="$APTDIR/status" \
		-o Dir::Cache="$APTDIR/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root \
		-o APT::Architecture="$HOSTARCH" -o APT::Architectures::="$HOSTARCH" \
		-o APT::Architectures::=arm64 -o APT::Architectures::=armhf "$@"
}
aptcache() {
	apt-cache \
		-o Dir::State::Lists="$APTDIR/lists" -o Dir::State::status="$APTDIR/status" \
		-o Dir::Cache="$APTDIR/cache" \
		-o APT::Architecture="$HOSTARCH" -o APT::Architectures::="$HOSTARCH" \
		-o APT::Architectures::=arm64 -o APT::Architectures::=armhf "$@"
}
APT_UPDATED=
apt_update() {
	[[ -n "$APT_UPDATED" ]] && return
	mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
	touch "$APTDIR/status"
	say "apt-get update (arm64, armhf package lists, in $APTDIR)"
	# A mirror in mid-sync can fail one index; what matters is that the
	# lists we need are there, which the look-ups below check.
	aptx update >"$APTDIR/update.log" 2>&1 || say "apt-get update reported errors (see $APTDIR/update.log); going on with the lists it has"
	APT_UPDATED=1
}

# download NAME[:ARCH]=VERSION... into $CACHE/debs (kept: reruns need no
# network). Without :ARCH the package is architecture-independent.
download() {
	local want=() p name ver arch
	mkdir -p "$CACHE/debs"
	for p in "$@"; do
		name=${p%%=*} ver=${p#*=}
		arch=all
		[[ $name == *:* ]] && arch=${name#*:} name=${name%%:*}
		[[ -f "$(deb "$name" "$ver" "$arch")" ]] || want+=("$p")
	done
	[[ ${#want[@]} -eq 0 ]] && return
	apt_update
	(cd "$CACHE/debs" && aptx download "${want[@]}" >"$CACHE/debs/download.log" 2>&1) ||
		die "apt-get download ${want[*]} failed: $(tail -3 "$CACHE/debs/download.log")"
}

deb() { # deb NAME VERSION ARCH -> where apt-get download puts that package
	echo "$CACHE/debs/${1}_${2/:/%3a}_$3.deb"
}

# kernel_env ARCH: resolves (once, then cached) which kernel the guest boots
# and sets ABI (e.g. 6.1.0-50-arm64), KVER (package version) and FLAVOUR.
kernel_env() {
	local arch=$1 stamp=$CACHE/$1/kernel.env dep
	case $arch in
	arm64) FLAVOUR=arm64 ;;
	armhf) FLAVOUR=armmp ;;
	esac
	if [[ -f "$stamp" && "${CITYEDGE_VM_REFRESH:-0}" != 1 ]]; then
		# shellcheck disable=SC1090
		. "$stamp"
		return
	fi
	apt_update
	dep=$(aptcache show --no-all-versions "linux-image-$FLAVOUR:$arch" 2>/dev/null | sed -n 's/^Depends: *\(linux-image-[^ ]*\) (= \([^)]*\)).*/\1 \2/p' | head -1)
	[[ -n "$dep" ]] || die "Debian has no linux-image-$FLAVOUR for $arch in the package lists (see $APTDIR/update.log)"
	ABI=${dep%% *} ABI=${ABI#linux-image-} KVER=${dep#* }
	[[ $ABI == $KSERIES.* ]] || die "linux-image-$FLAVOUR:$arch is $ABI; this test builds gpio-sim from linux-source-$KSERIES"
	mkdir -p "$CACHE/$arch"
	printf 'ABI=%q\nKVER=%q\n' "$ABI" "$KVER" >"$stamp"
}

# Kernel modules the guest loads, in this order, besides ours; those built
# into the kernel are left out.
GUEST_MODULES=(configfs i2c-dev virtio_mmio failover net_failover virtio_net)

# kernel_tree ARCH: the guest's kernel, the modules it loads and the build
# tree for ours, extracted under $CACHE/ARCH/ABI. Sets KROOT, KIMAGE,
# KHEADERS and KMODS (the guest's modules and their load order).
kernel_tree() {
	local arch=$1 common
	kernel_env "$arch"
	KROOT=$CACHE/$arch/$ABI/root
	KIMAGE=$KROOT/boot/vmlinuz-$ABI
	KHEADERS=$KROOT/usr/src/linux-headers-$ABI
	KMODS=$CACHE/$arch/$ABI/guest-modules
	[[ -f "$CACHE/$arch/$ABI/ready" ]] && return
	common=linux-headers-${ABI%-"$FLAVOUR"}-common
	local pkgs=("linux-image-$ABI:$arch=$KVER" "linux-headers-$ABI:$arch=$KVER" "$common=$KVER"
		"linux-kbuild-$KSERIES:$HOSTARCH=$KVER" "busybox-static:$arch=$(busybox_version "$arch")")
	[[ $arch == armhf ]] && pkgs+=("linux-kbuild-$KSERIES:armhf=$KVER")
	download "${pkgs[@]}"
	say "extracting the $arch kernel $ABI ($KVER)"
	rm -rf "${CACHE:?}/$arch/$ABI"
	mkdir -p "$KROOT"
	dpkg-deb -x "$(deb "linux-image-$ABI" "$KVER" "$arch")" "$KROOT"
	dpkg-deb -x "$(deb "linux-headers-$ABI" "$KVER" "$arch")" "$KROOT"
	dpkg-deb -x "$(deb "$common" "$KVER" all)" "$KROOT"
	dpkg-deb -x "$(deb "linux-kbuild-$KSERIES" "$KVER" "$HOSTARCH")" "$KROOT"
	dpkg-deb -x "$(deb busybox-static "$(busybox_version "$arch")" "$arch")" "$KROOT/busybox"
	# The headers' Makefile includes the -common tree by absolute path.
	sed -i "s#^include /usr/src/#include $KROOT/usr/src/#" "$KHEADERS/Makefile"
	grep -q "^include $KROOT/" "$KHEADERS/Makefile" || die "unexpected $KHEADERS/Makefile: $(head -2 "$KHEADERS/Makefile")"
	if [[ $arch == armhf ]]; then
		# modpost reads device tables (file2alias) with the structure
		# layouts of the machine it was built on: the host's are those
		# of a 64-bit build, wrong for 32-bit ARM modules. Run the armhf
		# package's modpost under qemu-user instead. Its "modpost" is a
		# launcher that picks modpost.real-<endianness>-<bits> next to
		# itself, which fails under qemu-user: call the 32-bit
		# little-endian one directly.
		local kb=$CACHE/$arch/$ABI/kbuild-armhf modpost=$KROOT/usr/lib/linux-kbuild-$KSERIES/scripts/mod/modpost
		dpkg-deb -x "$(deb "linux-kbuild-$KSERIES" "$KVER" armhf)" "$kb"
		rm -f "$modpost"
		printf '#!/bin/sh\nexec qemu-arm-static -L /usr/arm-linux-gnueabihf %q "$@"\n' \
			"$kb/usr/lib/linux-kbuild-$KSERIES/scripts/mod/modpost.real-lsb-32" >"$modpost"
		chmod +x "$modpost"
	fi
	[[ -f "$KIMAGE" ]] || die "the $arch kernel package has no $KIMAGE"
	# Keep only the modules the guest loads: the rest is 300 MB.
	local m ko all=$KROOT/lib/modules/$ABI
	mkdir -p "$KMODS"
	: >"$KMODS/order"
	for m in "${GUEST_MODULES[@]}"; do
		ko=$(find "$all/kernel" \( -name "$m.ko*" -o -name "${m//-/_}.ko*" \) | head -1)
		case $ko in
		*.ko) cp "$ko" "$KMODS/$m.ko" ;;
		*.ko.xz) xz -dc "$ko" >"$KMODS/$m.ko" ;;
		"")
			grep -qE "/(${m}|${m//-/_})\.ko$" "$all/modules.builtin" ||
				die "$ABI has $m neither as a module nor built in"
			continue
			;;
		*) die "$ko: unknown module compression" ;;
		esac
		echo "$m" >>"$KMODS/order"
	done
	rm -rf "${all:?}/kernel" "$KROOT/usr/lib/linux-image-$ABI" # modules and device trees the guest does not use
	# The packages are extracted; the cache needs them no more.
	rm -f "$(deb "linux-image-$ABI" "$KVER" "$arch")" "$(deb "linux-headers-$ABI" "$KVER" "$arch")"
	touch "$CACHE/$arch/$ABI/ready"
}

busybox_version() {
	local v
	v=$(compgen -G "$CACHE/debs/busybox-static_*_$1.deb" | tail -1 || true)
	v=${v##*/busybox-static_} v=${v%_"$1".deb}
	if [[ -z "$v" ]]; then
		apt_update
		v=$(aptcache show --no-all-versions "busybox-static:$1" 2>/dev/null | sed -n 's/^Version: *//p' | head -1)
		[[ -n "$v" ]] || die "Debian has no busybox-static for $1 in the package lists"
	fi
	echo "${v/\%3a/:}"
}

# gpio_sim_source: gpio-sim.c, irq_sim.c and gpiolib.h of the exact kernel
# version, from linux-source (the big tarball is read once, then deleted).
gpio_sim_source() {
	local dir=$CACHE/src/$KVER tarball top
	SRC=$dir
	[[ -f "$dir/ready" ]] && return
	download "linux-source-$KSERIES=$KVER"
	say "extracting gpio-sim and the IRQ simulator from linux-source-$KSERIES $KVER"
	rm -rf "$dir"
	mkdir -p "$dir/pkg"
	dpkg-deb -x "$(deb "linux-source-$KSERIES" "$KVER" all)" "$dir/pkg"
	tarball=$dir/pkg/usr/src/linux-source-$KSERIES.tar.xz
	top=linux-source-$KSERIES
	tar -xJf "$tarball" -C "$dir" "$top/drivers/gpio/gpio-sim.c" "$top/drivers/gpio/gpiolib.h" "$top/kernel/irq/irq_sim.c" ||
		die "linux-source-$KSERIES $KVER lacks gpio-sim or irq_sim"
	mv "$dir/$top/drivers/gpio/gpio-sim.c" "$dir/$top/drivers/gpio/gpiolib.h" "$dir/$top/kernel/irq/irq_sim.c" "$dir/"
	rm -rf "${dir:?}/pkg" "${dir:?}/$top" "$(deb "linux-source-$KSERIES" "$KVER" all)"
	touch "$dir/ready"
}

# build_modules ARCH: cityedge_i2csim.ko and gpio-sim.ko for the guest's
# kernel, cached by a hash of their sources and MODULE_RECIPE (change it
# when the way they are built below changes). Sets MODDIR.
MODULE_RECIPE=1
build_modules() {
	local arch=$1 kbarch cross hash b
	case $arch in
	arm64) kbarch=arm64 cross=aarch64-linux-gnu- ;;
	armhf) kbarch=arm cross=arm-linux-gnueabihf- ;;
	esac
	gpio_sim_source
	hash=$( (echo "$MODULE_RECIPE" && cat "$HERE/i2csim/cityedge_i2csim.c" "$HERE/i2csim/Kbuild" "$SRC/gpio-sim.c" "$SRC/irq_sim.c" "$SRC/gpiolib.h") | sha256sum | cut -c1-16)
	MODDIR=$CACHE/$arch/$ABI/modules-$hash
	[[ -f "$MODDIR/ready" ]] && return
	say "building cityedge_i2csim and gpio-sim for $ABI"
	rm -rf "${CACHE:?}/$arch/$ABI"/modules-* # builds of older sources
	mkdir -p "$MODDIR/i2csim" "$MODDIR/gpiosim"
	cp "$HERE/i2csim/cityedge_i2csim.c" "$HERE/i2csim/Kbuild" "$MODDIR/i2csim/"
	# gpio-sim with the IRQ simulator linked in: Debian's kernels have
	# neither (CONFIG_GPIO_SIM, CONFIG_IRQ_SIM off). irq_sim.c calls
	# irq_to_desc(), which modules cannot use since 5.16;
	# generic_handle_irq() runs the same flow handler (handle_simple_irq,
	# set by irq_sim_domain_map) through exported code.
	cp "$SRC/gpio-sim.c" "$MODDIR/gpiosim/gpio-sim-main.c"
	cp "$SRC/gpiolib.h" "$SRC/irq_sim.c" "$MODDIR/gpiosim/"
	sed -i 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq(irqnum);/' "$MODDIR/gpiosim/irq_sim.c"
	grep -q 'generic_handle_irq(irqnum);' "$MODDIR/gpiosim/irq_sim.c" || die "irq_sim.c of $KVER differs from what this script patches"
	printf 'obj-m := gpio-sim.o\ngpio-sim-y := gpio-sim-main.o irq_sim.o\n' >"$MODDIR/gpiosim/Kbuild"
	for b in i2csim gpiosim; do
		make -C "$KHEADERS" M="$MODDIR/$b" ARCH=$kbarch CROSS_COMPILE=$cross modules >"$MODDIR/$b/build.log" 2>&1 ||
			die "building $b for $ABI failed:
$(grep -E 'error|Error|ERROR' "$MODDIR/$b/build.log" | head -20)
(full log: $MODDIR/$b/build.log)"
	done
	cp "$MODDIR/i2csim/cityedge_i2csim.ko" "$MODDIR/gpiosim/gpio-sim.ko" "$MODDIR/"
	touch "$MODDIR/ready"
}

# initramfs AGENT_ID PORT TIME_PORT WORK: the guest's root file system,
# packed into WORK/initramfs.gz.
initramfs() {
	local id=$1 port=$2 tport=$3 work=$4 st=$4/initramfs
	rm -rf "$st"
	mkdir -p "$st/bin" "$st/lib/modules" "$st/etc/cityedge" "$st/usr/bin"
	cp "$KROOT/busybox/bin/busybox" "$st/bin/busybox"
	cp "$HERE/init.sh" "$st/init"
	chmod 755 "$st/init"
	cp "$KMODS"/*.ko "$KMODS/order" "$st/lib/modules/"
	cp "$MODDIR/cityedge_i2csim.ko" "$MODDIR/gpio-sim.ko" "$st/lib/modules/"
	printf 'cityedge_i2csim\ngpio-sim\n' >>"$st/lib/modules/order"
	cp "$work/cityedge" "$st/usr/bin/cityedge"
	cp "$work/ntpset" "$st/usr/bin/ntpset"
	cp "$work/pki/ca.pem" "$work/pki/client.pem" "$st/etc/cityedge/"
	install -m 600 "$work/pki/client.key" "$st/etc/cityedge/client.key"
	"$VMCHECK" scenario "$st" "$id" "$port" "$tport"
	"$VMCHECK" initramfs "$st" "$work/initramfs.gz"
}

# start_broker WORK: mosquitto requiring client certificates, on a free
# loopback port (another one if that port is taken meanwhile). Sets
# BROKER_PORT and BROKER_PID.
start_broker() {
	local work=$1 mosq try
	mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
	mkdir -p "$work/broker"
	for try in 1 2 3; do
		BROKER_PORT=$("$VMCHECK" freeport)
		{
			[[ $(id -u) == 0 ]] && echo "user root" # else it drops to "mosquitto", which cannot read the 0600 key
			cat <<-EOF
				per_listener_settings false
				persistence false
				log_dest stderr
				log_type error
				log_type warning
				log_type notice
				log_type information
				connection_messages true
				allow_anonymous false
				listener $BROKER_PORT 127.0.0.1
				cafile $work/pki/ca.pem
				certfile $work/pki/server.pem
				keyfile $work/pki/server.key
				require_certificate true
				use_identity_as_username true
			EOF
		} >"$work/broker/mosquitto.conf"
		"$mosq" -c "$work/broker/mosquitto.conf" >"$work/broker/mosquitto.log" 2>&1 &
		BROKER_PID=$!
		PIDS+=("$BROKER_PID")
		for _ in $(seq 1 50); do
			grep -q " running$" "$work/broker/mosquitto.log" && return 0
			kill -0 "$BROKER_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill "$BROKER_PID" 2>/dev/null || true
		grep -q "in use" "$work/broker/mosquitto.log" || break
		say "port $BROKER_PORT was taken; try $try of 3"
	done
	die "mosquitto did not start: $(tail -5 "$work/broker/mosquitto.log")"
}

# run_guest ARCH: one complete test of one architecture. A failed check
# adds ARCH to FAILED; a setup problem stops the script (die).
FAILED=()
run_guest() {
	local arch=$1 agent=gw-vm-$1 work=$CACHE/run/$1 t port rc goarch goarm sub subclock tsrv
	t=$(now)
	rm -rf "$work"
	mkdir -p "$work"
	case $arch in
	arm64) goarch=arm64 goarm= ;;
	armhf) goarch=arm goarm=7 ;;
	esac
	(cd "${CITYEDGE_VM_SRC:-$REPO}" && CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X main.version=vm-test" -o "$work/cityedge" ./cmd/cityedge) ||
		die "go build of cityedge for linux/$goarch failed"
	(cd "$REPO" && CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm go build -trimpath -buildvcs=false -ldflags "-s -w" \
		-o "$work/ntpset" ./scripts/vm/ntpset) || die "go build of ntpset for linux/$goarch failed"
	"$VMCHECK" pki "$work/pki" "$agent"
	start_broker "$work"
	port=$BROKER_PORT
	# The true time for the guest's ntpset (the clock phase).
	"$VMCHECK" timeserver "$work/timeserver.port" >"$work/timeserver.log" 2>&1 &
	tsrv=$!
	PIDS+=("$tsrv")
	for _ in $(seq 1 50); do
		[[ -s "$work/timeserver.port" ]] && break
		sleep 0.1
	done
	[[ -s "$work/timeserver.port" ]] || die "the time server did not start: $(cat "$work/timeserver.log")"
	initramfs "$agent" "$port" "$(cat "$work/timeserver.port")" "$work"
	# Two observers: the scenario's readings, and the clock phase's with
	# the host's arrival time of each message.
	mosquitto_sub -h 127.0.0.1 -p "$port" --cafile "$work/pki/ca.pem" --cert "$work/pki/observer.pem" \
		--key "$work/pki/observer.key" -i vm-test-observer -q 1 -v -t "cityedge/$agent/#" >"$work/capture.txt" 2>"$work/sub.err" &
	sub=$!
	PIDS+=("$sub")
	mosquitto_sub -h 127.0.0.1 -p "$port" --cafile "$work/pki/ca.pem" --cert "$work/pki/observer.pem" \
		--key "$work/pki/observer.key" -i vm-test-clock-observer -q 1 -F '%U %t %p' -t "cityedge-clock/$agent/#" >"$work/capture-clock.txt" 2>"$work/sub-clock.err" &
	subclock=$!
	PIDS+=("$subclock")
	for _ in $(seq 1 50); do
		grep -q "as vm-test-observer" "$work/broker/mosquitto.log" && grep -q "as vm-test-clock-observer" "$work/broker/mosquitto.log" && break
		sleep 0.1
	done
	grep -q "as vm-test-observer" "$work/broker/mosquitto.log" || die "the observer did not connect: $(cat "$work/sub.err")"
	grep -q "as vm-test-clock-observer" "$work/broker/mosquitto.log" || die "the clock observer did not connect: $(cat "$work/sub-clock.err")"
	say "$arch: built and packed in $(since "$t"); booting $ABI under qemu (timeout ${TIMEOUT}s)"

	# The guest's real-time clock (PL031) starts years behind: a gateway that
	# boots with a stale clock (the clock phase, issue 14).
	local qemu=(-m 512 -smp 1 -nographic -no-reboot -kernel "$KIMAGE" -initrd "$work/initramfs.gz" -rtc "base=$GUEST_RTC_BASE"
		-append "console=ttyAMA0 panic=-1 quiet"
		-netdev "user,id=net0" -device "virtio-net-device,netdev=net0")
	# shellcheck disable=SC2054 # the commas are qemu's
	case $arch in
	arm64) qemu=(qemu-system-aarch64 -M virt -cpu cortex-a53 "${qemu[@]}") ;;
	armhf) qemu=(qemu-system-arm -M virt,highmem=off -cpu cortex-a15 "${qemu[@]}") ;;
	esac
	t=$(now)
	rc=0
	timeout -k 5 "$TIMEOUT" "${qemu[@]}" </dev/null >"$work/console.log" 2>&1 || rc=$?
	sleep 0.5 # the last messages reach the observer
	kill "$sub" "$subclock" "$tsrv" "$BROKER_PID" 2>/dev/null || true
	local took
	took=$(since "$t")
	if [[ $rc == 124 ]]; then
		say "$arch: the guest did not finish within ${TIMEOUT}s"
	elif [[ $rc != 0 ]]; then
		say "$arch: qemu exited with status $rc"
	fi
	say "$arch: guest ran $took; checking"
	if ! "$VMCHECK" check "$agent" "$work/console.log" "$work/capture.txt" "$work/capture-clock.txt" >"$work/check.txt" 2>&1 || [[ $rc != 0 ]]; then
		echo "---- $arch guest console (agent lines and markers) ----"
		grep -vE '^(dmesg\| )' "$work/console.log" | tail -150 || true
		echo "---- $arch broker log (tail) ----"
		tail -20 "$work/broker/mosquitto.log" || true
		echo "---- $arch checks ----"
		cat "$work/check.txt"
		echo "(all files in $work)"
		FAILED+=("$arch")
		return 0
	fi
	sed "s/^/vm-test: $arch: /" "$work/check.txt"
	say "$arch: PASS (guest $took)"
}

# ---- main ----------------------------------------------------------------

ensure_tools
HOSTARCH=$(dpkg --print-architecture)
mkdir -p "$CACHE"
VMCHECK=$CACHE/vmcheck
(cd "$REPO" && go build -buildvcs=false -o "$VMCHECK" ./scripts/vm/vmcheck) || die "go build of scripts/vm/vmcheck failed"
say "tools ready in $(since "$T_START") (cache $CACHE)"

for arch in "${ARCHES[@]}"; do
	t=$(now)
	kernel_tree "$arch"
	build_modules "$arch"
	say "$arch: kernel $ABI and modules ready in $(since "$t")"
	run_guest "$arch"
done
say "total $(since "$T_START")"
if [[ ${#FAILED[@]} -gt 0 ]]; then
	die "the emulated gateway failed on: ${FAILED[*]}"
fi
say "PASS: ${ARCHES[*]}"
