//! nf_tables rule expressions (pure): the few our service chains are made of, and their
//! netlink encoding (`NFTA_RULE_EXPRESSIONS`), so that a service added, removed or
//! re-laid out goes to the kernel as one netlink batch instead of through libnftables
//! (which reads the whole ruleset back before every command: ~14 ms at 10,000 services).
//!
//! Each [`Rule`] carries both forms: the nft text (what `nft` would be given, used when
//! netlink is off and in tests) and the expressions. The registers are chosen as nft
//! chooses them for IPv4; for IPv6 the flow key (24 bytes) and its data are kept apart
//! (nft 1.0.6 asserts on those two rules, so IPv6 affinity only works through netlink).

/// Registers (`enum nft_registers`): the verdict, the 16-byte ones, the 4-byte ones.
pub const REG_VERDICT: u32 = 0;
pub const REG_1: u32 = 1;
pub const REG_2: u32 = 2;
pub const REG_3: u32 = 3;
/// `NFT_REG32_00`: 4-byte register n is `REG32_00 + n` (REG_1 spans 0..=3).
pub const REG32_00: u32 = 8;

/// Verdict codes.
pub const NF_DROP: i32 = 0;
pub const NFT_JUMP: i32 = -3;

/// `enum nft_meta_keys`.
const META_PROTOCOL: u32 = 1;
const META_MARK: u32 = 3;
const META_NFPROTO: u32 = 15;
/// `NFT_CT_MARK`.
const CT_MARK: u32 = 3;

/// Where a payload load reads from (`enum nft_payload_bases`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    Network = 1,
    Transport = 2,
}

/// What an immediate loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Value(Vec<u8>),
    Verdict(i32, Option<String>),
}

/// One expression of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    Immediate {
        dreg: u32,
        data: Data,
    },
    /// `meta mark` (or `ct mark`, `ct`: true) into `dreg`.
    MarkLoad {
        ct: bool,
        dreg: u32,
    },
    MarkSet {
        ct: bool,
        sreg: u32,
    },
    /// `meta protocol` (netdev) or `meta nfproto` (inet), into `dreg`.
    Family {
        nfproto: bool,
        dreg: u32,
    },
    Cmp {
        sreg: u32,
        neq: bool,
        data: Vec<u8>,
    },
    Payload {
        base: Base,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// `dreg = (sreg & mask) ^ 0`.
    Mask {
        reg: u32,
        mask: Vec<u8>,
    },
    Numgen {
        dreg: u32,
        modulus: u32,
        offset: u32,
    },
    Jhash {
        sreg: u32,
        dreg: u32,
        len: u32,
        modulus: u32,
        seed: u32,
        offset: u32,
    },
    /// `sreg map @set` into `dreg` (no element: the rule stops here).
    Lookup {
        set: String,
        sreg: u32,
        dreg: u32,
    },
    /// `update @set { key : data }` with a timeout.
    Update {
        set: String,
        sreg_key: u32,
        sreg_data: u32,
        timeout_ms: u64,
    },
}

/// A rule: its nft text and its expressions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub text: String,
    pub exprs: Vec<Expr>,
}

/// A netlink attribute (length, type, value, padded to 4 bytes).
pub fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(value.len() + 8);
    push_nla(&mut b, kind, value);
    b
}

/// Appends a netlink attribute to `b`.
pub fn push_nla(b: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(value.len() + 4).unwrap_or(u16::MAX);
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(value);
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
}

/// A nested attribute (`NLA_F_NESTED`).
pub fn nest(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    nla(kind | 0x8000, &parts.concat())
}

fn be32(kind: u16, v: u32) -> Vec<u8> {
    nla(kind, &v.to_be_bytes())
}

/// A NUL-terminated string attribute.
pub fn string(kind: u16, s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    nla(kind, &v)
}

/// `NFTA_DATA_VALUE` (1) or `NFTA_DATA_VERDICT` (2: code 1, chain 2), nested in `kind`.
pub fn data(kind: u16, d: &Data) -> Vec<u8> {
    match d {
        Data::Value(v) => nest(kind, &[nla(1, v)]),
        Data::Verdict(code, chain) => {
            let mut parts = vec![nla(1, &code.to_be_bytes())];
            if let Some(c) = chain {
                parts.push(string(2, c));
            }
            nest(kind, &[nest(2, &parts)])
        }
    }
}

impl Expr {
    /// `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA }`.
    pub fn encode(&self) -> Vec<u8> {
        let (name, attrs): (&str, Vec<Vec<u8>>) = match self {
            Expr::Immediate { dreg, data: d } => ("immediate", vec![be32(1, *dreg), data(2, d)]),
            Expr::MarkLoad { ct: false, dreg } => ("meta", vec![be32(2, META_MARK), be32(1, *dreg)]),
            Expr::MarkLoad { ct: true, dreg } => ("ct", vec![be32(2, CT_MARK), be32(1, *dreg)]),
            Expr::MarkSet { ct: false, sreg } => ("meta", vec![be32(2, META_MARK), be32(3, *sreg)]),
            Expr::MarkSet { ct: true, sreg } => ("ct", vec![be32(2, CT_MARK), be32(4, *sreg)]),
            Expr::Family { nfproto, dreg } => {
                let key = if *nfproto { META_NFPROTO } else { META_PROTOCOL };
                ("meta", vec![be32(2, key), be32(1, *dreg)])
            }
            Expr::Cmp { sreg, neq, data: d } => (
                "cmp",
                vec![
                    be32(1, *sreg),
                    be32(2, u32::from(*neq)),
                    data(3, &Data::Value(d.clone())),
                ],
            ),
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => (
                "payload",
                vec![
                    be32(1, *dreg),
                    be32(2, *base as u32),
                    be32(3, *offset),
                    be32(4, *len),
                ],
            ),
            Expr::Mask { reg, mask } => (
                "bitwise",
                vec![
                    be32(1, *reg),
                    be32(2, *reg),
                    be32(3, mask.len() as u32),
                    data(4, &Data::Value(mask.clone())),
                    data(5, &Data::Value(vec![0; mask.len()])),
                ],
            ),
            Expr::Numgen {
                dreg,
                modulus,
                offset,
            } => (
                "numgen",
                // NFTA_NG_TYPE 3: NFT_NG_INCREMENTAL (0).
                vec![be32(1, *dreg), be32(2, *modulus), be32(3, 0), be32(4, *offset)],
            ),
            Expr::Jhash {
                sreg,
                dreg,
                len,
                modulus,
                seed,
                offset,
            } => (
                "hash",
                // NFTA_HASH_TYPE 7: NFT_HASH_JENKINS (0).
                vec![
                    be32(1, *sreg),
                    be32(2, *dreg),
                    be32(3, *len),
                    be32(4, *modulus),
                    be32(5, *seed),
                    be32(6, *offset),
                    be32(7, 0),
                ],
            ),
            Expr::Lookup { set, sreg, dreg } => (
                "lookup",
                // NFTA_LOOKUP_SET 1, _SREG 2, _DREG 3.
                vec![string(1, set), be32(2, *sreg), be32(3, *dreg)],
            ),
            Expr::Update {
                set,
                sreg_key,
                sreg_data,
                timeout_ms,
            } => (
                "dynset",
                // NFTA_DYNSET_OP 3: NFT_DYNSET_OP_UPDATE (1); TIMEOUT 6 in ms.
                vec![
                    string(1, set),
                    be32(3, 1),
                    be32(4, *sreg_key),
                    be32(5, *sreg_data),
                    nla(6, &timeout_ms.to_be_bytes()),
                ],
            ),
        };
        nest(1, &[string(1, name), nest(2, &attrs)])
    }
}

/// `NFTA_RULE_EXPRESSIONS` of a rule.
pub fn expressions(exprs: &[Expr]) -> Vec<u8> {
    nest(4, &exprs.iter().map(Expr::encode).collect::<Vec<_>>())
}

/// The 4-byte register after `n` bytes of a key that starts at `REG_1`.
pub fn reg32_after(bytes: u32) -> u32 {
    REG32_00 + bytes / 4
}

/// The family check nft puts before an IP header load: `meta protocol ip` (netdev) or
/// `meta nfproto ipv4` (inet), as two expressions.
pub fn family_check(nfproto: bool, v6: bool) -> [Expr; 2] {
    let data = match (nfproto, v6) {
        (true, false) => vec![2],
        (true, true) => vec![10],
        (false, false) => 0x0800u16.to_be_bytes().to_vec(),
        (false, true) => 0x86ddu16.to_be_bytes().to_vec(),
    };
    [
        Expr::Family { nfproto, dreg: REG_1 },
        Expr::Cmp {
            sreg: REG_1,
            neq: false,
            data,
        },
    ]
}

/// `jump chain` as the rule's last expression.
pub fn jump(chain: &str) -> Expr {
    Expr::Immediate {
        dreg: REG_VERDICT,
        data: Data::Verdict(NFT_JUMP, Some(chain.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_compare_encodes_as_nft_sends_it() {
        // `meta mark != 0x00020000`, bytes as `nft --debug=mnl` shows them: a list
        // element with the name "cmp" and data { sreg 1, op neq (1), data { value } }.
        let e = Expr::Cmp {
            sreg: REG_1,
            neq: true,
            data: 0x0002_0000u32.to_ne_bytes().to_vec(),
        };
        let bytes = e.encode();
        let want: Vec<u8> = [
            &[44u8, 0, 1, 0x80][..],
            &[8, 0, 1, 0, b'c', b'm', b'p', 0],
            &[32, 0, 2, 0x80],
            &[8, 0, 1, 0, 0, 0, 0, 1],
            &[8, 0, 2, 0, 0, 0, 0, 1],
            &[12, 0, 3, 0x80, 8, 0, 1, 0],
            &0x0002_0000u32.to_ne_bytes(),
        ]
        .concat();
        assert_eq!(bytes, want);
    }

    #[test]
    fn verdicts_and_timeouts_are_big_endian() {
        let j = jump("pick").encode();
        // code -3 (NFT_JUMP), then the chain name with its NUL.
        let code = (-3i32).to_be_bytes();
        assert!(j.windows(4).any(|w| w == code));
        assert!(j.windows(5).any(|w| w == b"pick\0"));
        let u = Expr::Update {
            set: "flows4".into(),
            sreg_key: REG_1,
            sreg_data: REG_2,
            timeout_ms: 900_000,
        }
        .encode();
        assert!(u.windows(8).any(|w| w == 900_000u64.to_be_bytes()));
        assert_eq!(reg32_after(4), 9);
        assert_eq!(reg32_after(16), 12);
    }
}
