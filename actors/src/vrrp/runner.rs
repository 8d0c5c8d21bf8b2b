//! Runs the VRRP instances of one director's configuration until SIGTERM/SIGINT, then
//! stops them gracefully (priority-0 adverts, VIPs removed). Used by `hanode vrrp`.

use super::actor::{InstanceActor, Stop};
use super::io::{self, Addresses, GarpSender, VrrpSocket};
use super::setup;
use actix::prelude::*;
use ha_config::Config;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
    #[error("vrrp_instance {instance}: {source}")]
    Io {
        instance: String,
        #[source]
        source: io::IoError,
    },
}

/// Starts one actor per instance of `config` (must run inside an actix System).
pub fn start(config: &Config) -> Result<Vec<Addr<InstanceActor>>, RunError> {
    let addrs = Addresses::open().map_err(|source| RunError::Io {
        instance: "(netlink)".into(),
        source,
    })?;
    let mut started = Vec::new();
    for inst in &config.instances {
        let io_err = |source| RunError::Io {
            instance: inst.name.clone(),
            source,
        };
        let ifc = io::iface(&inst.interface).map_err(io_err)?;
        let spec = setup::spec(&config.global, inst, ifc.primary_v4)?;
        let socket = VrrpSocket::open(&ifc, spec.src, spec.multicast).map_err(io_err)?;
        let garp = GarpSender::open(&ifc).map_err(io_err)?;
        let actor = InstanceActor::new(spec, ifc, socket, addrs.clone(), garp, None);
        started.push(actor.start());
    }
    Ok(started)
}

/// Stops every instance gracefully and waits for them.
pub async fn stop(actors: &[Addr<InstanceActor>]) {
    for a in actors {
        let _ = a.send(Stop).await;
    }
    // Each answer came after its VIPs were removed; give the last adverts a moment.
    actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
}
