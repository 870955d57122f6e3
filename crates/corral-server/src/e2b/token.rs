//! envd access tokens. E2B's SDKs send the token from the create response with every
//! call to the sandbox; corral hands out one that is good for that sandbox only,
//! never the caller's API key: `e2bt_<key id>_<hex HMAC-SHA256(secret, key id, sandbox
//! id)>`. The secret is the daemon's own (DIR/e2b-token.key, 0600), so a token cannot
//! be forged, and checking one also checks that its key is still live: revoking the key
//! revokes its tokens.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::ServerError;

/// Loads the daemon's token secret, creating it on first start.
pub(crate) fn load_secret(data_dir: &Path) -> Result<[u8; 32], ServerError> {
    let path = data_dir.join("e2b-token.key");
    let err = ServerError::TokenKey;
    match std::fs::read(&path) {
        Ok(b) if b.len() == 32 => {
            let mut k = [0u8; 32];
            k.copy_from_slice(&b);
            return Ok(k);
        }
        Ok(_) => {
            return Err(err(format!(
                "{} is not a 32-byte key; remove it to have a new one made (outstanding E2B sandbox tokens stop working)",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(format!("reading {}: {e}", path.display()))),
    }
    let mut k = [0u8; 32];
    getrandom::fill(&mut k)
        .map_err(|e| err(format!("no randomness for the E2B token key: {e}")))?;
    let tmp = data_dir.join(".e2b-token.key.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| err(format!("writing {}: {e}", tmp.display())))?;
    f.write_all(&k)
        .and_then(|_| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| err(format!("writing {}: {e}", path.display())))?;
    Ok(k)
}

fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, b) in key.iter().enumerate() {
        ipad[i] ^= b;
        opad[i] ^= b;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn mac(secret: &[u8; 32], key_id: &str, sandbox: &str) -> String {
    let msg = format!("corral-e2b-envd\0{key_id}\0{sandbox}");
    hmac_sha256(secret, msg.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The token for `sandbox`, issued to the key `key_id`.
pub(crate) fn issue(secret: &[u8; 32], key_id: &str, sandbox: &str) -> String {
    format!("e2bt_{key_id}_{}", mac(secret, key_id, sandbox))
}

/// The key id a token was issued to, if the token is genuine for `sandbox`.
pub(crate) fn verify<'t>(secret: &[u8; 32], token: &'t str, sandbox: &str) -> Option<&'t str> {
    let rest = token.strip_prefix("e2bt_")?;
    let (key_id, tag) = rest.rsplit_once('_')?;
    let want = mac(secret, key_id, sandbox);
    // Constant-time: the comparison does not stop at the first differing byte.
    let same = want.len() == tag.len()
        && want
            .bytes()
            .zip(tag.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    same.then_some(key_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_test_case_1() {
        // RFC 4231 test case 1 uses a 20-byte key; pad it to our 32-byte form, which
        // HMAC treats identically (keys shorter than the block are zero-padded).
        let mut key = [0u8; 32];
        key[..20].copy_from_slice(&[0x0b; 20]);
        let out: String = hmac_sha256(&key, b"Hi There")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            out,
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn tokens_are_bound_to_their_sandbox_and_secret() {
        let s = [7u8; 32];
        let t = issue(&s, "key-0123456789abcdef", "sb-1");
        assert_eq!(verify(&s, &t, "sb-1"), Some("key-0123456789abcdef"));
        assert_eq!(verify(&s, &t, "sb-2"), None);
        assert_eq!(verify(&[8u8; 32], &t, "sb-1"), None);
        assert_eq!(verify(&s, "crl_abc", "sb-1"), None);
        let forged = t.replace("key-0123456789abcdef", "key-ffffffffffffffff");
        assert_eq!(verify(&s, &forged, "sb-1"), None);
    }
}
