//! The root of the keyed configuration's hash tree, kept up to date in less than O(buckets):
//! the root is SHA-256 over a fixed prefix followed by every bucket's hash (128 KiB at
//! 4,096 buckets), and SHA-256 reads its input 64 bytes at a time, so the state after each
//! 64-byte block is kept; when buckets change, hashing resumes from the block holding the
//! first changed byte. The result is the plain SHA-256 of the same bytes (tested), so the
//! hash of a configuration does not depend on how it was computed.

use sha2::digest::generic_array::GenericArray;

/// SHA-256's initial state.
const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

const BLOCK: usize = 64;

/// The states after each whole block of `prefix ‖ leaves`.
#[derive(Clone, Debug)]
pub struct RootHasher {
    prefix: Vec<u8>,
    /// `states[j]`: the state after the first `j` blocks (`states[0]` is the IV).
    states: Vec<[u32; 8]>,
}

impl RootHasher {
    /// A hasher for `prefix` followed by `leaves` 32-byte leaves; every state is stale.
    pub fn new(prefix: &[u8], leaves: usize) -> Self {
        let len = prefix.len() + 32 * leaves;
        let mut states = vec![IV; len / BLOCK + 1];
        states[0] = IV;
        RootHasher {
            prefix: prefix.to_vec(),
            states,
        }
    }

    /// The block holding the first byte of leaf `i`.
    pub fn block_of_leaf(&self, i: usize) -> usize {
        (self.prefix.len() + 32 * i) / BLOCK
    }

    /// The root of `prefix ‖ leaves`, hashing again from block `from` (the states before it
    /// must be those of the same bytes; the ones after are brought up to date).
    pub fn root(&mut self, leaves: &[[u8; 32]], from: usize) -> [u8; 32] {
        let flat = leaves.as_flattened();
        let p = self.prefix.len();
        let total = p + flat.len();
        let whole = total / BLOCK;
        debug_assert_eq!(self.states.len(), whole + 1, "leaf count changed");
        // The bytes of block `j`, whether they start in the prefix or not.
        let block_at = |j: usize| -> [u8; BLOCK] {
            let mut b = [0u8; BLOCK];
            let start = j * BLOCK;
            for (k, byte) in b.iter_mut().enumerate() {
                let x = start + k;
                *byte = if x < p { self.prefix[x] } else { flat[x - p] };
            }
            b
        };
        for j in from.min(whole)..whole {
            let mut state = self.states[j];
            let start = j * BLOCK;
            if start >= p {
                let chunk = GenericArray::from_slice(&flat[start - p..start - p + BLOCK]);
                sha2::compress256(&mut state, std::slice::from_ref(chunk));
            } else {
                let b = block_at(j);
                sha2::compress256(&mut state, &[GenericArray::clone_from_slice(&b)]);
            }
            self.states[j + 1] = state;
        }
        // The tail and SHA-256's padding: 0x80, zeros, the length in bits (big-endian).
        let mut state = self.states[whole];
        let tail_start = whole * BLOCK;
        let mut tail: Vec<u8> = (tail_start..total)
            .map(|x| if x < p { self.prefix[x] } else { flat[x - p] })
            .collect();
        tail.push(0x80);
        while tail.len() % BLOCK != BLOCK - 8 {
            tail.push(0);
        }
        tail.extend_from_slice(&((total as u64) * 8).to_be_bytes());
        for chunk in tail.chunks_exact(BLOCK) {
            sha2::compress256(&mut state, &[GenericArray::clone_from_slice(chunk)]);
        }
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    fn plain(prefix: &[u8], leaves: &[[u8; 32]]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(prefix);
        for l in leaves {
            h.update(l);
        }
        h.finalize().into()
    }

    #[test]
    fn the_root_is_sha256_of_the_prefix_and_the_leaves() {
        for (prefix, n) in [
            (&b"ha-config/v2-keyed\n"[..], 4096),
            (&b""[..], 0),
            (&b""[..], 2),
            (&b"x"[..], 1),
            (&[7u8; 64][..], 3),
            (&[1u8; 70][..], 5),
        ] {
            let leaves: Vec<[u8; 32]> = (0..n).map(|i| [(i % 251) as u8; 32]).collect();
            let mut r = RootHasher::new(prefix, n);
            assert_eq!(r.root(&leaves, 0), plain(prefix, &leaves), "{} leaves", n);
        }
    }

    proptest! {
        /// After any sequence of leaf changes, resuming from the first changed leaf's block
        /// gives the plain SHA-256 of the whole input.
        #[test]
        fn resuming_from_the_first_changed_block_gives_the_same_root(
            prefix_len in 0usize..80,
            n in 1usize..300,
            rounds in prop::collection::vec(prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4), 1..6),
        ) {
            let prefix: Vec<u8> = (0..prefix_len).map(|i| i as u8).collect();
            let mut leaves: Vec<[u8; 32]> = (0..n).map(|i| [i as u8; 32]).collect();
            let mut r = RootHasher::new(&prefix, n);
            prop_assert_eq!(r.root(&leaves, 0), plain(&prefix, &leaves));
            for changes in rounds {
                let mut first = usize::MAX;
                for (at, v) in changes {
                    let i = at.index(n);
                    leaves[i] = [v; 32];
                    first = first.min(r.block_of_leaf(i));
                }
                prop_assert_eq!(r.root(&leaves, first), plain(&prefix, &leaves));
            }
        }
    }
}
