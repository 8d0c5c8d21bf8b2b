//! Receive checks an instance applies to a parsed advertisement for its VRID (RFC 3768
//! 7.1, RFC 5798 7.1, in keepalived's order). Each rejection has its own counter.

use super::packet::{Advert, Auth, Version, TTL};
use std::net::IpAddr;

/// What an instance expects of the adverts for its VRID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RxPolicy {
    pub version: Version,
    pub auth: Auth,
    pub interval_cs: u16,
    pub vips: Vec<IpAddr>,
    /// keepalived's `vrrp_skip_check_adv_addr`: check the address list only when the
    /// advert comes from another master than the last one.
    pub skip_check_adv_addr: bool,
    pub unicast: bool,
    /// Unicast peers: an allow-list. Adverts from anyone else are refused, whether or
    /// not `vrrp_check_unicast_src` is set (keepalived checks only with it; a director
    /// must not let any host on the LAN take its VIP).
    pub unicast_peers: Vec<IpAddr>,
}

/// How the advert arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxMeta {
    pub src: IpAddr,
    /// TTL / hop limit, when the socket reports it.
    pub ttl: Option<u8>,
    pub dst_multicast: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Reject {
    #[error("TTL/hop limit {0}, expected 255")]
    Ttl(u8),
    #[error("VRRP version {got}, expected {want}")]
    Version { got: u8, want: u8 },
    #[error("authentication type {got}, expected {want}")]
    AuthType { got: u8, want: u8 },
    #[error("wrong password")]
    AuthFailure,
    #[error("advertisement interval {theirs_cs} cs, ours {mine_cs} cs")]
    Interval { mine_cs: u16, theirs_cs: u16 },
    #[error("{got} addresses, expected {want}")]
    AddrCount { got: usize, want: usize },
    #[error("address list differs from ours")]
    AddrList,
    #[error("expected a {} packet", if *.unicast { "unicast" } else { "multicast" })]
    WrongCast { unicast: bool },
    #[error("source is not a unicast peer")]
    UnknownPeer,
}

/// Checks `a` (already parsed, VRID matched) against `p`. `last_master` is the source of
/// the last accepted advert.
pub fn check(p: &RxPolicy, a: &Advert, m: &RxMeta, last_master: Option<IpAddr>) -> Result<(), Reject> {
    if !p.unicast {
        if let Some(ttl) = m.ttl {
            if ttl != TTL {
                return Err(Reject::Ttl(ttl));
            }
        }
    }
    if a.version != p.version {
        return Err(Reject::Version {
            got: a.version.number(),
            want: p.version.number(),
        });
    }
    if p.version == Version::V2 {
        if a.auth.type_number() != p.auth.type_number() || matches!(a.auth, Auth::Ah | Auth::Unknown(_)) {
            return Err(Reject::AuthType {
                got: a.auth.type_number(),
                want: p.auth.type_number(),
            });
        }
        if let (Auth::Pass(theirs), Auth::Pass(ours)) = (&a.auth, &p.auth) {
            // Constant time: the comparison must not tell how many bytes matched.
            let diff = theirs
                .iter()
                .zip(ours.iter())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y));
            if diff != 0 {
                return Err(Reject::AuthFailure);
            }
        }
        if a.interval_cs != p.interval_cs {
            return Err(Reject::Interval {
                mine_cs: p.interval_cs,
                theirs_cs: a.interval_cs,
            });
        }
    }
    let check_addrs = !p.skip_check_adv_addr || last_master != Some(m.src);
    if check_addrs {
        if a.addrs.len() != p.vips.len() {
            return Err(Reject::AddrCount {
                got: a.addrs.len(),
                want: p.vips.len(),
            });
        }
        if p.vips.iter().any(|v| !a.addrs.contains(v)) {
            return Err(Reject::AddrList);
        }
    }
    if m.dst_multicast == p.unicast {
        return Err(Reject::WrongCast { unicast: p.unicast });
    }
    if p.unicast && !p.unicast_peers.contains(&m.src) {
        return Err(Reject::UnknownPeer);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn policy() -> RxPolicy {
        RxPolicy {
            version: Version::V2,
            auth: Auth::pass("1111"),
            interval_cs: 100,
            vips: vec![ip("198.18.116.134")],
            skip_check_adv_addr: false,
            unicast: false,
            unicast_peers: vec![],
        }
    }

    fn advert() -> Advert {
        Advert {
            version: Version::V2,
            vrid: 51,
            priority: 100,
            interval_cs: 100,
            auth: Auth::pass("1111"),
            addrs: vec![ip("198.18.116.134")],
            checksum: 0,
        }
    }

    fn meta() -> RxMeta {
        RxMeta {
            src: ip("198.18.116.130"),
            ttl: Some(255),
            dst_multicast: true,
        }
    }

    #[test]
    fn each_rule_rejects_with_its_own_cause() {
        let p = policy();
        assert_eq!(check(&p, &advert(), &meta(), None), Ok(()));
        let m = RxMeta {
            ttl: Some(64),
            ..meta()
        };
        assert_eq!(check(&p, &advert(), &m, None), Err(Reject::Ttl(64)));
        let a = Advert {
            auth: Auth::pass("2222"),
            ..advert()
        };
        assert_eq!(check(&p, &a, &meta(), None), Err(Reject::AuthFailure));
        let a = Advert {
            auth: Auth::None,
            ..advert()
        };
        assert_eq!(
            check(&p, &a, &meta(), None),
            Err(Reject::AuthType { got: 0, want: 1 })
        );
        let a = Advert {
            interval_cs: 200,
            ..advert()
        };
        assert_eq!(
            check(&p, &a, &meta(), None),
            Err(Reject::Interval {
                mine_cs: 100,
                theirs_cs: 200
            })
        );
        let a = Advert {
            addrs: vec![ip("198.18.116.135")],
            ..advert()
        };
        assert_eq!(check(&p, &a, &meta(), None), Err(Reject::AddrList));
        let a = Advert {
            addrs: vec![],
            ..advert()
        };
        assert_eq!(
            check(&p, &a, &meta(), None),
            Err(Reject::AddrCount { got: 0, want: 1 })
        );
        let m = RxMeta {
            dst_multicast: false,
            ..meta()
        };
        assert_eq!(
            check(&p, &advert(), &m, None),
            Err(Reject::WrongCast { unicast: false })
        );
    }

    #[test]
    fn skip_check_adv_addr_checks_only_a_new_master() {
        let p = RxPolicy {
            skip_check_adv_addr: true,
            ..policy()
        };
        let a = Advert {
            addrs: vec![],
            ..advert()
        };
        assert!(check(&p, &a, &meta(), Some(ip("198.18.116.130"))).is_ok());
        assert!(check(&p, &a, &meta(), Some(ip("198.18.116.135"))).is_err());
    }

    #[test]
    fn unicast_peers_and_ttl() {
        let p = RxPolicy {
            unicast: true,
            unicast_peers: vec![ip("198.18.116.135")],
            ..policy()
        };
        let m = RxMeta {
            ttl: Some(63),
            dst_multicast: false,
            ..meta()
        };
        assert_eq!(check(&p, &advert(), &m, None), Err(Reject::UnknownPeer));
        let m = RxMeta {
            src: ip("198.18.116.135"),
            ..m
        };
        assert_eq!(check(&p, &advert(), &m, None), Ok(()), "unicast: any TTL");
    }
}
