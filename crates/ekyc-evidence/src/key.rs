//! The evidence signing key (Ed25519) and its public half: PEM files, JWK and JWKS, the RFC
//! 7638 thumbprint used as `kid`, and the key directory the orchestrator creates on first
//! start.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::EvidenceError;
use crate::jws::{b64, b64_decode_strict};

/// The private key file in the keys directory (PKCS#8 PEM, mode 0600 on Unix).
pub const SIGNING_KEY_FILE: &str = "evidence-signing.pem";
/// The public key file beside it (SPKI PEM), for `ekyc evidence verify --key`.
pub const PUBLIC_KEY_FILE: &str = "evidence-public.pem";
/// The public key as a JWKS (`{"keys":[...]}`), for publishing.
pub const JWKS_FILE: &str = "evidence-jwks.json";

/// The Ed25519 key that signs evidence records. The secret is wiped from memory on drop and
/// never printed: `Debug` shows the kid only.
pub struct EvidenceKey {
    signing: SigningKey,
}

impl std::fmt::Debug for EvidenceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceKey").field("kid", &self.kid()).finish_non_exhaustive()
    }
}

impl EvidenceKey {
    /// A new key from the operating system's random number generator.
    ///
    /// # Panics
    /// If the operating system cannot supply random numbers (no key can be made safely).
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).expect("the operating system's random number generator failed; cannot make a key");
        EvidenceKey { signing: SigningKey::from_bytes(&seed) }
    }

    /// Reads a PKCS#8 PEM Ed25519 private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, EvidenceError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|signing| EvidenceKey { signing })
            .map_err(|e| EvidenceError::Key(format!("not a PKCS#8 PEM Ed25519 private key ({e})")))
    }

    /// The private key as PKCS#8 PEM. The caller holds a copy of the secret: write it to a
    /// protected file and drop it (or wrap it in `zeroize::Zeroizing`).
    pub fn to_pkcs8_pem(&self) -> String {
        self.pkcs8_pem().to_string()
    }

    fn pkcs8_pem(&self) -> Zeroizing<String> {
        self.signing.to_pkcs8_pem(LineEnding::LF).expect("an Ed25519 key always encodes as PKCS#8; this is a bug")
    }

    pub fn public(&self) -> EvidencePublicKey {
        EvidencePublicKey { keys: vec![self.signing.verifying_key()] }
    }

    /// The RFC 7638 thumbprint of the public key, base64url: the `kid` of signed records.
    pub fn kid(&self) -> String {
        thumbprint(&self.signing.verifying_key())
    }

    pub(crate) fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Loads the key from `dir/evidence-signing.pem`, or creates the directory and a new key
    /// there (mode 0600 on Unix) when there is none; either way (re)writes the public key
    /// (`evidence-public.pem`) and JWKS (`evidence-jwks.json`) beside it when they differ.
    /// Returns the key and whether it was created.
    pub fn load_or_create(dir: &Path) -> Result<(EvidenceKey, bool), EvidenceError> {
        let path = dir.join(SIGNING_KEY_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| EvidenceError::Io { path, source }
        };
        let (key, created) = match fs::read_to_string(&path) {
            Ok(pem) => {
                let pem = Zeroizing::new(pem);
                let key = EvidenceKey::from_pkcs8_pem(&pem).map_err(|e| EvidenceError::Key(format!("{}: {e}", path.display())))?;
                (key, false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(io(dir))?;
                let key = EvidenceKey::generate();
                match create_private(&path) {
                    Ok(mut file) => {
                        file.write_all(key.pkcs8_pem().as_bytes()).and_then(|()| file.sync_all()).map_err(io(&path))?;
                        (key, true)
                    }
                    // Another process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return EvidenceKey::load_or_create(dir),
                    Err(e) => return Err(io(&path)(e)),
                }
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let public = key.public();
        write_if_changed(&dir.join(PUBLIC_KEY_FILE), &public.to_pem())?;
        let jwks = serde_json::to_string_pretty(&public.jwks()).expect("a JSON value always serializes; this is a bug") + "\n";
        write_if_changed(&dir.join(JWKS_FILE), &jwks)?;
        Ok((key, created))
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).open(path)
}

fn write_if_changed(path: &Path, text: &str) -> Result<(), EvidenceError> {
    if fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    fs::write(path, text).map_err(|source| EvidenceError::Io { path: path.to_path_buf(), source })
}

/// One or more Ed25519 public keys that records may be verified with. Made from one key it
/// is that key; made from a JWKS it holds every Ed25519 key of the set and [`crate::verify`]
/// picks the one whose thumbprint is the record's `kid`. The single-key accessors (`kid`,
/// `to_pem`, `jwk`, `fingerprint`) describe the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidencePublicKey {
    /// Never empty.
    keys: Vec<VerifyingKey>,
}

impl EvidencePublicKey {
    /// Reads an SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, EvidenceError> {
        VerifyingKey::from_public_key_pem(pem)
            .map(|k| EvidencePublicKey { keys: vec![k] })
            .map_err(|e| EvidenceError::Key(format!("not an SPKI PEM Ed25519 public key ({e})")))
    }

    /// Reads one JWK (`{"kty":"OKP","crv":"Ed25519","x":...}`) or a JWKS (`{"keys":[...]}`,
    /// whose keys of other types are skipped). A JWK holding a private key (`d`) is refused.
    pub fn from_jwk_json(json: &str) -> Result<Self, EvidenceError> {
        let value: Value = serde_json::from_str(json).map_err(|e| EvidenceError::Key(format!("not JSON ({e})")))?;
        let keys = match value.get("keys") {
            Some(Value::Array(set)) => {
                let mut keys = Vec::new();
                for (i, jwk) in set.iter().enumerate() {
                    if is_ed25519(jwk) {
                        keys.push(jwk_key(jwk).map_err(|e| EvidenceError::Key(format!("keys[{i}]: {e}")))?);
                    }
                }
                if keys.is_empty() {
                    return Err(EvidenceError::Key("the JWKS holds no Ed25519 (OKP) key".into()));
                }
                keys
            }
            Some(_) => return Err(EvidenceError::Key("\"keys\" is not an array".into())),
            None => vec![jwk_key(&value).map_err(EvidenceError::Key)?],
        };
        Ok(EvidencePublicKey { keys })
    }

    /// The (first) key as SPKI PEM.
    pub fn to_pem(&self) -> String {
        self.keys[0].to_public_key_pem(LineEnding::LF).expect("an Ed25519 key always encodes as SPKI; this is a bug")
    }

    /// The (first) key as a JWK with its kid.
    pub fn jwk(&self) -> Value {
        jwk(&self.keys[0])
    }

    /// Every key as a JWKS: `{"keys":[...]}`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.keys.iter().map(jwk).collect::<Vec<_>>() })
    }

    /// The RFC 7638 thumbprint of the (first) key, base64url.
    pub fn kid(&self) -> String {
        thumbprint(&self.keys[0])
    }

    /// `SHA256:` and the hex SHA-256 of the (first) raw 32-byte public key, for logs and for
    /// comparing keys by eye.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", hex::encode(Sha256::digest(self.keys[0].as_bytes())))
    }

    /// The key whose thumbprint is `kid`.
    pub(crate) fn find(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|k| thumbprint(k) == kid)
    }

    pub(crate) fn kids(&self) -> Vec<String> {
        self.keys.iter().map(thumbprint).collect()
    }
}

fn is_ed25519(jwk: &Value) -> bool {
    jwk.get("kty").and_then(Value::as_str) == Some("OKP") && jwk.get("crv").and_then(Value::as_str) == Some("Ed25519")
}

fn jwk_key(jwk: &Value) -> Result<VerifyingKey, String> {
    if !is_ed25519(jwk) {
        return Err("not an Ed25519 JWK (kty \"OKP\", crv \"Ed25519\")".into());
    }
    if jwk.get("d").is_some() {
        return Err("the JWK holds a private key (\"d\"); give the public key only".into());
    }
    let x = jwk.get("x").and_then(Value::as_str).ok_or("the JWK has no \"x\"")?;
    let bytes: [u8; 32] = b64_decode_strict(x).and_then(|b| b.try_into().ok()).ok_or("\"x\" is not 32 bytes of canonical base64url")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "\"x\" is not a valid Ed25519 public key".to_string())
}

fn jwk(key: &VerifyingKey) -> Value {
    json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(key.as_bytes()), "kid": thumbprint(key), "alg": "EdDSA", "use": "sig" })
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
fn thumbprint(key: &VerifyingKey) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(key.as_bytes()));
    b64(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8037 appendix A.1 to A.3: the example key and its thumbprint.
    const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn rfc8037_key() -> EvidenceKey {
        let d: [u8; 32] = b64_decode_strict(RFC8037_D).and_then(|b| b.try_into().ok()).expect("32 bytes");
        EvidenceKey { signing: SigningKey::from_bytes(&d) }
    }

    #[test]
    fn kid_is_the_rfc_7638_thumbprint_of_rfc_8037() {
        let key = rfc8037_key();
        assert_eq!(key.public().jwk()["x"], RFC8037_X);
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(key.public().kid(), key.kid());
    }

    #[test]
    fn signs_the_rfc_8037_example_byte_for_byte() {
        // A.4: header {"alg":"EdDSA"}, payload "Example of Ed25519 signing".
        let sig = rfc8037_key().sign_bytes(b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc");
        assert_eq!(b64(sig), "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg");
    }

    #[test]
    fn keys_round_trip_through_pem_and_jwk() {
        let key = EvidenceKey::generate();
        let again = EvidenceKey::from_pkcs8_pem(&key.to_pkcs8_pem()).expect("own PEM");
        assert_eq!(again.kid(), key.kid());
        assert_ne!(EvidenceKey::generate().kid(), key.kid());
        let public = key.public();
        assert!(public.to_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(EvidencePublicKey::from_pem(&public.to_pem()).expect("own PEM"), public);
        assert_eq!(EvidencePublicKey::from_jwk_json(&public.jwk().to_string()).expect("own JWK"), public);
        assert_eq!(EvidencePublicKey::from_jwk_json(&public.jwks().to_string()).expect("own JWKS"), public);
        assert_eq!(public.fingerprint().len(), "SHA256:".len() + 64);
        assert!(!format!("{key:?}").contains(&key.to_pkcs8_pem()[30..60]), "Debug shows no secret");
    }

    #[test]
    fn unusable_keys_are_refused_with_a_reason() {
        let err = |r: Result<EvidencePublicKey, EvidenceError>| r.expect_err("refused").to_string();
        assert!(err(EvidencePublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")).contains("SPKI"));
        assert!(EvidenceKey::from_pkcs8_pem("not a key").is_err());
        let mut jwk = EvidenceKey::generate().public().jwk();
        jwk["d"] = json!(RFC8037_D);
        assert!(err(EvidencePublicKey::from_jwk_json(&jwk.to_string())).contains("private key"));
        assert!(err(EvidencePublicKey::from_jwk_json(r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#)).contains("not an Ed25519 JWK"));
        assert!(err(EvidencePublicKey::from_jwk_json(r#"{"keys":[{"kty":"RSA"}]}"#)).contains("no Ed25519"));
        assert!(err(EvidencePublicKey::from_jwk_json(r#"{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#)).contains("32 bytes"));
    }

    #[test]
    fn a_jwks_keeps_every_ed25519_key_for_lookup_by_kid() {
        let (a, b) = (EvidenceKey::generate(), EvidenceKey::generate());
        let set = json!({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}, a.public().jwk(), b.public().jwk()]});
        let keys = EvidencePublicKey::from_jwk_json(&set.to_string()).expect("JWKS");
        assert_eq!(keys.kids(), vec![a.kid(), b.kid()]);
        assert!(keys.find(&b.kid()).is_some() && keys.find("nope").is_none());
        assert_eq!(keys.kid(), a.kid());
    }

    #[test]
    fn load_or_create_creates_once_then_loads_the_same_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = dir.path().join("nested").join("ekyc-keys");
        let (first, created) = EvidenceKey::load_or_create(&keys).expect("creates");
        assert!(created);
        let (second, created) = EvidenceKey::load_or_create(&keys).expect("loads");
        assert!(!created);
        assert_eq!(first.kid(), second.kid());
        let public = EvidencePublicKey::from_pem(&fs::read_to_string(keys.join(PUBLIC_KEY_FILE)).expect("public PEM")).expect("parses");
        assert_eq!(public.kid(), first.kid());
        let jwks = EvidencePublicKey::from_jwk_json(&fs::read_to_string(keys.join(JWKS_FILE)).expect("JWKS")).expect("parses");
        assert_eq!(jwks.kid(), first.kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(keys.join(SIGNING_KEY_FILE)).expect("key file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A lost public file comes back; a damaged private key is an error naming the file.
        fs::remove_file(keys.join(PUBLIC_KEY_FILE)).expect("remove");
        EvidenceKey::load_or_create(&keys).expect("loads");
        assert!(keys.join(PUBLIC_KEY_FILE).exists());
        fs::write(keys.join(SIGNING_KEY_FILE), "garbage").expect("overwrite");
        let e = EvidenceKey::load_or_create(&keys).expect_err("damaged key");
        assert!(e.to_string().contains(SIGNING_KEY_FILE), "{e}");
    }
}
