//! RFC 6962 (Certificate Transparency) Merkle tree hashing.
//!
//! - leaf hash `SHA-256(0x00 || leaf)`, interior node `SHA-256(0x01 || left || right)`;
//! - the tree head of `n` leaves is MTH(D[n]) as defined in RFC 6962 §2.1, with the split
//!   at the largest power of two smaller than `n`;
//! - [`CompactTree`] keeps only the roots of the perfect subtrees along the right edge
//!   (at most 64 hashes), so appending costs O(log n) and needs no earlier leaves;
//! - inclusion proofs follow RFC 6962 §2.1.1 and are checked with the algorithm of
//!   RFC 9162 §2.1.3.2.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The tree head of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The right edge of a Merkle tree: enough to append and to compute the root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactTree {
    size: u64,
    /// Roots of the perfect subtrees, largest (leftmost) first; one per set bit of `size`.
    frontier: Vec<Hash>,
}

impl CompactTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a compact tree from its stored parts; `None` when they do not fit together.
    pub fn from_parts(size: u64, frontier: Vec<Hash>) -> Option<Self> {
        (size.count_ones() as usize == frontier.len()).then_some(Self { size, frontier })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn frontier(&self) -> &[Hash] {
        &self.frontier
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        // Merge while the lowest subtree has the same height as the new one: the number
        // of merges is the number of trailing one bits of the old size.
        let mut merges = self.size.trailing_ones();
        while merges > 0 {
            match self.frontier.pop() {
                Some(left) => node = node_hash(&left, &node),
                None => break,
            }
            merges -= 1;
        }
        self.frontier.push(node);
        self.size += 1;
    }

    /// MTH of all leaves so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.frontier.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

/// MTH(D[0..n]) over a slice of leaf hashes (RFC 6962 §2.1).
pub fn root_of(leaves: &[Hash]) -> Hash {
    let mut tree = CompactTree::new();
    for l in leaves {
        tree.push(*l);
    }
    tree.root()
}

/// Largest power of two strictly smaller than `n` (n >= 2).
fn split_point(n: usize) -> usize {
    let mut k = 1usize;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The audit path for leaf `index` in the tree of the first `leaves.len()` leaves
/// (RFC 6962 §2.1.1 PATH(m, D[n])). `None` when `index` is out of range.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    path_rec(leaves, index, &mut path);
    Some(path)
}

fn path_rec(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    let (left, right) = leaves.split_at(k);
    if m < k {
        path_rec(left, m, out);
        out.push(root_of(right));
    } else {
        path_rec(right, m - k, out);
        out.push(root_of(left));
    }
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && &r == root
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference definition of MTH, straight from RFC 6962 §2.1.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n);
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn compact_tree_matches_reference_for_all_sizes() {
        let all = leaves(130);
        let mut tree = CompactTree::new();
        assert_eq!(tree.root(), empty_root());
        for (i, l) in all.iter().enumerate() {
            tree.push(*l);
            assert_eq!(tree.root(), mth(&all[..=i]), "size {}", i + 1);
            assert_eq!(tree.frontier().len() as u32, tree.size().count_ones());
        }
    }

    #[test]
    fn rfc6962_empty_and_known_vector() {
        // RFC 6962 test vectors (certificate-transparency-go): empty tree root.
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Leaf hash of the empty leaf.
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        // Root over the 8 leaves of the CT reference test vector.
        let raw: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        let hashes: Vec<Hash> = raw.iter().map(|l| leaf_hash(l)).collect();
        assert_eq!(
            hex::encode(root_of(&hashes)),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
    }

    #[test]
    fn inclusion_proofs_verify_and_reject_tampering() {
        let all = leaves(37);
        for size in 1..=all.len() {
            let root = root_of(&all[..size]);
            for idx in 0..size {
                let proof = inclusion_proof(&all[..size], idx).unwrap();
                assert!(verify_inclusion(
                    &all[idx],
                    idx as u64,
                    size as u64,
                    &proof,
                    &root
                ));
                // wrong leaf, wrong index, wrong root must fail
                let other = leaf_hash(b"other");
                assert!(!verify_inclusion(
                    &other,
                    idx as u64,
                    size as u64,
                    &proof,
                    &root
                ));
                if size > 1 {
                    let wrong = (idx + 1) % size;
                    assert!(!verify_inclusion(
                        &all[idx],
                        wrong as u64,
                        size as u64,
                        &proof,
                        &root
                    ));
                }
                assert!(!verify_inclusion(
                    &all[idx],
                    idx as u64,
                    size as u64,
                    &proof,
                    &other
                ));
            }
        }
        assert!(inclusion_proof(&all, all.len()).is_none());
    }

    #[test]
    fn from_parts_rejects_inconsistent_frontier() {
        assert!(CompactTree::from_parts(3, vec![[0; 32]]).is_none());
        assert!(CompactTree::from_parts(3, vec![[0; 32], [1; 32]]).is_some());
    }
}
