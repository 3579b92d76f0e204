#!/usr/bin/env bash
# Puts weft on PATH with the systemd unit of its host agent.
#
#   sudo ./scripts/install.sh                    builds weft (as you, release), installs
#                                                /usr/local/bin/weft and
#                                                /etc/systemd/system/weft.service
#   sudo ./scripts/install.sh --prefix /opt/weft the binary in /opt/weft/bin (the unit follows)
#   sudo ./scripts/install.sh --uninstall        stops and disables the service, removes both
#
#   --destdir DIR   stage everything under DIR (for packaging): nothing of this machine is
#                   touched, systemctl is not run, root is not needed
#   --binary PATH   install this weft instead of building one
set -euo pipefail
# Relative --destdir and --binary are relative to where this was run from.
start_dir=$PWD
cd "$(dirname "$0")/.."
WEFT_ARGS="$*"
# shellcheck source=scripts/lib/toolchain.sh
. scripts/lib/toolchain.sh

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}
fail() {
  echo "error: $*" >&2
  exit 2
}

prefix=/usr/local
destdir=
binary=
uninstall=0
while [ $# -gt 0 ]; do
  case $1 in
    --prefix | --destdir | --binary)
      [ $# -ge 2 ] || fail "$1 needs a value"
      case $1 in
        --prefix) prefix=$2 ;;
        --destdir) destdir=$2 ;;
        --binary) binary=$2 ;;
      esac
      shift 2
      ;;
    --prefix=*) prefix=${1#*=} && shift ;;
    --destdir=*) destdir=${1#*=} && shift ;;
    --binary=*) binary=${1#*=} && shift ;;
    --uninstall) uninstall=1 && shift ;;
    -h | --help) usage && exit 0 ;;
    *) usage >&2 && fail "unknown option $1" ;;
  esac
done
# The unit's ExecStart takes the path as it is: absolute, nothing systemd would split or expand.
[[ $prefix =~ ^/[A-Za-z0-9/._+-]*$ ]] || fail "--prefix must be an absolute path of letters, digits and / . _ + - (got \"$prefix\")"
prefix=${prefix%/}
if [ -n "$destdir" ]; then
  [[ $destdir == /* ]] || destdir=$start_dir/$destdir
  destdir=${destdir%/}
elif [ "$(id -u)" != 0 ]; then
  echo "installing into $prefix and /etc/systemd/system needs root: sudo $0${WEFT_ARGS:+ $WEFT_ARGS}" >&2
  exit 1
fi
bin=$destdir$prefix/bin/weft
unit=$destdir/etc/systemd/system/weft.service

# systemctl only for this machine's own systemd, when it runs (not in a container without it).
systemd_here() {
  [ -z "$destdir" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null
}

if [ "$uninstall" = 1 ]; then
  if systemd_here && [ -e "$unit" ]; then
    systemctl disable --now weft.service >/dev/null 2>&1 || true
    echo "stopped and disabled weft.service"
  fi
  for f in "$bin" "$unit"; do
    if [ -e "$f" ]; then
      rm -f "$f"
      echo "removed $f"
    else
      echo "not there: $f"
    fi
  done
  if systemd_here; then systemctl daemon-reload; fi
  if [ -z "$destdir" ] && [ -d /var/lib/weft ]; then
    echo "kept weft's state (/var/lib/weft, /etc/weft): networks and sandboxes weft made stay until removed"
  fi
  exit 0
fi

if [ -z "$binary" ]; then
  weft_prepare_build
  weft_build_release
  binary=$(weft_release_binary) || fail "cannot tell where cargo put weft (rustc -vV names no host)"
elif [[ $binary != /* ]]; then
  binary=$start_dir/$binary
fi
[ -x "$binary" ] || fail "$binary is not an executable"

install -D -m 0755 "$binary" "$bin"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
sed "s#^ExecStart=/usr/local/bin/weft #ExecStart=$prefix/bin/weft #" dist/systemd/weft.service >"$tmp"
grep -q "^ExecStart=$prefix/bin/weft daemon --stay\$" "$tmp" ||
  fail "dist/systemd/weft.service has no ExecStart=/usr/local/bin/weft daemon --stay line to adapt"
install -D -m 0644 "$tmp" "$unit"
echo "installed $bin ($("$bin" --version))"
echo "installed $unit"
[ -n "$destdir" ] && exit 0

if systemd_here; then
  systemctl daemon-reload
  if systemctl is-active --quiet weft.service; then
    echo "the service runs the previous weft: sudo systemctl restart weft"
  else
    echo "to run the host agent as a service (started at boot, logs in journalctl -u weft):"
    echo "    sudo systemctl enable --now weft"
  fi
else
  echo "systemd does not run here: without the service, weft commands start the agent on demand"
fi
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "note: $prefix/bin is not on your PATH" ;;
esac
if [ -n "${SUDO_USER:-}" ] && [ "$prefix" != /usr/local ] && [ "$prefix" != /usr ]; then
  echo "note: sudo finds only what is on its secure_path: sudo $prefix/bin/weft ..."
fi
