#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what the tests need
# (Debian packages, as root), then runs formatting, lints and every test in the workspace.
set -euo pipefail
# `grep -q` in a pipeline under pipefail can fail on a match: it exits at the first match,
# and a writer that prints line by line (ip does) then dies of SIGPIPE. This reads it all.
has_line() { grep "$@" >/dev/null; }
cd "$(dirname "$0")/.."

# The lab (`--deps-only`, the README's main job) needs nftables (its data plane on a kernel
# without IPVS), iproute2 (namespaces, veth, bridge) and curl (the seed's tests).
# The suite also needs keepalived: interop peer and `keepalived -t` reference; its package
# also ships the sample configurations the parser is tested on.
# qemu-system-x86/linux-image-amd64/busybox-static/ipvsadm: the IPVS test boots Debian's
# kernel (this machine's has no IPVS) and checks our table with ipvsadm; binutils: strip;
# systemd: `systemd-analyze verify` of the unit; man-db: `man -l` on the generated pages;
# ethtool: the chaos lab's link emulator relays frames as read, so the lab's interfaces
# leave checksums and segmentation to the kernel, not the device.
lab_packages=(nftables iproute2 curl)
suite_packages=(keepalived dnsmasq-base python3-aiosmtpd qemu-system-x86 linux-image-amd64 busybox-static ipvsadm binutils xz-utils systemd man-db ethtool)
packages=("${lab_packages[@]}")
# `--deps-only`: install what the lab needs, run nothing (no qemu, no kernel image).
[ "${1:-}" = "--deps-only" ] || packages+=("${suite_packages[@]}")
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | has_line "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing: ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ "${1:-}" = "--deps-only" ] && exit 0

# cargo-deb builds the Debian package (tests/package_deb.rs, deploy/package.sh).
cargo deb --version > /dev/null 2>&1 || cargo install cargo-deb --version 3.8.0 --locked
rustup component list --installed 2>/dev/null | has_line '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | has_line '^clippy' || rustup component add clippy

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests run the hanode and hactl binaries from the target directory.
cargo build --workspace --bins
cargo test --workspace
