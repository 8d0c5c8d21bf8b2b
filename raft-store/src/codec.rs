//! Encoding of everything the store persists or ships: one format-version byte, then the
//! bincode 2 encoding (standard configuration) of the value's serde form.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The version byte written first. Decoders refuse versions they do not know.
/// Version 2: proposals carry keyed deltas and the state is stored key by key (issue 20);
/// a store or a peer of version 1 is refused, not misread.
pub const FORMAT: u8 = 2;

/// Largest value the decoder accepts (a cluster config with its history fits easily).
pub const MAX_DECODE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty input: no format-version byte")]
    Empty,
    #[error("unknown format version {0} (this build reads version {FORMAT})")]
    UnknownVersion(u8),
    #[error("cannot encode: {0}")]
    Encode(String),
    #[error("cannot decode: {0}")]
    Decode(String),
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT];
    let body =
        bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode(e.to_string()))?;
    out.extend(body);
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT {
        return Err(CodecError::UnknownVersion(version));
    }
    let (value, used) =
        bincode::serde::decode_from_slice(body, config()).map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ConfigEvent, Proposal};
    use ha_config::cluster;

    fn seed_event() -> ConfigEvent {
        let text = include_str!("../../config-cli/tests/fixtures/keepalived.lvs01-master.conf");
        let (_, loaded) = cluster::load_str("seed.conf", text, &[]);
        ConfigEvent::ConfigProposed(Box::new(Proposal::new(
            loaded.cluster,
            "alice",
            "initial import",
            1_700_000_000_000,
            None,
        )))
    }

    #[test]
    fn round_trip_with_version_byte() {
        let ev = seed_event();
        let bytes = encode(&ev).unwrap();
        assert_eq!(bytes[0], FORMAT);
        let back: ConfigEvent = decode(&bytes).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn unknown_version_and_garbage_are_errors_not_panics() {
        let mut bytes = encode(&seed_event()).unwrap();
        bytes[0] = 9;
        assert!(matches!(
            decode::<ConfigEvent>(&bytes),
            Err(CodecError::UnknownVersion(9))
        ));
        assert!(matches!(decode::<ConfigEvent>(&[]), Err(CodecError::Empty)));
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..300 {
            let mut junk = vec![FORMAT];
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                junk.push(state as u8);
            }
            let _ = decode::<ConfigEvent>(&junk);
        }
        let good = encode(&seed_event()).unwrap();
        for cut in 1..good.len() {
            assert!(
                decode::<ConfigEvent>(&good[..cut]).is_err(),
                "truncated at {cut} must not decode"
            );
        }
    }
}
