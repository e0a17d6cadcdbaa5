//! Sealed state: every record a service keeps outside its own memory (Redis or the
//! in-process stores) is one AES-256-GCM blob whose associated data binds the record's kind,
//! id and revision, so a record cannot be read, altered, moved to another id or kind, or
//! passed off as another revision of itself without the key. Keyed digests (HMAC-SHA-256)
//! for values that must be recognised later without being kept (replayed frames).
//!
//! Keys come from a key file with key ids, so they can be rotated: the first key seals and
//! digests, every key listed opens and recognises. The file is text, one key a line:
//!
//! ```text
//! # kid  key (32 bytes, hex)
//! 2026-11 5f0c...e1
//! 2026-05 9a33...07
//! ```
//!
//! A blob is `"EK1" | kid length (1 byte) | kid | nonce (12 bytes) | ciphertext and tag`.
//! The key in the file never encrypts directly: one subkey for sealing and one for digests
//! are derived from it with HMAC-SHA-256.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const MAGIC: &[u8; 3] = b"EK1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a key file could not be used or a blob could not be opened. The texts name no key
/// material and no record content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("key file: {0}")]
    KeyFile(String),
    #[error("sealed record is malformed")]
    Malformed,
    #[error("sealed record names key id {0:?}, which is not configured")]
    UnknownKey(String),
    #[error("sealed record does not open: altered, or sealed for another record, kind or revision")]
    Tampered,
    #[error("no randomness: {0}")]
    Random(String),
}

struct Key {
    kid: String,
    seal: Aes256Gcm,
    digest: Hmac<Sha256>,
}

/// The keys of one purpose (sessions, challenges, replay digests), current first.
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("Keyring").field("kids", &kids).field("keys", &"<redacted>").finish()
    }
}

fn subkey(master: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(master).expect("HMAC takes any key length");
    m.update(b"ekyc-keyring/v1\0");
    m.update(label);
    m.finalize().into_bytes().into()
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= 64 && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

impl Keyring {
    /// A keyring of `(kid, 32-byte key)` pairs, current first.
    pub fn new(keys: Vec<(String, [u8; 32])>) -> Result<Keyring, SealError> {
        if keys.is_empty() {
            return Err(SealError::KeyFile("no key".into()));
        }
        let mut out: Vec<Key> = Vec::with_capacity(keys.len());
        for (kid, master) in keys {
            if !valid_kid(&kid) {
                return Err(SealError::KeyFile(format!("key id {kid:?}: 1 to 64 characters of A-Z a-z 0-9 - _ . :")));
            }
            if out.iter().any(|k| k.kid == kid) {
                return Err(SealError::KeyFile(format!("key id {kid:?} appears twice")));
            }
            let seal = Aes256Gcm::new_from_slice(&subkey(&master, b"seal")).expect("32-byte key");
            let digest = <Hmac<Sha256> as Mac>::new_from_slice(&subkey(&master, b"digest")).expect("HMAC takes any key length");
            out.push(Key { kid, seal, digest });
        }
        Ok(Keyring { keys: out })
    }

    /// One fresh random key held in memory only (tests, and stores that live and die with
    /// their process).
    pub fn ephemeral() -> Result<Keyring, SealError> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| SealError::Random(e.to_string()))?;
        Keyring::new(vec![("ephemeral".into(), k)])
    }

    /// Parses the key file format (see the module docs).
    pub fn parse(text: &str) -> Result<Keyring, SealError> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(kid), Some(hex_key), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(SealError::KeyFile(format!("line {}: expected `KID HEXKEY`", n + 1)));
            };
            let bytes = hex::decode(hex_key).map_err(|_| SealError::KeyFile(format!("line {}: the key is not hex", n + 1)))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|b: Vec<u8>| SealError::KeyFile(format!("line {}: the key has {} bytes, 32 needed", n + 1, b.len())))?;
            keys.push((kid.to_string(), key));
        }
        Keyring::new(keys)
    }

    /// Reads a key file.
    pub fn from_file(path: &Path) -> Result<Keyring, SealError> {
        let text = std::fs::read_to_string(path).map_err(|e| SealError::KeyFile(format!("reading {}: {e}", path.display())))?;
        Keyring::parse(&text).map_err(|e| match e {
            SealError::KeyFile(m) => SealError::KeyFile(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Reads the key file at `path`, or creates it with one random key (readable by its owner
    /// only) when it does not exist. True when it was created.
    pub fn load_or_create(path: &Path) -> Result<(Keyring, bool), SealError> {
        if path.exists() {
            return Ok((Keyring::from_file(path)?, false));
        }
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| SealError::Random(e.to_string()))?;
        let mut id = [0u8; 4];
        getrandom::fill(&mut id).map_err(|e| SealError::Random(e.to_string()))?;
        let kid = format!("k{}", hex::encode(id));
        let text = format!("# ekyc key file: KID HEXKEY a line; the first key seals, every key opens.\n{kid} {}\n", hex::encode(k));
        write_private(path, &text).map_err(|e| SealError::KeyFile(format!("writing {}: {e}", path.display())))?;
        Ok((Keyring::new(vec![(kid, k)])?, true))
    }

    /// The id of the key that seals.
    pub fn current_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// Seals `plaintext` as revision `rev` of record `id` of `kind`.
    pub fn seal(&self, kind: &str, id: &str, rev: u64, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
        let aad = aad(kind, id, rev);
        let ct = key.seal.encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad }).map_err(|_| SealError::Malformed)?;
        let mut out = Vec::with_capacity(MAGIC.len() + 1 + key.kid.len() + NONCE_LEN + ct.len());
        out.extend_from_slice(MAGIC);
        out.push(key.kid.len() as u8);
        out.extend_from_slice(key.kid.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a blob sealed as revision `rev` of record `id` of `kind`, with whichever
    /// configured key it names.
    pub fn open(&self, kind: &str, id: &str, rev: u64, blob: &[u8]) -> Result<Vec<u8>, SealError> {
        let rest = blob.strip_prefix(MAGIC.as_slice()).ok_or(SealError::Malformed)?;
        let (&kid_len, rest) = rest.split_first().ok_or(SealError::Malformed)?;
        let kid_len = usize::from(kid_len);
        if rest.len() < kid_len + NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (kid, rest) = rest.split_at(kid_len);
        let kid = std::str::from_utf8(kid).map_err(|_| SealError::Malformed)?;
        let key = self.keys.iter().find(|k| k.kid == kid).ok_or_else(|| SealError::UnknownKey(kid.chars().take(64).collect()))?;
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let aad = aad(kind, id, rev);
        key.seal.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad }).map_err(|_| SealError::Tampered)
    }

    /// The keyed digest (HMAC-SHA-256) of `data` for `purpose`, under the current key: what
    /// is remembered instead of the data.
    pub fn digest(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        digest_with(&self.keys[0], purpose, data)
    }

    /// The digests of `data` under every configured key, current first: what to look for
    /// when a value remembered before a key rotation must still be recognised.
    pub fn digests(&self, purpose: &str, data: &[u8]) -> Vec<[u8; 32]> {
        self.keys.iter().map(|k| digest_with(k, purpose, data)).collect()
    }
}

fn digest_with(key: &Key, purpose: &str, data: &[u8]) -> [u8; 32] {
    let mut m = key.digest.clone();
    m.update(purpose.as_bytes());
    m.update(b"\0");
    m.update(data);
    m.finalize().into_bytes().into()
}

fn aad(kind: &str, id: &str, rev: u64) -> Vec<u8> {
    format!("ekyc-sealed/v1\0{kind}\0{id}\0{rev}").into_bytes()
}

/// Writes a secret readable by its owner only (on Unix), never replacing an existing file;
/// creates the parent folder.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(kids: &[(&str, u8)]) -> Keyring {
        Keyring::new(kids.iter().map(|(k, b)| (k.to_string(), [*b; 32])).collect()).expect("keys")
    }

    #[test]
    fn opens_only_as_the_record_it_was_sealed_as() {
        let r = ring(&[("a", 1)]);
        let blob = r.seal("session", "s1", 3, b"secret evidence").expect("seal");
        assert!(!blob.windows(6).any(|w| w == b"secret"), "sealed, not encoded");
        assert_eq!(r.open("session", "s1", 3, &blob).expect("opens"), b"secret evidence");
        assert_eq!(r.open("session", "s2", 3, &blob), Err(SealError::Tampered), "another id");
        assert_eq!(r.open("challenge", "s1", 3, &blob), Err(SealError::Tampered), "another kind");
        assert_eq!(r.open("session", "s1", 4, &blob), Err(SealError::Tampered), "another revision");
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(r.open("session", "s1", 3, &bad).is_err(), "flipping byte {i} must not open");
        }
        assert_eq!(r.open("session", "s1", 3, &blob[..blob.len() - 1]), Err(SealError::Tampered));
        assert_eq!(r.open("session", "s1", 3, b"EK1"), Err(SealError::Malformed));
        assert_eq!(r.open("session", "s1", 3, b"{\"json\":1}"), Err(SealError::Malformed));
        assert_ne!(r.seal("session", "s1", 3, b"secret evidence").expect("seal"), blob, "fresh nonce each time");
    }

    #[test]
    fn rotation_keeps_old_records_readable_and_seals_with_the_new_key() {
        let old = ring(&[("2026-05", 1)]);
        let blob = old.seal("challenge", "c", 1, b"x").expect("seal");
        let rotated = ring(&[("2026-11", 2), ("2026-05", 1)]);
        assert_eq!(rotated.open("challenge", "c", 1, &blob).expect("previous key opens"), b"x");
        let new_blob = rotated.seal("challenge", "c", 1, b"y").expect("seal");
        assert_eq!(old.open("challenge", "c", 1, &new_blob), Err(SealError::UnknownKey("2026-11".into())));
        assert_eq!(rotated.digests("frame", b"img")[1], old.digest("frame", b"img"), "old digests are still recognised");
        assert_ne!(rotated.digest("frame", b"img"), old.digest("frame", b"img"));
        assert_ne!(old.digest("frame", b"img"), old.digest("document", b"img"), "purposes are separate");
        // Same master key, different kid: still another key for nobody but the holder.
        let other = ring(&[("a", 9)]);
        assert_eq!(other.open("challenge", "c", 1, &blob), Err(SealError::UnknownKey("2026-05".into())));
    }

    #[test]
    fn key_files_parse_strictly_and_debug_hides_keys() {
        let text = format!("# comment\nnew {}\nold {}\n", "11".repeat(32), "22".repeat(32));
        let r = Keyring::parse(&text).expect("parses");
        assert_eq!(r.current_kid(), "new");
        let dbg = format!("{r:?}");
        assert!(dbg.contains("new") && !dbg.contains("1111") && !dbg.contains("2222"), "{dbg}");
        assert!(Keyring::parse("").is_err());
        assert!(Keyring::parse(&format!("k {}", "11".repeat(16))).is_err(), "short key");
        assert!(Keyring::parse("k nothex").is_err());
        assert!(Keyring::parse(&format!("k {0}\nk {0}", "11".repeat(32))).is_err(), "duplicate kid");
        assert!(Keyring::parse(&format!("bad/kid {}", "11".repeat(32))).is_err());
        let err = Keyring::parse(&format!("k {} extra", "ab".repeat(32))).expect_err("three fields");
        assert!(!err.to_string().contains("abab"), "errors never echo key material: {err}");
    }

    #[test]
    fn created_key_files_are_private_and_reused() {
        let dir = tempdir();
        let path = dir.join("sub").join("state.keys");
        let (a, created) = Keyring::load_or_create(&path).expect("created");
        assert!(created);
        let (b, created) = Keyring::load_or_create(&path).expect("reused");
        assert!(!created);
        assert_eq!(a.current_kid(), b.current_kid());
        let blob = a.seal("k", "i", 1, b"v").expect("seal");
        assert_eq!(b.open("k", "i", 1, &blob).expect("same key"), b"v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).expect("file").permissions().mode() & 0o077, 0);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempdir() -> std::path::PathBuf {
        let mut n = [0u8; 8];
        getrandom::fill(&mut n).expect("random");
        let d = std::env::temp_dir().join(format!("ekyc-seal-{}", hex::encode(n)));
        std::fs::create_dir_all(&d).expect("dir");
        d
    }
}
