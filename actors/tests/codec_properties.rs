//! Property tests of the VRRP codec: emit/parse round trip; random bytes never panic.

use actors::vrrp::ipv4;
use actors::vrrp::packet::{Advert, Auth, Version};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn advert_v4() -> impl Strategy<Value = (Advert, IpAddr)> {
    (
        any::<bool>(),
        any::<u8>(),
        any::<u8>(),
        prop::collection::vec(any::<u32>(), 0..20),
        prop::option::of(prop::array::uniform8(any::<u8>())),
        1u16..=255,
        1u16..=4095,
        any::<u32>(),
    )
        .prop_map(|(v3, vrid, priority, addrs, pass, secs, cs, src)| {
            let version = if v3 { Version::V3 } else { Version::V2 };
            let a = Advert {
                version,
                vrid,
                priority,
                interval_cs: if v3 { cs } else { secs * 100 },
                auth: match (v3, pass) {
                    (false, Some(p)) => Auth::Pass(p),
                    _ => Auth::None,
                },
                addrs: addrs.into_iter().map(|a| IpAddr::V4(Ipv4Addr::from(a))).collect(),
                checksum: 0,
            };
            (a, IpAddr::V4(Ipv4Addr::from(src)))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn v2_and_v3_ipv4_round_trip((a, src) in advert_v4()) {
        let dst = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
        let bytes = a.emit(src, dst).unwrap();
        let mut back = Advert::parse(&bytes, src, dst).unwrap();
        back.checksum = 0;
        prop_assert_eq!(back, a);
    }

    #[test]
    fn v3_ipv6_round_trip(addrs in prop::collection::vec(any::<u128>(), 0..10), prio in any::<u8>(), cs in 1u16..=4095) {
        let a = Advert {
            version: Version::V3, vrid: 7, priority: prio, interval_cs: cs, auth: Auth::None,
            addrs: addrs.into_iter().map(|a| IpAddr::V6(Ipv6Addr::from(a))).collect(), checksum: 0,
        };
        let src: IpAddr = "fe80::1".parse().unwrap();
        let dst: IpAddr = "ff02::12".parse().unwrap();
        let bytes = a.emit(src, dst).unwrap();
        let mut back = Advert::parse(&bytes, src, dst).unwrap();
        back.checksum = 0;
        prop_assert_eq!(back, a);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), v6 in any::<bool>()) {
        let (src, dst): (IpAddr, IpAddr) = if v6 {
            ("fe80::1".parse().unwrap(), "ff02::12".parse().unwrap())
        } else {
            ("198.18.116.130".parse().unwrap(), "224.0.0.18".parse().unwrap())
        };
        let _ = Advert::parse(&bytes, src, dst);
        if let Ok((_, payload)) = ipv4::split(&bytes) {
            let _ = Advert::parse(payload, src, dst);
        }
    }

    #[test]
    fn any_single_bit_flip_is_detected(bit in 0usize..160) {
        let src: IpAddr = "198.18.116.130".parse().unwrap();
        let dst: IpAddr = "224.0.0.18".parse().unwrap();
        let a = Advert { version: Version::V2, vrid: 51, priority: 100, interval_cs: 100,
            auth: Auth::pass("1111"), addrs: vec!["198.18.116.134".parse().unwrap()], checksum: 0 };
        let mut bytes = a.emit(src, dst).unwrap();
        bytes[bit / 8] ^= 1 << (bit % 8);
        // Either refused, or (a flip in version/type/count) refused for another reason.
        prop_assert!(Advert::parse(&bytes, src, dst).is_err());
    }
}
