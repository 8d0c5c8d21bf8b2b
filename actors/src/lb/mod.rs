//! The data plane: the desired load-balancing table (from config and checker verdicts),
//! the diff against what the kernel has, and the backends that program the kernel.
//!
//! - [`model`]: the table (services, destinations), the same for every backend.
//! - [`desired`]: config + checker outcome -> services.
//! - [`diff`]: `(desired, actual) -> [ops]`, minimal and ordered.
//! - [`kernel`]: the [`kernel::KernelLb`] trait and an in-memory fake.
//! - [`ipvs`]: IPVS over generic netlink.
//! - [`nft`]: nftables (netdev `fwd` for DR, `dnat` for NAT) for kernels without IPVS.
//! - [`sync`]: the actor that keeps the kernel equal to the desired table.
//! - [`syncd`]: IPVS's connection sync daemon (`lvs_sync_daemon`): which runs when.
//! - [`mod@print`]: `ipvsadm -Ln` layout.
//! - [`backend`]: IPVS when the kernel has it, else nftables.

pub mod backend;
pub mod desired;
pub mod diff;
pub mod flows;
pub mod flowsync;
pub mod ipvs;
pub mod kernel;
pub mod model;
pub mod nft;
pub mod nl_io;
pub mod print;
pub mod sync;
pub mod syncd;
