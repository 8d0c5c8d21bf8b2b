//! Which kernel programs the table: IPVS when the kernel has it, else nftables; or the
//! one the operator forces.

use super::kernel::{KernelError, KernelLb};
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    #[default]
    Auto,
    Ipvs,
    Nftables,
}

impl std::str::FromStr for Choice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Choice::Auto),
            "ipvs" => Ok(Choice::Ipvs),
            "nftables" | "nft" => Ok(Choice::Nftables),
            _ => Err(format!("unknown backend {s:?} (auto, ipvs, nftables)")),
        }
    }
}

/// Opens the backend. `ingress`: devices DR traffic arrives on besides those leading to
/// the real servers (nftables only).
pub fn open(choice: Choice, ingress: BTreeSet<String>) -> Result<Box<dyn KernelLb>, KernelError> {
    match choice {
        Choice::Ipvs => Ok(Box::new(super::ipvs::Ipvs::open()?)),
        Choice::Nftables => nftables(ingress),
        Choice::Auto => match super::ipvs::Ipvs::open() {
            Ok(k) => Ok(Box::new(k)),
            Err(e) => {
                tracing::info!("IPVS not usable ({e}); using nftables");
                nftables(ingress)
            }
        },
    }
}

fn nftables(ingress: BTreeSet<String>) -> Result<Box<dyn KernelLb>, KernelError> {
    if !super::nft::available() {
        return Err(KernelError::other(
            "neither IPVS nor nftables is usable here (is `nft` installed, are we root?)",
        ));
    }
    Ok(Box::new(super::nft::NftKernel::new(ingress)))
}
