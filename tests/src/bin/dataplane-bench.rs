//! Data-plane benchmark: full sync of N services x D destinations from empty, one weight
//! change, one service add, and a full re-read, for each backend. nftables runs in a
//! throwaway namespace on this host; IPVS inside the qemu VM (TCG: much slower than a
//! real CPU, so the nftables run inside the same VM is printed too, for the ratio).
//!
//! cargo build --release --workspace --bins && target/release/dataplane-bench [N] [D]

use e2e::netns::Netns;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = args.first().map(String::as_str).unwrap_or("10000");
    let d = args.get(1).map(String::as_str).unwrap_or("4");
    let lb_sync = e2e::bin_dir().join("lb-sync");

    println!("== nftables on the host ({n} x {d})");
    {
        let ns = Netns::new("bench");
        ns.must(&["link", "add", "veth0", "type", "veth", "peer", "name", "veth1"]);
        ns.must(&["addr", "add", "198.18.0.250/15", "dev", "veth0"]);
        ns.must(&["link", "set", "veth0", "up"]);
        ns.must(&["link", "set", "veth1", "up"]);
        let o = ns
            .command(&lb_sync.to_string_lossy())
            .args(["--backend", "nftables", "bench", n, d])
            .output()
            .expect("lb-sync");
        print!("{}", String::from_utf8_lossy(&o.stdout));
        eprint!("{}", String::from_utf8_lossy(&o.stderr));
    }

    if let Some(why) = e2e::vm::unavailable() {
        println!("== IPVS: skipped ({why})");
        return;
    }
    println!("== IPVS and nftables inside the qemu VM (TCG) ({n} x {d})");
    let script = format!(
        "ip link add veth0 type veth peer name veth1 2>/dev/null; \
         lb-sync --backend ipvs bench {n} {d}; \
         nft --version >/dev/null 2>&1 && lb-sync --backend nftables bench {n} {d} || echo '(no nft in the VM)'\n"
    );
    match e2e::vm::run(&script, &[], Duration::from_secs(1800)) {
        Ok(out) => print!("{out}"),
        Err(e) => println!("VM failed: {e}"),
    }
}
