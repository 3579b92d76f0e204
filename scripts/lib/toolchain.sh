# shellcheck shell=bash
# Sourced (not run) by scripts/demo.sh, test.sh and install.sh, from the repository's root:
# who builds weft, with which cargo, and the system packages the build needs.
#
# Run under sudo by a user, the scripts build as that user (so target/ and ~/.cargo stay
# theirs) with the user's own toolchain — sudo resets PATH, so rustup's ~/.cargo/bin is not
# on it — and only the namespace work runs as root. Run as root directly (CI, a root shell),
# they build as root with root's toolchain.
#
#   weft_build_user        sets WEFT_USER, WEFT_HOME (who builds) and WEFT_RUST (Cargo.toml's
#                          rust-version)
#   weft_find_cargo        sets WEFT_CARGO_DIR (a directory with cargo and a new enough rustc)
#                          or explains how to get one and fails
#   weft_need_packages     installs missing apt packages (one notice line) or says what to install
#   weft_build_packages    the packages building weft needs (a C compiler for bundled SQLite,
#                          protoc for the etcd client)
#   weft_as_user CMD...    runs CMD as the building user, with their HOME and cargo on PATH
#   weft_cargo ARGS...     cargo ARGS as the building user
#   weft_give_back_target  hands a target/ root left behind (an older script) to the user
#   weft_build_release     cargo build --release, with progress (or a notice when not a terminal)
#   weft_need_target       adds the Rust target .cargo/config.toml builds for (musl), if missing,
#                          else falls back to the machine's own (weft_fallback_host)
#   weft_build_target      prints that target tuple
#   weft_release_binary    prints where that build puts weft: target/<tuple>/release/weft

# The PATH commands run with besides cargo's own directory: sudo's secure_path, which has
# what a build needs (cc, ld) on every distribution.
WEFT_SYSTEM_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

weft_say() { echo "$*" >&2; }

# The rust-version Cargo.toml declares (the oldest rustc that builds weft).
weft_rust_version() {
  sed -n 's/^rust-version *= *"\([0-9][0-9.]*\)".*/\1/p' Cargo.toml | head -n 1
}

# Whether dotted version $1 >= $2 (missing parts count as 0: 1.95 = 1.95.0).
weft_version_ge() {
  local IFS=. i x y
  # shellcheck disable=SC2206 # splitting on dots is the point
  local -a a=($1) b=($2)
  for i in 0 1 2; do
    x=${a[i]:-0} y=${b[i]:-0}
    if ((10#$x > 10#$y)); then return 0; fi
    if ((10#$x < 10#$y)); then return 1; fi
  done
  return 0
}

weft_build_user() {
  WEFT_RUST=$(weft_rust_version)
  if [ -z "$WEFT_RUST" ]; then
    weft_say "error: no rust-version in Cargo.toml (run this from a weft checkout)"
    return 1
  fi
  WEFT_USER=$(id -un)
  WEFT_HOME=${HOME:-/root}
  if [ "$(id -u)" = 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    local entry
    if ! entry=$(getent passwd "$SUDO_USER"); then
      weft_say "error: sudo says you are $SUDO_USER, but there is no such user"
      return 1
    fi
    WEFT_USER=$SUDO_USER
    WEFT_HOME=$(echo "$entry" | cut -d: -f6)
    # A checkout the user cannot write (cloned by root, say) is built by root, as before.
    if ! weft_as_user test -w .; then
      weft_say "note: $SUDO_USER cannot write to $(pwd): building as root"
      WEFT_USER=$(id -un)
      WEFT_HOME=${HOME:-/root}
    fi
  fi
}

# Runs "$@" as the building user: HOME theirs, PATH = cargo's directory (when found) then the
# system's, CARGO_HOME / RUSTUP_HOME / CARGO_BUILD_TARGET passed on only when set.
weft_as_user() {
  local path=$WEFT_SYSTEM_PATH
  if [ -n "${WEFT_CARGO_DIR:-}" ]; then path=$WEFT_CARGO_DIR:$path; fi
  local -a envs=(HOME="$WEFT_HOME" USER="$WEFT_USER" LOGNAME="$WEFT_USER" PATH="$path")
  if [ -n "${TERM:-}" ]; then envs+=(TERM="$TERM"); fi
  if [ -n "${CARGO_HOME:-}" ]; then envs+=(CARGO_HOME="$CARGO_HOME"); fi
  if [ -n "${RUSTUP_HOME:-}" ]; then envs+=(RUSTUP_HOME="$RUSTUP_HOME"); fi
  if [ -n "${RUSTUP_TOOLCHAIN:-}" ]; then envs+=(RUSTUP_TOOLCHAIN="$RUSTUP_TOOLCHAIN"); fi
  if [ -n "${CARGO_BUILD_TARGET:-}" ]; then envs+=(CARGO_BUILD_TARGET="$CARGO_BUILD_TARGET"); fi
  if [ "$WEFT_USER" = "$(id -un)" ]; then
    env "${envs[@]}" "$@"
  else
    sudo -u "$WEFT_USER" -- env "${envs[@]}" "$@"
  fi
}

# Where cargo may be, most specific first: what the caller named (CARGO, CARGO_HOME), the
# building user's rustup (~/.cargo/bin), the PATH this script got, the rust Docker image's.
weft_cargo_candidates() {
  if [ -n "${CARGO:-}" ]; then echo "$CARGO"; fi
  if [ -n "${CARGO_HOME:-}" ]; then echo "$CARGO_HOME/bin/cargo"; fi
  echo "$WEFT_HOME/.cargo/bin/cargo"
  command -v cargo 2>/dev/null || true
  echo /usr/local/cargo/bin/cargo
}

weft_find_cargo() {
  local cargo dir version found=() seen=" "
  WEFT_CARGO_DIR=
  while IFS= read -r cargo; do
    if [ -z "$cargo" ] || [ ! -x "$cargo" ]; then continue; fi
    dir=$(cd "$(dirname "$cargo")" && pwd)
    case $seen in *" $dir "*) continue ;; esac
    seen="$seen$dir "
    if [ ! -x "$dir/rustc" ]; then
      found+=("$dir/cargo: no rustc next to it")
      continue
    fi
    # rustc itself, as the user would run it here (rustup picks the toolchain per directory).
    version=$(WEFT_CARGO_DIR=$dir weft_as_user rustc --version 2>/dev/null | awk '{print $2}') || true
    version=${version%%-*}
    if [ -z "$version" ]; then
      found+=("$dir/cargo: its rustc does not run (rustup without a default toolchain?)")
      continue
    fi
    if weft_version_ge "$version" "$WEFT_RUST"; then
      WEFT_CARGO_DIR=$dir
      return 0
    fi
    found+=("$dir/cargo: rustc $version, too old")
  done < <(weft_cargo_candidates)

  local who="" line
  if [ "$WEFT_USER" != root ]; then who=" as $WEFT_USER (not as root)"; fi
  weft_say "error: weft needs Rust $WEFT_RUST or newer (rust-version in Cargo.toml)."
  if [ ${#found[@]} -eq 0 ]; then
    weft_say "No cargo found (looked in \$CARGO, \$CARGO_HOME/bin, $WEFT_HOME/.cargo/bin, PATH, /usr/local/cargo/bin)."
  else
    weft_say "Found:"
    for line in "${found[@]}"; do weft_say "  $line"; done
  fi
  weft_say "Distribution packages (apt's rustc/cargo) are too old. Get the current stable Rust"
  weft_say "from rustup.rs: run this$who, in a terminal:"
  weft_say ""
  if [ -x "$WEFT_HOME/.cargo/bin/rustup" ]; then
    weft_say "    rustup update stable && rustup default stable"
  else
    weft_say "    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y"
    if ! command -v curl >/dev/null; then
      weft_say ""
      weft_say "(curl first: sudo apt-get install -y curl)"
    fi
  fi
  weft_say ""
  weft_say "then run again: sudo $0${WEFT_ARGS:+ $WEFT_ARGS}"
  weft_say "(it looks in $WEFT_HOME/.cargo/bin itself: no need to change sudo's PATH)"
  return 1
}

# weft_need_packages WHY PACKAGE... : installs the packages (apt-get, as root) with one
# notice line, or says what to install and fails. Callers pass only missing ones.
weft_need_packages() {
  local why=$1
  shift
  [ $# -gt 0 ] || return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    weft_say "== installing $* ($why)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }; then
      weft_say "error: apt-get could not install $*"
      return 1
    fi
    return 0
  fi
  if command -v apt-get >/dev/null; then
    weft_say "error: missing $* ($why): sudo apt-get install -y $*"
  else
    weft_say "error: missing $* ($why): install them with your distribution's package manager (the names may differ: a C compiler and the C library's headers)"
  fi
  return 1
}

# A C compiler and the C library's headers: rusqlite builds SQLite from source (bundled), and
# rustc links through cc. protoc: etcd-client compiles etcd's gRPC definitions at build time.
weft_build_packages() {
  local need=()
  command -v cc >/dev/null || need+=(gcc)
  [ -e /usr/include/stdio.h ] || need+=(libc6-dev)
  command -v protoc >/dev/null || need+=(protobuf-compiler)
  weft_need_packages "a C compiler for weft's bundled SQLite, protoc for its etcd client" "${need[@]}" || return 1
  # A musl build (.cargo/config.toml) compiles the bundled SQLite with musl-gcc; without it,
  # the machine's own target.
  case $(weft_build_target) in
    *-musl*)
      if ! command -v musl-gcc >/dev/null && ! weft_need_packages "musl-gcc for the musl build" musl-tools; then
        weft_fallback_host "musl-gcc is missing"
      fi
      ;;
  esac
}

# The target tuple cargo builds for: CARGO_BUILD_TARGET, else .cargo/config.toml's
# `[build] target`; `host-tuple` (or none) is the machine's own.
weft_build_target() {
  local t=${CARGO_BUILD_TARGET:-}
  [ -n "$t" ] || t=$(sed -n 's/^target *= *"\(.*\)".*/\1/p' .cargo/config.toml 2>/dev/null | head -n 1)
  if [ -z "$t" ] || [ "$t" = host-tuple ]; then
    t=$(weft_as_user rustc -vV | sed -n 's/^host: *//p')
  fi
  echo "$t"
}

# The standard library of the build target, when it is not the host's: rustup installs it
# (`rustup target add`, as the building user); without rustup, says what is missing.
weft_need_target() {
  local t host libdir
  t=$(weft_build_target)
  host=$(weft_as_user rustc -vV | sed -n 's/^host: *//p')
  [ -n "$t" ] && [ "$t" != "$host" ] || return 0
  libdir=$(weft_as_user rustc --print target-libdir --target "$t" 2>/dev/null) || libdir=
  if [ -n "$libdir" ] && [ -n "$(ls -A "$libdir" 2>/dev/null)" ]; then
    return 0
  fi
  if weft_as_user sh -c 'command -v rustup' >/dev/null; then
    weft_say "== adding the Rust target $t (rustup target add $t)"
    weft_as_user rustup target add "$t" >/dev/null 2>&1 && return 0
    weft_fallback_host "rustup could not add the target $t"
    return 0
  fi
  weft_fallback_host "the Rust standard library for $t is missing (rustup target add $t)"
}

# The build falls back to the machine's own target (glibc, linked statically as well: the
# source builds for both) when the musl one cannot be had: slower start-up, same weft.
weft_fallback_host() {
  local host
  host=$(weft_as_user rustc -vV | sed -n 's/^host: *//p')
  weft_say "note: $1: building for $host instead (each command starts ~1 ms slower, see bench/README.md)"
  export CARGO_BUILD_TARGET=$host
}

weft_cargo() {
  weft_as_user cargo "$@"
}

# A target/ (or files in it) owned by root while the user builds — left by a build as root,
# an older script's — would make their build fail: hand it to them.
weft_give_back_target() {
  [ "$WEFT_USER" != "$(id -un)" ] && [ -d target ] || return 0
  if [ -n "$(find target \! -user "$WEFT_USER" -print -quit)" ]; then
    weft_say "== target/ has files of an earlier build as root: giving them to $WEFT_USER"
    find target \! -user "$WEFT_USER" -exec chown -h "$WEFT_USER:$(id -gn "$WEFT_USER")" {} +
  fi
}

# Everything before building: who, which cargo, which packages, target/ ownership.
weft_prepare_build() {
  weft_build_user && weft_find_cargo && weft_need_target && weft_build_packages && weft_give_back_target
}

weft_build_release() {
  if [ -t 2 ]; then
    weft_cargo build --release
  else
    weft_say "== building weft (release, optimised for size and speed: the first build takes a few minutes)"
    weft_cargo build --release --quiet
  fi
}

# .cargo/config.toml names the build target explicitly (so that weft is linked statically),
# and cargo then puts binaries under target/<tuple>/.
weft_release_binary() {
  local t
  t=$(weft_build_target)
  [ -n "$t" ] || return 1
  echo "target/$t/release/weft"
}
