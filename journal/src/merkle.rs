//! Merkle Tree Hashes, inclusion proofs and consistency proofs exactly as RFC 9162
//! (Certificate Transparency v2) §2.1 defines them, so that anyone can check Keel's
//! journal and state roots with independent code.
//!
//! # The tree
//!
//! For an ordered list of `n` entries `D_n = {d[0], ..., d[n-1]}` (RFC 9162 §2.1.1):
//!
//! - `MTH({}) = SHA-256()` ([`EMPTY_ROOT`]);
//! - `MTH({d[0]}) = SHA-256(0x00 || d[0])` ([`leaf_hash`]);
//! - for `n > 1`, with `k` the largest power of two smaller than `n`,
//!   `MTH(D_n) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))` ([`node_hash`]).
//!
//! Everything here works on leaf hashes, not entries: callers hash each entry once
//! with [`leaf_hash`] and keep the 32-byte results.
//!
//! # Incremental roots
//!
//! [`MerkleFrontier`] keeps the root of a growing list up to date with one subtree hash
//! per set bit of the leaf count (a "compact range" over `[0, n)`). Appending a leaf
//! costs amortised one node hash; a root costs at most `log2(n)` node hashes. Its
//! [`parts`](MerkleFrontier::parts) are what a snapshot persists, and
//! [`from_parts`](MerkleFrontier::from_parts) restores them.
//!
//! # Proofs
//!
//! [`inclusion_proof`] and [`consistency_proof`] generate `PATH(m, D_n)` (§2.1.3.1) and
//! `PROOF(m, D_n)` (§2.1.4.1) from the full list of leaf hashes, by the RFC's recursive
//! definitions. [`verify_inclusion`] and [`verify_consistency`] follow the RFC's
//! verification algorithms (§2.1.3.2, §2.1.4.2) step by step. The verifiers take
//! untrusted input: they never panic, their work is bounded by the height of a 64-bit
//! tree whatever the proof length, and they report why a proof failed.
//!
//! Two cases lie outside the RFC's consistency algorithm, which is defined for
//! `0 < first < second`: equal sizes are consistent exactly when the proof is empty
//! and the roots are equal (what `PROOF(m, D_m) = SUBPROOF(m, D_m, true) = {}` implies),
//! and a first size of 0 is always rejected, because no checkpoint commits to an
//! empty journal.
//!
//! # Binding sizes to roots
//!
//! A proof ties a leaf (or an older root) to a `(tree_size, root)` pair, and the RFC's
//! algorithms bind the size only through the root: some trees of different sizes give
//! a leaf the same proof shape, so a proof for size 5 also "verifies" against the
//! size-5 root with a claimed size of 6. Take the size and the root from the same signed
//! checkpoint and this cannot mislead anyone; never combine a root with a size from
//! elsewhere.

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Prefix of a leaf's hash input; differs from [`NODE_PREFIX`] so that no leaf can pose
/// as an interior node (second-preimage resistance, RFC 9162 §2.1.1).
const LEAF_PREFIX: u8 = 0x00;

/// Prefix of an interior node's hash input.
const NODE_PREFIX: u8 = 0x01;

/// The Merkle Tree Hash of an empty list: SHA-256 of the empty string
/// (`e3b0c442...b855`), RFC 9162 §2.1.1.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The largest leaf count a restored [`MerkleFrontier`] may claim. Capping restored
/// state at 2^63 leaves keeps `push` from ever overflowing the count on hostile input;
/// a real journal would need thousands of years to get there.
pub const FRONTIER_LEN_MAX: u64 = 1 << 63;

/// Why a Merkle proof, a proof request or a restored frontier was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// A leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {tree_size}")]
    IndexOutOfRange {
        /// The requested or claimed leaf index.
        index: u64,
        /// The tree size it was checked against.
        tree_size: u64,
    },
    /// Consistency needs `0 < first <= second`.
    #[error("tree sizes {first} and {second} do not satisfy 0 < first <= second")]
    InvalidSizes {
        /// The older tree size.
        first: u64,
        /// The newer tree size.
        second: u64,
    },
    /// The proof has hashes left over after the sizes say the root was reached.
    #[error("proof is longer than the tree sizes allow")]
    ProofTooLong,
    /// The proof ran out of hashes before the sizes say the root was reached.
    #[error("proof is shorter than the tree sizes require")]
    ProofTooShort,
    /// An inclusion proof does not lead from the leaf to the given root.
    #[error("inclusion proof does not reproduce the given root")]
    RootMismatch,
    /// A consistency proof does not reproduce the older root.
    #[error("consistency proof does not reproduce the first (older) root")]
    FirstRootMismatch,
    /// A consistency proof does not reproduce the newer root.
    #[error("consistency proof does not reproduce the second (newer) root")]
    SecondRootMismatch,
    /// Restored frontier parts do not describe a tree: one hash per set bit of the
    /// length is required, and the length must not exceed [`FRONTIER_LEN_MAX`].
    #[error("a frontier of {len} leaves cannot hold {hashes} subtree hashes")]
    InvalidFrontier {
        /// The claimed leaf count.
        len: u64,
        /// How many subtree hashes came with it.
        hashes: usize,
    },
}

/// `SHA-256(0x00 || data)`: the hash of one entry as a leaf (RFC 9162 §2.1.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node (RFC 9162 §2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // One contiguous 65-byte input hashes in one call: no per-update buffering, which
    // matters because proofs and roots are nothing but node hashes.
    let mut input = [0u8; 65];
    input[0] = NODE_PREFIX;
    input[1..33].copy_from_slice(left);
    input[33..].copy_from_slice(right);
    Sha256::digest(input).into()
}

/// The Merkle Tree Hash of a list, kept incrementally as leaves are appended.
///
/// It holds one subtree root per set bit of the leaf count, largest (leftmost) first:
/// for 13 = 8 + 4 + 1 leaves, the roots of leaves `[0, 8)`, `[8, 12)` and `[12, 13)`.
/// That is exactly the set of perfect subtrees the RFC's split rule produces, so the
/// root is these hashes folded from the right.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MerkleFrontier {
    len: u64,
    nodes: Vec<Hash>,
}

impl MerkleFrontier {
    /// An empty tree; its root is [`EMPTY_ROOT`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a frontier from [`parts`](Self::parts), e.g. read from a snapshot.
    ///
    /// Fails unless there is exactly one hash per set bit of `len` and `len` is at
    /// most [`FRONTIER_LEN_MAX`]. The hashes themselves cannot be checked here: a
    /// snapshot's checksum and the witnesses' recomputation are what vouch for them.
    pub fn from_parts(len: u64, nodes: Vec<Hash>) -> Result<Self, MerkleError> {
        let expected = usize::try_from(len.count_ones()).unwrap_or(usize::MAX);
        if len > FRONTIER_LEN_MAX || nodes.len() != expected {
            return Err(MerkleError::InvalidFrontier {
                len,
                hashes: nodes.len(),
            });
        }
        Ok(Self { len, nodes })
    }

    /// The leaf count and the subtree roots, largest subtree first; together they are
    /// everything [`from_parts`](Self::from_parts) needs.
    pub fn parts(&self) -> (u64, &[Hash]) {
        (self.len, &self.nodes)
    }

    /// Like [`parts`](Self::parts), but hands over the hashes without copying them.
    pub fn into_parts(self) -> (u64, Vec<Hash>) {
        (self.len, self.nodes)
    }

    /// How many leaves have been appended.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no leaf has been appended yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends an entry: hashes it with [`leaf_hash`] and pushes the result.
    pub fn push(&mut self, data: &[u8]) {
        self.push_leaf_hash(leaf_hash(data));
    }

    /// Appends a leaf given its leaf hash. Amortised one node hash per call.
    pub fn push_leaf_hash(&mut self, leaf: Hash) {
        // Each trailing 1 bit of the old count is a perfect subtree exactly as large as
        // the one being carried, so the two merge, like a carry in binary addition.
        let mut node = leaf;
        let mut carry = self.len;
        while carry & 1 == 1 {
            // The invariant (one hash per set bit) guarantees a hash here; stopping
            // rather than panicking keeps a broken invariant from taking the node down.
            let Some(left) = self.nodes.pop() else { break };
            node = node_hash(&left, &node);
            carry >>= 1;
        }
        self.nodes.push(node);
        // Cannot overflow: from_parts caps restored counts at 2^63, and appending 2^63
        // more leaves is out of reach.
        self.len += 1;
    }

    /// The Merkle Tree Hash of all leaves so far, in at most `log2(len)` node hashes.
    pub fn root(&self) -> Hash {
        // MTH splits off the largest power of two first, so the subtrees nest to the
        // right: MTH = H(n0, H(n1, H(n2, ...))). Fold from the smallest one.
        let mut from_right = self.nodes.iter().rev();
        match from_right.next() {
            None => EMPTY_ROOT,
            Some(last) => from_right.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

/// The Merkle Tree Hash of a list of leaf hashes, by the recursive definition of
/// RFC 9162 §2.1.1. The reference that [`MerkleFrontier`] is checked against; O(n).
pub fn root_of(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes {
        [] => EMPTY_ROOT,
        [leaf] => *leaf,
        _ => {
            let (left, right) = leaf_hashes.split_at(split_point(leaf_hashes.len()));
            node_hash(&root_of(left), &root_of(right))
        }
    }
}

/// The RFC's `k`: the largest power of two smaller than `n`, for `n >= 2` (0 otherwise,
/// which no caller passes: each recurses only on lists of two or more leaves).
fn split_point(n: usize) -> usize {
    n.saturating_sub(1)
        .checked_ilog2()
        .map_or(0, |bits| 1 << bits)
}

/// Room for the longest proof over `n` leaves, `ceil(log2(n)) + 1` hashes, so that
/// building one never reallocates.
fn proof_capacity(n: usize) -> usize {
    let bits = usize::BITS - n.leading_zeros();
    usize::try_from(bits).unwrap_or(0) + 1
}

/// The inclusion proof `PATH(index, D_n)` for the leaf at `index` in the tree over all
/// of `leaf_hashes` (RFC 9162 §2.1.3.1), ordered from the leaf's sibling up to the
/// root's other child. Pass `&leaf_hashes[..n]` for the tree of the first `n` leaves.
///
/// Costs O(n) hashing: it recomputes the subtree roots it needs.
pub fn inclusion_proof(index: u64, leaf_hashes: &[Hash]) -> Result<Vec<Hash>, MerkleError> {
    let tree_size = leaf_hashes.len() as u64;
    let m = usize::try_from(index)
        .ok()
        .filter(|&m| m < leaf_hashes.len())
        .ok_or(MerkleError::IndexOutOfRange { index, tree_size })?;
    let mut proof = Vec::with_capacity(proof_capacity(leaf_hashes.len()));
    path(m, leaf_hashes, &mut proof);
    Ok(proof)
}

/// `PATH(m, D_n)`, appending to `out`; requires `m < leaves.len()`.
fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    // PATH(0, {d[0]}) = {}
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(leaves.len());
    let (left, right) = leaves.split_at(k);
    if m < k {
        // PATH(m, D_n) = PATH(m, D[0:k]) : MTH(D[k:n])
        path(m, left, out);
        out.push(root_of(right));
    } else {
        // PATH(m, D_n) = PATH(m - k, D[k:n]) : MTH(D[0:k])
        path(m - k, right, out);
        out.push(root_of(left));
    }
}

/// Verifies that `leaf_hash` is the leaf at `index` in the tree of `tree_size` leaves
/// whose root is `root`, by the algorithm of RFC 9162 §2.1.3.2 as written.
///
/// Take `tree_size` and `root` from the same signed checkpoint: see the module docs on
/// binding sizes to roots.
pub fn verify_inclusion(
    index: u64,
    tree_size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    // 1. If leaf_index >= tree_size, fail.
    if index >= tree_size {
        return Err(MerkleError::IndexOutOfRange { index, tree_size });
    }
    // 2. fn = leaf_index, sn = tree_size - 1.  3. r = hash.
    let (mut f_n, mut s_n) = (index, tree_size - 1);
    let mut r = *leaf_hash;
    // 4. For each p in inclusion_path:
    for p in proof {
        // If sn is 0, fail: the root was reached with hashes left over.
        if s_n == 0 {
            return Err(MerkleError::ProofTooLong);
        }
        if f_n & 1 == 1 || f_n == s_n {
            // r = HASH(0x01 || p || r), then skip the levels where this node is the
            // last one and has no right sibling.
            r = node_hash(p, &r);
            (f_n, s_n) = shift_until_odd_or_zero(f_n, s_n);
        } else {
            // r = HASH(0x01 || r || p)
            r = node_hash(&r, p);
        }
        // Finally, right-shift both fn and sn one time.
        f_n >>= 1;
        s_n >>= 1;
    }
    // 5. Succeed only if sn is 0 and r equals root_hash.
    if s_n != 0 {
        Err(MerkleError::ProofTooShort)
    } else if r != *root {
        Err(MerkleError::RootMismatch)
    } else {
        Ok(())
    }
}

/// The RFC's "if LSB(fn) is not set, right-shift both fn and sn equally until either
/// LSB(fn) is set or fn is 0" (§2.1.3.2 step 4, §2.1.4.2 step 6).
fn shift_until_odd_or_zero(mut f_n: u64, mut s_n: u64) -> (u64, u64) {
    while f_n & 1 == 0 && f_n != 0 {
        f_n >>= 1;
        s_n >>= 1;
    }
    (f_n, s_n)
}

/// The consistency proof `PROOF(first, D_n)` between the tree of the first `first`
/// leaves and the tree over all of `leaf_hashes` (RFC 9162 §2.1.4.1, the SUBPROOF
/// algorithm). Requires `0 < first <= n`; for `first == n` the proof is empty.
///
/// Costs O(n) hashing: it recomputes the subtree roots it needs.
pub fn consistency_proof(first: u64, leaf_hashes: &[Hash]) -> Result<Vec<Hash>, MerkleError> {
    let second = leaf_hashes.len() as u64;
    let m = usize::try_from(first)
        .ok()
        .filter(|&m| m > 0 && m <= leaf_hashes.len())
        .ok_or(MerkleError::InvalidSizes { first, second })?;
    let mut proof = Vec::with_capacity(proof_capacity(leaf_hashes.len()) + 1);
    subproof(m, leaf_hashes, true, &mut proof);
    Ok(proof)
}

/// `SUBPROOF(m, D_n, complete)`, appending to `out`; requires `0 < m <= leaves.len()`.
/// `complete` says whether `D[0:m]` is the tree whose root the verifier already has.
fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    if m == leaves.len() {
        // SUBPROOF(m, D_m, true) = {};  SUBPROOF(m, D_m, false) = {MTH(D_m)}
        if !complete {
            out.push(root_of(leaves));
        }
        return;
    }
    let k = split_point(leaves.len());
    let (left, right) = leaves.split_at(k);
    if m <= k {
        // D[k:n] exists only in the newer tree: SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
        subproof(m, left, complete, out);
        out.push(root_of(right));
    } else {
        // D[0:k] is shared: SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
        subproof(m - k, right, false, out);
        out.push(root_of(left));
    }
}

/// Verifies that the tree of `first` leaves with root `first_root` is a prefix of the
/// tree of `second` leaves with root `second_root`, by the algorithm of RFC 9162
/// §2.1.4.2 as written (for `0 < first < second`).
///
/// `first == second` succeeds exactly when the proof is empty and the roots are equal;
/// `first == 0` and `first > second` always fail (see the module docs).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if first == 0 || first > second {
        return Err(MerkleError::InvalidSizes { first, second });
    }
    if first == second {
        return verify_same_size(first_root, second_root, proof);
    }
    rfc9162_consistency(first, second, first_root, second_root, proof)
}

/// Equal sizes: the generated proof is `SUBPROOF(m, D_m, true) = {}` and the two
/// roots must be the same root.
fn verify_same_size(
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if !proof.is_empty() {
        Err(MerkleError::ProofTooLong)
    } else if first_root != second_root {
        Err(MerkleError::SecondRootMismatch)
    } else {
        Ok(())
    }
}

/// RFC 9162 §2.1.4.2 steps 1 to 7, for `0 < first < second`.
fn rfc9162_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    // 1. An empty consistency_path fails.
    let Some((head, tail)) = proof.split_first() else {
        return Err(MerkleError::ProofTooShort);
    };
    // 2. If first is an exact power of 2, prepend first_hash. Rather than copy the
    // proof, pick the first value (step 5) and the subsequent values (step 6) directly.
    let (seed, rest) = if first.is_power_of_two() {
        (first_root, proof)
    } else {
        (head, tail)
    };
    // 3. fn = first - 1, sn = second - 1.
    // 4. If LSB(fn) is set, right-shift both until LSB(fn) is not set.
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // 5. fr = sr = the first value.
    let (mut fr, mut sr) = (*seed, *seed);
    // 6. For each subsequent value c:
    for c in rest {
        // If sn is 0, fail: the newer root was reached with hashes left over.
        if s_n == 0 {
            return Err(MerkleError::ProofTooLong);
        }
        if f_n & 1 == 1 || f_n == s_n {
            // c is a left sibling on both paths.
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            (f_n, s_n) = shift_until_odd_or_zero(f_n, s_n);
        } else {
            // c is a right sibling that only the newer tree has.
            sr = node_hash(&sr, c);
        }
        // Finally, right-shift both fn and sn one time.
        f_n >>= 1;
        s_n >>= 1;
    }
    // 7. fr must equal first_hash, sr must equal second_hash, and sn must be 0.
    if s_n != 0 {
        Err(MerkleError::ProofTooShort)
    } else if fr != *first_root {
        Err(MerkleError::FirstRootMismatch)
    } else if sr != *second_root {
        Err(MerkleError::SecondRootMismatch)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes a 64-digit hex string.
    fn h(hex: &str) -> Hash {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    // ---------------------------------------------------------------------------------
    // Published test vectors.
    //
    // Source: transparency-dev/merkle, proof/verify_test.go (commit 02194e9a), the
    // `leaves`, `roots`, `inclusionProofs` and `consistencyProofs` tables. They descend
    // from Google's certificate-transparency C++ merkle_tree_test.cc and are shared by
    // certificate-transparency-go and Trillian. That file numbers leaves from 1 in its
    // inclusion table; the indices below are 0-based.
    // ---------------------------------------------------------------------------------

    /// The eight well-known leaf inputs.
    const CT_LEAVES: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];

    /// `CT_ROOTS[s - 1]` is the root of the tree over the first `s` of `CT_LEAVES`.
    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// (leaf index, tree size, proof).
    const CT_INCLUSION: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    /// (first size, second size, proof).
    const CT_CONSISTENCY: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    /// Same source: an arbitrary hash that belongs to no tree.
    const SOME_HASH: &str = "abacaba000000000000000000000000000000000000000000060061e00123456";

    fn ct_leaf_hashes() -> Vec<Hash> {
        CT_LEAVES.iter().map(|d| leaf_hash(d)).collect()
    }

    fn ct_root(size: u64) -> Hash {
        h(CT_ROOTS[usize::try_from(size - 1).unwrap()])
    }

    fn hashes(hex: &[&str]) -> Vec<Hash> {
        hex.iter().map(|x| h(x)).collect()
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(root_of(&[]), EMPTY_ROOT);
        assert_eq!(MerkleFrontier::new().root(), EMPTY_ROOT);
    }

    #[test]
    fn leaf_and_node_hashes_use_the_rfc_prefixes() {
        // Size 1 root is the leaf hash of "", size 2 root is one node hash.
        let leaves = ct_leaf_hashes();
        assert_eq!(leaf_hash(b""), ct_root(1));
        assert_eq!(node_hash(&leaves[0], &leaves[1]), ct_root(2));
        assert_eq!(leaf_hash(b"x"), <[u8; 32]>::from(Sha256::digest(b"\x00x")));
    }

    #[test]
    fn published_roots_for_sizes_1_to_8() {
        let leaves = ct_leaf_hashes();
        let mut frontier = MerkleFrontier::new();
        for (size, data) in (1..=8u64).zip(CT_LEAVES) {
            frontier.push(data);
            let n = usize::try_from(size).unwrap();
            assert_eq!(frontier.len(), size);
            assert_eq!(frontier.root(), ct_root(size), "frontier, size {size}");
            assert_eq!(root_of(&leaves[..n]), ct_root(size), "root_of, size {size}");
        }
    }

    #[test]
    fn published_inclusion_proofs_are_generated_and_verify() {
        let leaves = ct_leaf_hashes();
        for (index, size, proof_hex) in CT_INCLUSION {
            let expected = hashes(proof_hex);
            let n = usize::try_from(size).unwrap();
            let leaf = leaves[usize::try_from(index).unwrap()];
            let proof = inclusion_proof(index, &leaves[..n]).unwrap();
            assert_eq!(proof, expected, "PATH({index}, D[{size}])");
            verify_inclusion(index, size, &leaf, &proof, &ct_root(size)).unwrap();
            let root = ct_root(size);
            assert_inclusion_probes_fail(&Incl {
                index,
                size,
                leaf,
                root,
                proof,
            });
        }
    }

    #[test]
    fn published_consistency_proofs_are_generated_and_verify() {
        let leaves = ct_leaf_hashes();
        for (first, second, proof_hex) in CT_CONSISTENCY {
            let expected = hashes(proof_hex);
            let n = usize::try_from(second).unwrap();
            let proof = consistency_proof(first, &leaves[..n]).unwrap();
            assert_eq!(proof, expected, "PROOF({first}, D[{second}])");
            let (r1, r2) = (ct_root(first), ct_root(second));
            verify_consistency(first, second, &r1, &r2, &proof).unwrap();
            // transparency-dev probes only non-trivial proofs; (1, 1) has no parts to corrupt.
            if !proof.is_empty() {
                assert_consistency_probes_fail(&Cons {
                    first,
                    second,
                    r1,
                    r2,
                    proof,
                });
            }
        }
    }

    /// One inclusion verification request, for building corrupted variants.
    #[derive(Clone)]
    struct Incl {
        index: u64,
        size: u64,
        leaf: Hash,
        root: Hash,
        proof: Vec<Hash>,
    }

    /// One consistency verification request, for building corrupted variants.
    #[derive(Clone)]
    struct Cons {
        first: u64,
        second: u64,
        r1: Hash,
        r2: Hash,
        proof: Vec<Hash>,
    }

    /// The corruptions transparency-dev/merkle's `corruptInclusionProof` applies (same
    /// file): each must be rejected. Wrong hashes stand in for its wrong-length ones.
    fn assert_inclusion_probes_fail(ok: &Incl) {
        let (i, s, p, some) = (ok.index, ok.size, &ok.proof, h(SOME_HASH));
        let variant = |desc: &'static str, edit: &dyn Fn(&mut Incl)| {
            let mut probe = ok.clone();
            edit(&mut probe);
            (desc, probe)
        };
        let mut probes = vec![
            variant("index - 1", &|x| x.index = i.wrapping_sub(1)),
            variant("index + 1", &|x| x.index = i + 1),
            variant("index ^ 2", &|x| x.index = i ^ 2),
            variant("size * 2", &|x| x.size = s * 2),
            variant("size / 2", &|x| x.size = s / 2),
            variant("wrong leaf", &|x| x.leaf = leaf_hash(b"WrongLeaf")),
            variant("empty root", &|x| x.root = EMPTY_ROOT),
            variant("random root", &|x| x.root = some),
            variant("trailing garbage", &|x| x.proof = with_last(p, [0; 32])),
            variant("trailing root", &|x| x.proof = with_last(p, ok.root)),
            variant("preceding garbage", &|x| x.proof = with_first(p, [0; 32])),
            variant("preceding root", &|x| x.proof = with_first(p, ok.root)),
        ];
        for k in 0..p.len() {
            probes.push(variant("modified proof bit 3", &|x| x.proof[k][0] ^= 8));
        }
        if let Some((_, shorter)) = p.split_last() {
            probes.push(variant("removed", &|x| x.proof = shorter.to_vec()));
        }
        if p.len() > 1 {
            probes.push(variant("inserted", &|x| x.proof.insert(1, some)));
        }
        for (desc, x) in probes {
            let got = verify_inclusion(x.index, x.size, &x.leaf, &x.proof, &x.root);
            assert!(got.is_err(), "probe {desc} verified for ({i}, {s})");
        }
    }

    /// The corruptions of transparency-dev/merkle's `corruptConsistencyProof`.
    fn assert_consistency_probes_fail(ok: &Cons) {
        let (m, n, p, some) = (ok.first, ok.second, &ok.proof, h(SOME_HASH));
        let variant = |desc: &'static str, edit: &dyn Fn(&mut Cons)| {
            let mut probe = ok.clone();
            edit(&mut probe);
            (desc, probe)
        };
        let mut probes = vec![
            variant("first - 1", &|x| x.first = m - 1),
            variant("first + 1", &|x| x.first = m + 1),
            variant("first ^ 2", &|x| x.first = m ^ 2),
            variant("second * 2", &|x| x.second = n * 2),
            variant("second / 2", &|x| x.second = n / 2),
            variant("wrong root1", &|x| x.r1 = some),
            variant("wrong root2", &|x| x.r2 = some),
            variant("swapped roots", &|x| (x.r1, x.r2) = (ok.r2, ok.r1)),
            variant("empty proof", &|x| x.proof.clear()),
            variant("trailing garbage", &|x| x.proof = with_last(p, [0; 32])),
            variant("trailing root1", &|x| x.proof = with_last(p, ok.r1)),
            variant("trailing root2", &|x| x.proof = with_last(p, ok.r2)),
            variant("preceding garbage", &|x| x.proof = with_first(p, [0; 32])),
            variant("preceding root1", &|x| x.proof = with_first(p, ok.r1)),
            variant("preceding root2", &|x| x.proof = with_first(p, ok.r2)),
            variant("preceding proof[0]", &|x| x.proof = with_first(p, p[0])),
        ];
        if let Some((_, shorter)) = p.split_last() {
            probes.push(variant("truncated", &|x| x.proof = shorter.to_vec()));
        }
        for k in 0..p.len() {
            probes.push(variant("modified proof bit 4", &|x| x.proof[k][0] ^= 16));
        }
        for (desc, x) in probes {
            let got = verify_consistency(x.first, x.second, &x.r1, &x.r2, &x.proof);
            assert!(got.is_err(), "probe {desc} verified for ({m}, {n})");
        }
    }

    fn with_last(proof: &[Hash], extra: Hash) -> Vec<Hash> {
        let mut out = proof.to_vec();
        out.push(extra);
        out
    }

    fn with_first(proof: &[Hash], extra: Hash) -> Vec<Hash> {
        let mut out = vec![extra];
        out.extend_from_slice(proof);
        out
    }

    /// transparency-dev/merkle's TestVerifyConsistency edge cases (same file), minus
    /// the ones with a first size of 0, which Keel rejects on purpose.
    #[test]
    fn consistency_edge_cases() {
        let (r1, r2) = (leaf_hash(b"don't care 1"), leaf_hash(b"don't care 2"));
        let cases: [(u64, u64, Hash, Hash, Vec<Hash>, bool); 8] = [
            (1, 1, r1, r2, vec![], false),
            (1, 1, r2, r2, vec![], true),
            (1, 0, r1, r2, vec![], false),
            (2, 1, r1, r2, vec![], false),
            (1, 2, r1, r2, vec![], false),
            (1, 1, EMPTY_ROOT, r2, vec![], false),
            (1, 1, EMPTY_ROOT, EMPTY_ROOT, vec![EMPTY_ROOT], false),
            (0, 0, EMPTY_ROOT, EMPTY_ROOT, vec![], false),
        ];
        for (m, n, a, b, proof, ok) in cases {
            let got = verify_consistency(m, n, &a, &b, &proof);
            assert_eq!(got.is_ok(), ok, "({m}, {n}): {got:?}");
        }
    }

    // ---------------------------------------------------------------------------------
    // RFC 9162 §2.1.5: the 7-leaf example tree, with its nodes named as in the RFC.
    //
    //             hash
    //            /    \
    //           k      l
    //          / \    / \
    //         g   h  i   j
    //        / \ / \ / \  |
    //        a b c d e f  d6
    // ---------------------------------------------------------------------------------

    struct Example {
        leaves: Vec<Hash>,
        a: Hash,
        b: Hash,
        c: Hash,
        d: Hash,
        f: Hash,
        g: Hash,
        h: Hash,
        i: Hash,
        j: Hash,
        k: Hash,
        l: Hash,
        hash: Hash,
    }

    fn rfc_example() -> Example {
        let leaves: Vec<Hash> = (0u8..7).map(|i| leaf_hash(&[b'd', i])).collect();
        let [a, b, c, d, e, f, j] = <[Hash; 7]>::try_from(leaves.clone()).unwrap();
        let (g, h, i) = (node_hash(&a, &b), node_hash(&c, &d), node_hash(&e, &f));
        let (k, l) = (node_hash(&g, &h), node_hash(&i, &j));
        let hash = node_hash(&k, &l);
        Example {
            leaves,
            a,
            b,
            c,
            d,
            f,
            g,
            h,
            i,
            j,
            k,
            l,
            hash,
        }
    }

    #[test]
    fn rfc_example_root() {
        let x = rfc_example();
        assert_eq!(root_of(&x.leaves), x.hash);
        assert_eq!(
            MerkleFrontier::from_parts(7, vec![x.k, x.i, x.j])
                .unwrap()
                .root(),
            x.hash
        );
        // Not listed in the RFC, but the same picture: d1's proof starts with a.
        assert_eq!(inclusion_proof(1, &x.leaves).unwrap(), vec![x.a, x.h, x.l]);
    }

    #[test]
    fn rfc_example_inclusion_proofs() {
        let x = rfc_example();
        let cases = [
            (0u64, vec![x.b, x.h, x.l]),
            (3, vec![x.c, x.g, x.l]),
            (4, vec![x.f, x.j, x.k]),
            (6, vec![x.i, x.k]),
        ];
        for (index, expected) in cases {
            let proof = inclusion_proof(index, &x.leaves).unwrap();
            assert_eq!(proof, expected, "inclusion proof for d{index}");
            let leaf = x.leaves[usize::try_from(index).unwrap()];
            verify_inclusion(index, 7, &leaf, &proof, &x.hash).unwrap();
        }
    }

    #[test]
    fn rfc_example_consistency_proofs() {
        let x = rfc_example();
        // hash0 (3 leaves), hash1 = k (4 leaves), hash2 (6 leaves), built incrementally.
        let hash0 = node_hash(&x.g, &x.c);
        let hash2 = node_hash(&x.k, &x.i);
        let cases = [
            (3u64, hash0, vec![x.c, x.d, x.g, x.l]),
            (4, x.k, vec![x.l]),
            (6, hash2, vec![x.i, x.j, x.k]),
        ];
        for (first, old_root, expected) in cases {
            let n = usize::try_from(first).unwrap();
            assert_eq!(root_of(&x.leaves[..n]), old_root, "root of {first} leaves");
            let proof = consistency_proof(first, &x.leaves).unwrap();
            assert_eq!(proof, expected, "PROOF({first}, D[7])");
            verify_consistency(first, 7, &old_root, &x.hash, &proof).unwrap();
        }
    }

    // ---------------------------------------------------------------------------------
    // Hostile and out-of-range input.
    // ---------------------------------------------------------------------------------

    #[test]
    fn generation_rejects_out_of_range_requests() {
        let leaves = ct_leaf_hashes();
        assert!(inclusion_proof(0, &[]).is_err());
        assert!(inclusion_proof(8, &leaves).is_err());
        assert!(inclusion_proof(u64::MAX, &leaves).is_err());
        assert!(consistency_proof(0, &leaves).is_err());
        assert!(consistency_proof(9, &leaves).is_err());
        assert!(consistency_proof(u64::MAX, &leaves).is_err());
        assert!(consistency_proof(1, &[]).is_err());
        assert_eq!(consistency_proof(8, &leaves).unwrap(), Vec::<Hash>::new());
    }

    #[test]
    fn verification_rejects_hostile_input_without_panicking() {
        let x = h(SOME_HASH);
        let long = vec![x; 200];
        for (index, size) in [(0, 0), (1, 1), (u64::MAX, u64::MAX), (0, u64::MAX), (5, 3)] {
            for proof in [&[][..], &long[..]] {
                assert!(verify_inclusion(index, size, &x, proof, &x).is_err());
            }
        }
        let sizes = [
            (0, 0),
            (0, 5),
            (5, 3),
            (1, u64::MAX),
            (u64::MAX - 1, u64::MAX),
            (3, 7),
        ];
        for (m, n) in sizes {
            for proof in [&[][..], &long[..]] {
                assert!(verify_consistency(m, n, &x, &x, proof).is_err());
            }
        }
        assert_eq!(
            verify_inclusion(3, 3, &x, &[], &x),
            Err(MerkleError::IndexOutOfRange {
                index: 3,
                tree_size: 3
            })
        );
    }

    /// Documents the RFC algorithm's size binding (see the module docs): the proof for
    /// leaf 0 of 5 has the same shape as for leaf 0 of 6, so it "verifies" against the
    /// size-5 root with a claimed size of 6, but never against the real size-6 root.
    #[test]
    fn size_is_bound_only_through_the_root() {
        let leaves: Vec<Hash> = (0u8..6).map(|i| leaf_hash(&[i])).collect();
        let proof = inclusion_proof(0, &leaves[..5]).unwrap();
        let (root5, root6) = (root_of(&leaves[..5]), root_of(&leaves));
        verify_inclusion(0, 5, &leaves[0], &proof, &root5).unwrap();
        verify_inclusion(0, 6, &leaves[0], &proof, &root5).unwrap();
        assert!(verify_inclusion(0, 6, &leaves[0], &proof, &root6).is_err());
    }

    #[test]
    fn frontier_parts_round_trip_and_reject_bad_shapes() {
        let mut frontier = MerkleFrontier::new();
        for data in CT_LEAVES.iter().take(7) {
            frontier.push(data);
        }
        let (len, nodes) = frontier.parts();
        assert_eq!((len, nodes.len()), (7, 3));
        let restored = MerkleFrontier::from_parts(len, nodes.to_vec()).unwrap();
        assert_eq!(restored, frontier);
        let mut grown = restored;
        grown.push(CT_LEAVES[7]);
        assert_eq!(grown.root(), ct_root(8));
        assert_eq!(grown.clone().into_parts(), (8, vec![ct_root(8)]));

        assert!(MerkleFrontier::from_parts(7, vec![EMPTY_ROOT; 2]).is_err());
        assert!(MerkleFrontier::from_parts(0, vec![EMPTY_ROOT]).is_err());
        assert!(MerkleFrontier::from_parts(u64::MAX, vec![EMPTY_ROOT; 64]).is_err());
        assert!(MerkleFrontier::from_parts(0, vec![]).unwrap().is_empty());
        let biggest = MerkleFrontier::from_parts(FRONTIER_LEN_MAX, vec![EMPTY_ROOT]).unwrap();
        assert_eq!(biggest.root(), EMPTY_ROOT);
    }

    // ---------------------------------------------------------------------------------
    // Properties over random trees.
    // ---------------------------------------------------------------------------------

    /// `n` distinct leaf hashes; `salt` varies the tree between cases.
    fn random_leaves(n: usize, salt: u64) -> Vec<Hash> {
        (0..n as u64)
            .map(|i| leaf_hash(&[salt.to_le_bytes(), i.to_le_bytes()].concat()))
            .collect()
    }

    /// `roots[s]` is the root of the first `s` leaves.
    fn prefix_roots(leaves: &[Hash]) -> Vec<Hash> {
        let mut frontier = MerkleFrontier::new();
        let mut roots = vec![frontier.root()];
        for leaf in leaves {
            frontier.push_leaf_hash(*leaf);
            roots.push(frontier.root());
        }
        roots
    }

    fn flip(hash: &Hash, bit: usize) -> Hash {
        let mut out = *hash;
        out[bit / 8 % 32] ^= 1 << (bit % 8);
        out
    }

    /// Every single-thing alteration of a valid inclusion proof must fail. Sizes are
    /// altered together with their true root (see `size_is_bound_only_through_the_root`).
    fn check_inclusion_tampering(i: u64, s: u64, leaves: &[Hash], roots: &[Hash], proof: &[Hash]) {
        let leaf = leaves[usize::try_from(i).unwrap()];
        let root = roots[usize::try_from(s).unwrap()];
        let fails = |i2: u64, s2: u64, l: &Hash, p: &[Hash], r: &Hash| {
            verify_inclusion(i2, s2, l, p, r).is_err()
        };
        assert!(fails(i, s, &flip(&leaf, 5), proof, &root), "leaf altered");
        assert!(fails(i, s, &leaf, proof, &flip(&root, 200)), "root altered");
        for k in 0..proof.len() {
            let mut p = proof.to_vec();
            p[k] = flip(&p[k], k * 7);
            assert!(
                fails(i, s, &leaf, &p, &root),
                "proof[{k}] altered ({i}, {s})"
            );
        }
        assert!(
            fails(i, s, &leaf, &with_last(proof, root), &root),
            "extended"
        );
        assert!(
            fails(i, s, &leaf, &with_first(proof, leaf), &root),
            "prepended"
        );
        if let Some((_, shorter)) = proof.split_last() {
            assert!(fails(i, s, &leaf, shorter, &root), "truncated");
        }
        for i2 in [i.wrapping_sub(1), i + 1, i ^ 1, i ^ 2, s, u64::MAX] {
            if i2 != i {
                assert!(
                    fails(i2, s, &leaf, proof, &root),
                    "index {i} -> {i2} of {s}"
                );
            }
        }
        for s2 in [s - 1, s + 1, s * 2, s / 2] {
            if s2 != s && s2 > 0 {
                let r2 = roots[usize::try_from(s2).unwrap()];
                assert!(fails(i, s2, &leaf, proof, &r2), "size {s} -> {s2} for {i}");
            }
        }
    }

    /// Every single-thing alteration of a valid consistency proof must fail; sizes are
    /// altered together with their true roots.
    fn check_consistency_tampering(m: u64, n: u64, roots: &[Hash], proof: &[Hash]) {
        let root = |s: u64| roots[usize::try_from(s).unwrap()];
        let (r1, r2) = (root(m), root(n));
        let fails = |m2: u64, n2: u64, a: &Hash, b: &Hash, p: &[Hash]| {
            verify_consistency(m2, n2, a, b, p).is_err()
        };
        assert!(fails(m, n, &flip(&r1, 9), &r2, proof), "first root altered");
        assert!(
            fails(m, n, &r1, &flip(&r2, 9), proof),
            "second root altered"
        );
        if r1 != r2 {
            assert!(fails(m, n, &r2, &r1, proof), "roots swapped");
        }
        for k in 0..proof.len() {
            let mut p = proof.to_vec();
            p[k] = flip(&p[k], k * 11 + 3);
            assert!(fails(m, n, &r1, &r2, &p), "proof[{k}] altered ({m}, {n})");
        }
        assert!(fails(m, n, &r1, &r2, &with_last(proof, r2)), "extended");
        assert!(fails(m, n, &r1, &r2, &with_first(proof, r1)), "prepended");
        if let Some((_, shorter)) = proof.split_last() {
            assert!(fails(m, n, &r1, &r2, shorter), "truncated ({m}, {n})");
        }
        for m2 in [m - 1, m + 1, m ^ 1, m ^ 2] {
            if m2 != m && m2 <= 2 * n {
                assert!(
                    fails(m2, n, &root(m2), &r2, proof),
                    "first {m} -> {m2} of {n}"
                );
            }
        }
        for n2 in [n - 1, n + 1, n * 2, n / 2] {
            if n2 != n {
                assert!(
                    fails(m, n2, &r1, &root(n2), proof),
                    "second {n} -> {n2} from {m}"
                );
            }
        }
    }

    /// The frontier's root equals the reference MTH after every push, and its parts
    /// restore an equal frontier.
    fn check_frontier(n: usize, salt: u64) {
        let leaves = random_leaves(n, salt);
        let mut frontier = MerkleFrontier::new();
        for (count, leaf) in (1u64..).zip(&leaves) {
            frontier.push_leaf_hash(*leaf);
            let upto = usize::try_from(count).unwrap();
            assert_eq!(frontier.len(), count);
            assert_eq!(frontier.root(), root_of(&leaves[..upto]), "size {count}");
            let (len, nodes) = frontier.parts();
            assert_eq!(nodes.len(), usize::try_from(len.count_ones()).unwrap());
            let restored = MerkleFrontier::from_parts(len, nodes.to_vec()).unwrap();
            assert_eq!(restored, frontier);
        }
    }

    /// Every leaf's inclusion proof in a tree of `n` leaves verifies and resists tampering.
    fn check_all_inclusion_proofs(n: usize, salt: u64) {
        // Twice as many leaves as the tree, so altered sizes have true roots.
        let leaves = random_leaves(2 * n, salt);
        let roots = prefix_roots(&leaves);
        let s = n as u64;
        for i in 0..s {
            let proof = inclusion_proof(i, &leaves[..n]).unwrap();
            let leaf = leaves[usize::try_from(i).unwrap()];
            assert_eq!(
                verify_inclusion(i, s, &leaf, &proof, &roots[n]),
                Ok(()),
                "({i}, {s})"
            );
            check_inclusion_tampering(i, s, &leaves, &roots, &proof);
        }
    }

    /// Every consistency proof into a tree of `n` leaves, from every size `1..=n`,
    /// verifies and resists tampering.
    fn check_all_consistency_proofs(n: usize, salt: u64) {
        let leaves = random_leaves(2 * n, salt);
        let roots = prefix_roots(&leaves);
        let s = n as u64;
        for m in 1..=s {
            let proof = consistency_proof(m, &leaves[..n]).unwrap();
            let r1 = roots[usize::try_from(m).unwrap()];
            assert_eq!(
                verify_consistency(m, s, &r1, &roots[n], &proof),
                Ok(()),
                "({m}, {s})"
            );
            check_consistency_tampering(m, s, &roots, &proof);
        }
    }

    /// Every tree shape up to 33 leaves (all of 2^5 and one past it), every proof.
    #[test]
    fn every_small_tree_exhaustively() {
        for n in 1..=33 {
            check_frontier(n, 7);
            check_all_inclusion_proofs(n, 7);
            check_all_consistency_proofs(n, 7);
        }
    }

    proptest! {
        // Each case checks every index and every first size of one tree, O(n^2) hashing
        // in an unoptimised build; small trees are covered exhaustively above.
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn frontier_root_equals_reference_at_every_size(n in 1usize..300, salt: u64) {
            check_frontier(n, salt);
        }

        #[test]
        fn inclusion_proofs_verify_and_resist_tampering(n in 1usize..300, salt: u64) {
            check_all_inclusion_proofs(n, salt);
        }

        #[test]
        fn consistency_proofs_verify_and_resist_tampering(n in 1usize..300, salt: u64) {
            check_all_consistency_proofs(n, salt);
        }
    }
}
