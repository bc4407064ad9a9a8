//! The Merkle tree over the tenant chains' heads that a checkpoint signs, and the inclusion
//! proof that lets one tenant's export be checked against a checkpoint without the others.
//!
//! The tree is RFC 6962's (Certificate Transparency): leaves in order, `leaf = SHA-256(0x00 ‖
//! data)`, `node = SHA-256(0x01 ‖ left ‖ right)`, a tree of `n` leaves split at the largest power
//! of two below `n`, the empty tree's root `SHA-256("")`. A leaf's data is the canonical JSON
//! `{"hash":…,"position":…,"tenant":…}` of one tenant chain's head (the last link of that
//! tenant's chain at the checkpoint's position, and its position); leaves are sorted by tenant
//! id (bytes), each tenant once.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One tenant chain's head, as a leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantHead {
    pub tenant: String,
    pub position: i64,
    pub hash: String,
}

impl TenantHead {
    /// The leaf's data.
    pub fn leaf_data(&self) -> String {
        crate::audit::canonical::to_canonical_string(&serde_json::json!({
            "hash": self.hash, "position": self.position, "tenant": self.tenant
        }))
    }

    pub fn leaf_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(self.leaf_data().as_bytes());
        h.finalize().into()
    }
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn root_of(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// Sorts `heads` by tenant, the order the tree is built in.
pub fn sort(heads: &mut [TenantHead]) {
    heads.sort_by(|a, b| a.tenant.as_bytes().cmp(b.tenant.as_bytes()));
}

/// The root (hex) of the tree over `heads` (sorted by [`sort`]).
pub fn root(heads: &[TenantHead]) -> String {
    let leaves: Vec<[u8; 32]> = heads.iter().map(TenantHead::leaf_hash).collect();
    hex::encode(root_of(&leaves))
}

/// The inclusion proof of leaf `index` in a tree of `leaves`: sibling hashes from the leaf up.
fn path(index: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if index < k {
        let mut p = path(index, &leaves[..k]);
        p.push(root_of(&leaves[k..]));
        p
    } else {
        let mut p = path(index - k, &leaves[k..]);
        p.push(root_of(&leaves[..k]));
        p
    }
}

/// What proves one tenant head is a leaf of a checkpoint's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub head: TenantHead,
    pub index: usize,
    pub tree_size: usize,
    /// Sibling hashes (hex), from the leaf up.
    pub path: Vec<String>,
}

/// The proof for `tenant` among `heads` (sorted), or `None` when it has no chain there.
pub fn prove(heads: &[TenantHead], tenant: &str) -> Option<InclusionProof> {
    let index = heads.iter().position(|h| h.tenant == tenant)?;
    let leaves: Vec<[u8; 32]> = heads.iter().map(TenantHead::leaf_hash).collect();
    Some(InclusionProof {
        head: heads[index].clone(),
        index,
        tree_size: heads.len(),
        path: path(index, &leaves).iter().map(hex::encode).collect(),
    })
}

/// The root a proof leads to (hex), or `None` when the proof is malformed. RFC 9162 §2.1.3.2.
pub fn root_from_proof(proof: &InclusionProof) -> Option<String> {
    if proof.index >= proof.tree_size {
        return None;
    }
    let mut fnode = proof.index;
    let mut snode = proof.tree_size - 1;
    let mut r = proof.head.leaf_hash();
    for sibling in &proof.path {
        let p: [u8; 32] = hex::decode(sibling).ok()?.try_into().ok()?;
        if snode == 0 {
            return None;
        }
        if fnode % 2 == 1 || fnode == snode {
            r = node(&p, &r);
            if fnode % 2 == 0 {
                while fnode % 2 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node(&r, &p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    (snode == 0).then(|| hex::encode(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(n: usize) -> Vec<TenantHead> {
        let mut h: Vec<TenantHead> = (0..n)
            .map(|i| TenantHead {
                tenant: format!("shop-{i:03}"),
                position: i as i64 + 1,
                hash: hex::encode(Sha256::digest(i.to_string())),
            })
            .collect();
        sort(&mut h);
        h
    }

    #[test]
    fn every_leaf_proves_into_the_root_for_every_size() {
        for n in 1..=17 {
            let hs = heads(n);
            let root = root(&hs);
            for h in &hs {
                let proof = prove(&hs, &h.tenant).unwrap();
                assert_eq!(
                    root_from_proof(&proof).as_deref(),
                    Some(root.as_str()),
                    "n={n}"
                );
                let mut forged = proof.clone();
                forged.head.hash = "0".repeat(64);
                assert_ne!(root_from_proof(&forged).as_deref(), Some(root.as_str()));
            }
        }
        assert!(prove(&heads(3), "shop-x").is_none());
    }

    #[test]
    fn the_root_changes_with_any_head() {
        let mut hs = heads(5);
        let r = root(&hs);
        hs[2].position += 1;
        assert_ne!(root(&hs), r);
    }
}
