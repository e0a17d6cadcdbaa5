//! The signature algorithms a client may name for its signature over the nonce, and which
//! kind of public key each needs. The names are part of the API (`signature_algorithm`).

use ring::signature as rs;

/// Every accepted `signature_algorithm` name. RSA-PSS uses MGF1 with the same hash and a
/// salt as long as the hash; `ECDSA_*` signatures are DER, `ECDSA_*_FIXED` are `r || s`.
pub const SUPPORTED_ALGORITHMS: [&str; 11] = [
    "RSA_PKCS1_SHA256",
    "RSA_PKCS1_SHA384",
    "RSA_PKCS1_SHA512",
    "RSA_PSS_SHA256",
    "RSA_PSS_SHA384",
    "RSA_PSS_SHA512",
    "ECDSA_P256_SHA256",
    "ECDSA_P384_SHA384",
    "ECDSA_P256_SHA256_FIXED",
    "ECDSA_P384_SHA384_FIXED",
    "ED25519",
];

/// The kind of subject public key a certificate holds, as far as signatures care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
    /// Anything else, named for messages (an OID, or a curve OID).
    Other(String),
}

impl KeyKind {
    pub(crate) fn describe(&self) -> String {
        match self {
            KeyKind::Rsa => "RSA".into(),
            KeyKind::EcP256 => "ECDSA P-256".into(),
            KeyKind::EcP384 => "ECDSA P-384".into(),
            KeyKind::Ed25519 => "Ed25519".into(),
            KeyKind::Other(what) => format!("unsupported ({what})"),
        }
    }
}

/// One accepted algorithm: its API name, the key it needs and ring's verifier.
#[derive(Debug, Clone)]
pub(crate) struct Algorithm {
    pub(crate) name: &'static str,
    pub(crate) key: KeyKind,
    verifier: &'static dyn rs::VerificationAlgorithm,
}

impl Algorithm {
    /// The algorithm of this exact name (case-sensitive), if it is supported.
    pub(crate) fn from_name(name: &str) -> Option<Algorithm> {
        let (verifier, key): (&'static dyn rs::VerificationAlgorithm, KeyKind) = match name {
            "RSA_PKCS1_SHA256" => (&rs::RSA_PKCS1_2048_8192_SHA256, KeyKind::Rsa),
            "RSA_PKCS1_SHA384" => (&rs::RSA_PKCS1_2048_8192_SHA384, KeyKind::Rsa),
            "RSA_PKCS1_SHA512" => (&rs::RSA_PKCS1_2048_8192_SHA512, KeyKind::Rsa),
            "RSA_PSS_SHA256" => (&rs::RSA_PSS_2048_8192_SHA256, KeyKind::Rsa),
            "RSA_PSS_SHA384" => (&rs::RSA_PSS_2048_8192_SHA384, KeyKind::Rsa),
            "RSA_PSS_SHA512" => (&rs::RSA_PSS_2048_8192_SHA512, KeyKind::Rsa),
            "ECDSA_P256_SHA256" => (&rs::ECDSA_P256_SHA256_ASN1, KeyKind::EcP256),
            "ECDSA_P384_SHA384" => (&rs::ECDSA_P384_SHA384_ASN1, KeyKind::EcP384),
            "ECDSA_P256_SHA256_FIXED" => (&rs::ECDSA_P256_SHA256_FIXED, KeyKind::EcP256),
            "ECDSA_P384_SHA384_FIXED" => (&rs::ECDSA_P384_SHA384_FIXED, KeyKind::EcP384),
            "ED25519" => (&rs::ED25519, KeyKind::Ed25519),
            _ => return None,
        };
        let name = SUPPORTED_ALGORITHMS.iter().copied().find(|n| *n == name)?;
        Some(Algorithm { name, verifier, key })
    }

    /// Checks `signature` over `message` with the raw subject public key bits of a
    /// certificate (RSAPublicKey DER, an uncompressed EC point, or 32 Ed25519 bytes).
    pub(crate) fn verify(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        rs::UnparsedPublicKey::new(self.verifier, public_key).verify(message, signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_is_supported_and_nothing_else() {
        for name in SUPPORTED_ALGORITHMS {
            assert_eq!(Algorithm::from_name(name).map(|a| a.name), Some(name));
        }
        for name in ["rsa_pkcs1_sha256", "RSA_PKCS1_SHA1", "ECDSA_P521_SHA512", "ED448", "", "RSA_PKCS1_SHA256 "] {
            assert!(Algorithm::from_name(name).is_none(), "{name}");
        }
    }
}
