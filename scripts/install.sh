#!/bin/sh
# Install or upgrade cityedge from an extracted release tarball on a
# Debian-family gateway (Raspberry Pi OS, Debian, Ubuntu, Armbian):
#
#   tar xzf cityedge_<version>_linux_<arch>.tar.gz
#   sudo ./cityedge_<version>_linux_<arch>/install.sh
#
# What it does, each step only when needed (running it again changes nothing):
#   - groups i2c and gpio (they own /dev/i2c-* and /dev/gpiochip*) and the
#     system user cityedge in them, with group cityedge and no login shell;
#   - /etc/cityedge (0755) and /var/lib/cityedge (0700, cityedge), the buffer
#     directory; an existing one is never touched;
#   - the binary at <prefix>/bin/cityedge, the unit at
#     /etc/systemd/system/cityedge.service, the udev rule at
#     /etc/udev/rules.d/60-cityedge.rules, README and example config at
#     <prefix>/share/doc/cityedge;
#   - /etc/cityedge/cityedge.toml from the example, only if there is none;
#   - systemctl daemon-reload and enable; a running agent is restarted when
#     its binary or unit changed (its buffer is on disk, nothing is lost).
#
# Options:
#   --prefix DIR   where the binary and docs go (default /usr/local)
#   --root DIR     install into DIR as if it were / (an image, or a test's
#                  scratch directory); the running system is left alone
#   --dry-run      print what would change and change nothing
#   --no-enable    do not enable the unit
#   -h, --help     this text
#
# Not for machines with the cityedge .deb installed: upgrade those with apt.
set -eu

usage() { sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//'; }

prefix=/usr/local
root=
dry=0
enable=1
while [ $# -gt 0 ]; do
	case "$1" in
	--prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
	--prefix=*) prefix=${1#*=}; shift ;;
	--root) root=${2:?--root needs a directory}; shift 2 ;;
	--root=*) root=${1#*=}; shift ;;
	--dry-run) dry=1; shift ;;
	--no-enable) enable=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
case "$prefix" in
/*) ;;
*) echo "install.sh: --prefix must be an absolute path, not $prefix" >&2; exit 2 ;;
esac
if [ -n "$root" ]; then
	[ -d "$root" ] || { echo "install.sh: --root $root is not a directory" >&2; exit 2; }
	root=$(cd "$root" && pwd)
	[ "$root" != / ] || root=
fi

here=$(cd "$(dirname "$0")" && pwd)
user=cityedge
state=/var/lib/cityedge
conf=/etc/cityedge
unit=cityedge.service
bin=$prefix/bin/cityedge
changed=0 # set when the binary, unit or rule changed

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }

# --- checks before anything changes ---------------------------------------

for f in cityedge cityedge.service 60-cityedge.rules cityedge.example.toml README.md; do
	[ -f "$here/$f" ] || die "$here/$f is missing: run install.sh from the extracted release tarball"
done
if [ -z "$root" ]; then
	# The wrong tarball for this board fails here, not at the first boot.
	"$here/cityedge" --version >/dev/null 2>&1 ||
		die "$here/cityedge does not run on this $(uname -m) machine: pick the tarball for its architecture (armv6: Pi Zero/1 and 32-bit Raspberry Pi OS, armv7, arm64, amd64)"
fi
if [ -n "$root" ]; then
	# groupadd/useradd --prefix edit DIR's own account files: an empty DIR
	# has none, and groupadd would only say "cannot open /etc/group".
	for f in passwd group; do
		[ -f "$root/etc/$f" ] || die "--root $root has no etc/$f: install into a root file system that has its account files (etc/passwd, etc/group, etc/shadow, etc/gshadow, e.g. an unpacked base image), or create them there first"
	done
fi
for l in "$root"/var/lib/dpkg/info/cityedge.list "$root"/var/lib/dpkg/info/cityedge:*.list; do
	[ ! -e "$l" ] || die "cityedge is installed from its Debian package here; upgrade it with apt (or remove the package first)"
done
if [ "$dry" = 0 ] && [ "$(id -u)" != 0 ]; then
	die "run as root (sudo $0), or with --dry-run to see what would change"
fi

# --- helpers ------------------------------------------------------------------

# run CMD...: run a change, or only show it under --dry-run.
run() {
	if [ "$dry" = 1 ]; then
		say "would run: $*"
	else
		"$@"
	fi
}

# lookup DB NAME: the passwd or group entry, from $root's files or NSS.
lookup() {
	if [ -n "$root" ]; then
		grep "^$2:" "$root/etc/$1" 2>/dev/null || true
	else
		getent "$1" "$2" || true
	fi
}

# shadow TOOL ARGS...: a shadow-utils tool on $root's account files.
shadow() {
	tool=$1
	shift
	if [ -n "$root" ]; then
		run "$tool" --prefix "$root" "$@"
	else
		run "$tool" "$@"
	fi
}

# owner_ids NAME: "uid:gid" of a user and its group (empty before they exist).
owner_ids() {
	u=$(lookup passwd "$1" | cut -d: -f3)
	g=$(lookup group "$1" | cut -d: -f3)
	if [ -n "$u" ] && [ -n "$g" ]; then echo "$u:$g"; fi
}

# put SRC DST MODE: install a root-owned file when its content, mode or owner
# differs; sets did=1 when it changed something. (Called as a plain command:
# inside a function used in an && list, sh would ignore set -e.)
put() {
	src=$1 dst=$root$2 mode=$3
	did=0
	if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
		if [ "$(stat -c '%a %u %g' "$dst")" != "${mode#0} 0 0" ]; then
			say "fixing mode/owner of $2"
			run chown 0:0 "$dst"
			run chmod "$mode" "$dst"
			did=1
		fi
		return 0
	fi
	if [ -e "$dst" ]; then say "updating $2"; else say "installing $2"; fi
	run mkdir -p "$(dirname "$dst")"
	# Write beside and rename: a running agent keeps its old binary, and an
	# interrupted copy never leaves half a file under the real name.
	run cp "$src" "$dst.new"
	run chown 0:0 "$dst.new"
	run chmod "$mode" "$dst.new"
	run mv -f "$dst.new" "$dst"
	did=1
}

live() { [ -z "$root" ] && [ "$dry" = 0 ] && [ -d /run/systemd/system ]; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- account --------------------------------------------------------------------

for g in i2c gpio "$user"; do
	if [ -z "$(lookup group "$g")" ]; then
		say "creating system group $g"
		shadow groupadd --system "$g"
	fi
done
if [ -z "$(lookup passwd "$user")" ]; then
	say "creating system user $user (groups i2c, gpio; no login)"
	shadow useradd --system --gid "$user" --groups i2c,gpio \
		--home-dir "$state" --no-create-home --shell /usr/sbin/nologin \
		--comment "cityedge edge agent" "$user"
fi

# --- directories ----------------------------------------------------------------

if [ ! -d "$root$conf" ]; then
	say "creating $conf"
	run mkdir -p "$root$conf"
	run chmod 0755 "$root$conf"
fi
# The buffer lives here: create it once, never touch an existing one.
if [ ! -e "$root$state" ]; then
	say "creating $state (0700, $user)"
	run mkdir -p "$root$state"
	run chmod 0700 "$root$state"
	ids=$(owner_ids "$user")
	if [ -n "$ids" ]; then
		run chown "$ids" "$root$state"
	else
		say "would chown $state to $user"
	fi
fi

# --- files ------------------------------------------------------------------------

put "$here/cityedge" "$bin" 0755
[ "$did" = 0 ] || changed=1

# The unit names /usr/bin/cityedge (where the .deb puts it); point it at
# the binary installed here.
sed -e "s|^ExecStart=/usr/bin/cityedge |ExecStart=$bin |" \
	-e "s|^ExecStopPost=-/usr/bin/cityedge |ExecStopPost=-$bin |" \
	-e "s|file:///usr/share/doc/cityedge/|file://$prefix/share/doc/cityedge/|" \
	"$here/cityedge.service" >"$tmp/cityedge.service"
grep -q "^ExecStart=$bin " "$tmp/cityedge.service" || die "cityedge.service has no ExecStart=/usr/bin/cityedge line to adapt"
grep -q "^ExecStopPost=-$bin " "$tmp/cityedge.service" || die "cityedge.service has no ExecStopPost=-/usr/bin/cityedge line to adapt"
put "$tmp/cityedge.service" "/etc/systemd/system/$unit" 0644
[ "$did" = 0 ] || changed=1

put "$here/60-cityedge.rules" /etc/udev/rules.d/60-cityedge.rules 0644
rules=$did

put "$here/README.md" "$prefix/share/doc/cityedge/README.md" 0644
put "$here/cityedge.example.toml" "$prefix/share/doc/cityedge/cityedge.example.toml" 0644

# The configuration is the admin's: installed from the example only once.
if [ ! -e "$root$conf/cityedge.toml" ]; then
	put "$here/cityedge.example.toml" "$conf/cityedge.toml" 0644
	fresh_config=1
else
	fresh_config=0
fi

# --- systemd and udev -------------------------------------------------------------

if [ "$rules" = 1 ] && live && command -v udevadm >/dev/null 2>&1; then
	udevadm control --reload-rules || true
	udevadm trigger --action=change --subsystem-match=i2c-dev --subsystem-match=gpio || true
fi

if [ "$enable" = 1 ]; then
	link=$root/etc/systemd/system/multi-user.target.wants/$unit
	if [ ! -L "$link" ]; then
		say "enabling $unit"
		if command -v systemctl >/dev/null 2>&1; then
			if [ -n "$root" ]; then
				run systemctl --root="$root" --quiet enable "$unit"
			else
				run systemctl --quiet enable "$unit"
			fi
		else
			run mkdir -p "$(dirname "$link")"
			run ln -s "/etc/systemd/system/$unit" "$link"
		fi
	fi
fi

if live; then
	systemctl daemon-reload
	if [ "$changed" = 1 ] && systemctl --quiet is-active "$unit"; then
		say "restarting the running agent on the new files"
		systemctl restart "$unit"
	fi
fi

if [ "$dry" = 1 ]; then
	say "dry run: nothing was changed"
elif [ "$fresh_config" = 1 ]; then
	cat <<MSG
install.sh: done. Before starting the agent:
  1. edit $conf/cityedge.toml (agent.id, uplink.brokers, sensors)
  2. install $conf/ca.pem, client.pem and client.key, then
       chown $user:$user $conf/client.key && chmod 600 $conf/client.key
     (or create the key here: $bin --enroll --csr /tmp/gateway.csr)
  3. $bin --diagnose
  4. systemctl start cityedge
MSG
else
	say "done"
fi
