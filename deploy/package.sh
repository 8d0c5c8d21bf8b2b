#!/usr/bin/env bash
# Builds the Debian package of hanode and hactl: target/debian/hanode_VERSION_ARCH.deb.
#
#   deploy/package.sh            builds the release binaries and packages them (what you
#                                install)
#   deploy/package.sh dev        packages the debug binaries already built, building nothing
#                                (the suite's package test, run by cargo test)
#
# Needs cargo-deb (`cargo install cargo-deb`; tests/run.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-release}"
if [ "$profile" = release ]; then
  cargo build --release -p hanode -p ha-config --bins
  bin=target/release
else
  bin=target/debug
  for b in hanode hactl; do
    [ -x "$bin/$b" ] || { echo "package.sh: no $bin/$b (cargo build --workspace --bins)" >&2; exit 1; }
  done
fi
# Man pages and completions, from the binaries' own definitions (clap).
out=target/package
rm -rf "$out"
mkdir -p "$out/man1" "$out/man8" "$out/completions"
"$bin/hactl" man --out "$out/man1" > /dev/null
"$bin/hanode" man --out "$out/man8" > /dev/null
"$bin/hactl" completions bash > "$out/completions/hactl"
"$bin/hactl" completions zsh > "$out/completions/_hactl"
"$bin/hactl" completions fish > "$out/completions/hactl.fish"
cargo deb -p hanode --no-build --profile "$profile" "${@:2}"
