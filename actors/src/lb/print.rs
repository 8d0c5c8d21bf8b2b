//! A table in `ipvsadm -Ln` layout, so operators read it the way they always have.

use super::model::Table;
use std::fmt::Write;

pub fn ipvsadm_ln(table: &Table) -> String {
    let mut s = String::new();
    s.push_str("Prot LocalAddress:Port Scheduler Flags\n");
    s.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    for (key, svc) in table {
        let mut line = format!("{key}");
        // ipvsadm separates protocol and address by two spaces.
        if let Some((proto, rest)) = line.split_once(' ') {
            line = format!("{proto}  {rest}");
        }
        let _ = write!(s, "{line} {}", svc.spec.sched);
        if let Some(p) = svc.spec.persistence {
            let _ = write!(s, " persistent {}", p.timeout);
            let full = if key.is_v6() { 128 } else { 32 };
            if p.prefix != full {
                if key.is_v6() {
                    let _ = write!(s, " mask {}", p.prefix);
                } else {
                    let bits = u32::MAX.checked_shl(32 - u32::from(p.prefix)).unwrap_or(0);
                    let _ = write!(s, " mask {}", std::net::Ipv4Addr::from(bits));
                }
            }
        }
        if svc.spec.ops {
            s.push_str(" ops");
        }
        let flags = sched_flag_names(&svc.spec);
        if !flags.is_empty() {
            let _ = write!(s, " ({})", flags.join(","));
        }
        s.push('\n');
        for (d, spec) in &svc.dests {
            let fwd = match spec.fwd {
                ha_config::model::Forwarding::Nat => "Masq",
                ha_config::model::Forwarding::Dr => "Route",
                ha_config::model::Forwarding::Tun => "Tunnel",
            };
            let _ = writeln!(
                s,
                "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                d.to_string(),
                fwd,
                spec.weight,
                0,
                0
            );
        }
    }
    s
}

/// The scheduler flags as `ipvsadm -Ln` names them after the scheduler.
fn sched_flag_names(spec: &crate::lb::model::SvcSpec) -> Vec<String> {
    use crate::lb::model::{SCHED_FALLBACK, SCHED_FLAG_3, SCHED_PORT};
    let prefix = match spec.sched.as_str() {
        "sh" | "mh" => Some(spec.sched.as_str()),
        _ => None,
    };
    [
        (SCHED_FALLBACK, "fallback", 1),
        (SCHED_PORT, "port", 2),
        (SCHED_FLAG_3, "", 3),
    ]
    .into_iter()
    .filter(|(bit, _, _)| spec.sched_flags & bit != 0)
    .map(|(_, name, n)| match prefix {
        Some(p) if !name.is_empty() => format!("{p}-{name}"),
        _ => format!("flag-{n}"),
    })
    .collect()
}
