//! Compact JWS with EdDSA: `base64url(header) . base64url(payload) . base64url(signature)`.
//! Verification is strict so that changing any byte of a record makes it fail: only EdDSA,
//! a known `kid`, canonical unpadded base64url (no stray trailing bits), Ed25519 verified
//! with the strict rules (no malleable signatures), and no `crit` extensions.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signature;
use serde_json::{Value, json};

use crate::{EvidenceError, EvidenceKey, EvidencePublicKey};

/// The `typ` header of evidence records (RFC 8725 explicit typing). `"JWT"` is accepted too.
pub const JWS_TYPE: &str = "ekyc-evidence+jwt";

/// Largest record [`verify`] reads, in bytes.
const MAX_JWS_BYTES: usize = 1 << 20;

pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url only in its canonical form: the one string that encodes
/// these bytes (the decoder already refuses non-zero trailing bits; re-encoding checks it).
pub(crate) fn b64_decode_strict(text: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    (URL_SAFE_NO_PAD.encode(&bytes) == text).then_some(bytes)
}

/// The `kid` a record's header names, without verifying anything: to tell which key a
/// record needs, or which key just verified it.
pub fn record_kid(jws: &str) -> Option<String> {
    let header = b64_decode_strict(jws.split('.').next()?)?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    header.get("kid")?.as_str().map(str::to_string)
}

/// Signs `payload` (any JSON; an object in practice) as a compact JWS with header
/// `{"alg":"EdDSA","typ":"ekyc-evidence+jwt","kid":<thumbprint>}`.
pub fn sign(key: &EvidenceKey, payload: &Value) -> Result<String, EvidenceError> {
    let header = json!({ "alg": "EdDSA", "typ": JWS_TYPE, "kid": key.kid() });
    let header = serde_json::to_vec(&header).map_err(|e| EvidenceError::Payload(e.to_string()))?;
    let payload = serde_json::to_vec(payload).map_err(|e| EvidenceError::Payload(e.to_string()))?;
    let signing_input = format!("{}.{}", b64(header), b64(payload));
    let signature = key.sign_bytes(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", b64(signature)))
}

/// Checks a compact JWS made by [`sign`] against `key` (one key, or a set from a JWKS from
/// which the header's `kid` picks) and returns its payload.
pub fn verify(jws: &str, key: &EvidencePublicKey) -> Result<Value, EvidenceError> {
    let malformed = |what: &str| EvidenceError::Malformed(what.to_string());
    if jws.len() > MAX_JWS_BYTES {
        return Err(malformed("larger than 1 MiB"));
    }
    let parts: Vec<&str> = jws.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts[..] else {
        return Err(malformed("a compact JWS is three base64url parts separated by '.'"));
    };
    let header = b64_decode_strict(header_b64).ok_or_else(|| malformed("the header is not canonical base64url"))?;
    let header: Value = serde_json::from_slice(&header).map_err(|_| malformed("the header is not JSON"))?;
    let header = header.as_object().ok_or_else(|| malformed("the header is not a JSON object"))?;
    match header.get("alg").and_then(Value::as_str) {
        Some("EdDSA") => {}
        Some(other) => return Err(EvidenceError::Algorithm(other.to_string())),
        None => return Err(EvidenceError::Algorithm("(missing)".into())),
    }
    if header.contains_key("crit") {
        return Err(malformed("the header has critical extensions (crit), which are not supported"));
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) if t == JWS_TYPE || t == "JWT" => {}
        Some(other) => return Err(EvidenceError::Malformed(format!("the header's typ {other} is not {JWS_TYPE}"))),
    }
    let kid = header.get("kid").and_then(Value::as_str).ok_or_else(|| malformed("the header has no kid"))?;
    let verifying_key = key.find(kid).ok_or_else(|| EvidenceError::WrongKey { found: kid.to_string(), expected: key.kids().join(", ") })?;
    let signature = b64_decode_strict(signature_b64).ok_or_else(|| malformed("the signature is not canonical base64url"))?;
    let signature = Signature::from_slice(&signature).map_err(|_| malformed("the signature is not 64 bytes"))?;
    let signing_input = &jws[..header_b64.len() + 1 + payload_b64.len()];
    verifying_key.verify_strict(signing_input.as_bytes(), &signature).map_err(|_| EvidenceError::BadSignature)?;
    let payload = b64_decode_strict(payload_b64).ok_or_else(|| malformed("the payload is not canonical base64url"))?;
    serde_json::from_slice(&payload).map_err(|_| malformed("the payload is not JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    fn record() -> Value {
        json!({"session_id": "s-123", "decision": "APPROVED", "policy": "municipal-basic", "scores": {"match": 0.83}, "note": "日本語"})
    }

    #[test]
    fn a_signed_record_verifies_and_returns_its_payload() {
        let key = EvidenceKey::generate();
        let jws = sign(&key, &record()).expect("signs");
        assert_eq!(verify(&jws, &key.public()).expect("verifies"), record());
        let header: Value = serde_json::from_slice(&b64_decode_strict(jws.split('.').next().expect("header")).expect("b64")).expect("JSON");
        assert_eq!(header, json!({"alg": "EdDSA", "typ": JWS_TYPE, "kid": key.kid()}));
        assert_eq!(record_kid(&jws), Some(key.kid()));
        assert_eq!(record_kid("not a record"), None);
    }

    #[test]
    fn changing_any_character_to_any_other_makes_verification_fail() {
        let key = EvidenceKey::generate();
        let public = key.public();
        let jws = sign(&key, &record()).expect("signs");
        let bytes = jws.as_bytes();
        let mut tried = 0;
        for pos in 0..bytes.len() {
            for &c in ALPHABET.iter().chain(b".") {
                if c == bytes[pos] {
                    continue;
                }
                let mut altered = bytes.to_vec();
                altered[pos] = c;
                let altered = String::from_utf8(altered).expect("ASCII");
                assert!(verify(&altered, &public).is_err(), "changing position {pos} to {:?} still verified", c as char);
                tried += 1;
            }
        }
        assert_eq!(tried, bytes.len() * 64);
        // Dropping or adding a character fails too.
        assert!(verify(&jws[..jws.len() - 1], &public).is_err());
        assert!(verify(&format!("{jws}A"), &public).is_err());
        assert!(verify(&format!("{jws}\n"), &public).is_err());
    }

    #[test]
    fn non_canonical_base64url_is_refused() {
        // "QQ" and "QR" both decode to "A" with lenient decoders; only "QQ" is canonical.
        assert_eq!(b64_decode_strict("QQ"), Some(b"A".to_vec()));
        assert_eq!(b64_decode_strict("QR"), None);
        assert_eq!(b64_decode_strict("QQ=="), None);
        assert_eq!(b64_decode_strict("Q+"), None);
    }

    #[test]
    fn another_key_fails_even_when_the_kid_is_forged() {
        let (key, other) = (EvidenceKey::generate(), EvidenceKey::generate());
        let jws = sign(&other, &record()).expect("signs");
        assert!(matches!(verify(&jws, &key.public()), Err(EvidenceError::WrongKey { found, .. }) if found == other.kid()));
        // The other key's record relabelled with our kid: the signature gives it away.
        let parts: Vec<&str> = jws.split('.').collect();
        let forged_header = b64(serde_json::to_vec(&json!({"alg": "EdDSA", "typ": JWS_TYPE, "kid": key.kid()})).expect("JSON"));
        let input = format!("{forged_header}.{}", parts[1]);
        let forged = format!("{input}.{}", b64(other.sign_bytes(input.as_bytes())));
        assert!(matches!(verify(&forged, &key.public()), Err(EvidenceError::BadSignature)));
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let key = EvidenceKey::generate();
        let payload = b64(serde_json::to_vec(&record()).expect("JSON"));
        for alg in ["none", "HS256", "ES256", "eddsa"] {
            let header = b64(serde_json::to_vec(&json!({"alg": alg, "kid": key.kid()})).expect("JSON"));
            let sig = if alg == "none" { String::new() } else { b64(key.sign_bytes(format!("{header}.{payload}").as_bytes())) };
            let jws = format!("{header}.{payload}.{sig}");
            assert!(matches!(verify(&jws, &key.public()), Err(EvidenceError::Algorithm(a)) if a == alg), "{alg}");
        }
    }

    #[test]
    fn headers_with_crit_a_foreign_typ_or_no_kid_are_refused() {
        let key = EvidenceKey::generate();
        let payload = b64(serde_json::to_vec(&record()).expect("JSON"));
        let with = |header: Value| {
            let header = b64(serde_json::to_vec(&header).expect("JSON"));
            let input = format!("{header}.{payload}");
            format!("{input}.{}", b64(key.sign_bytes(input.as_bytes())))
        };
        let kid = key.kid();
        assert!(verify(&with(json!({"alg": "EdDSA", "kid": kid, "typ": "JWT"})), &key.public()).is_ok());
        assert!(verify(&with(json!({"alg": "EdDSA", "kid": kid})), &key.public()).is_ok());
        for bad in [
            json!({"alg": "EdDSA", "kid": kid, "crit": ["exp"], "exp": 1}),
            json!({"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}),
            json!({"alg": "EdDSA"}),
        ] {
            assert!(matches!(verify(&with(bad.clone()), &key.public()), Err(EvidenceError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn a_jwks_verifies_records_of_each_of_its_keys() {
        let (a, b) = (EvidenceKey::generate(), EvidenceKey::generate());
        let set = EvidencePublicKey::from_jwk_json(&json!({"keys": [a.public().jwk(), b.public().jwk()]}).to_string()).expect("JWKS");
        for key in [&a, &b] {
            assert_eq!(verify(&sign(key, &record()).expect("signs"), &set).expect("verifies"), record());
        }
        let stranger = EvidenceKey::generate();
        let e = verify(&sign(&stranger, &record()).expect("signs"), &set).expect_err("not in the set");
        assert!(e.to_string().contains(&a.kid()) && e.to_string().contains(&b.kid()), "{e}");
    }
}
