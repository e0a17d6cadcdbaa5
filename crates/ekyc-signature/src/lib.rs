//! Signature evidence: a client proves control of a certificate's private key by signing
//! the session's to-be-signed bytes ([`ToBeSigned`]: deployment, session, policy, nonce and
//! expiry, so a signature made for another session or deployment does not fit), with a My
//! Number card's JPKI certificate or another, and sends the certificate chain with it. This
//! crate checks the signature over exactly those bytes, builds the chain up to a configured
//! trust anchor, checks validity periods, CA constraints and key usages, looks the
//! certificates up in the anchor's CRL and matches the signer's certificate against the
//! built-in certificate profiles ([`CertificateProfile`]).
//!
//! No personal data comes out: a [`Verdict`], its failures and every `Debug` output name
//! the signer's certificate by issuer, serial number and SHA-256, never by its subject or
//! its JPKI holder-data extensions (name, gender, birth date, address), which are never read.
//!
//! Plain Rust, no gRPC: the orchestrator maps [`SignatureError`] to `INVALID_ARGUMENT` and
//! a [`Verdict`]'s failures to reason codes ([`FailureKind::reason_code`]).
//!
//! ```no_run
//! # use ekyc_signature::*;
//! # fn demo(cfg: &TrustConfig, chain: &[Vec<u8>], sig: &[u8], session: &ToBeSigned) -> Result<(), SignatureError> {
//! let store = TrustStore::load(cfg)?;
//! let to_be_signed = session.to_bytes(); // also handed to the client at StartSession
//! let input = SignatureInput { chain, signature: sig, algorithm: "RSA_PKCS1_SHA256", signed_data: None };
//! let verdict = store.verify(&input, &to_be_signed, Some("jpki-user-authentication"), std::time::SystemTime::now())?;
//! if !verdict.valid {
//!     for f in &verdict.failures {
//!         eprintln!("{}: {}", f.kind.reason_code(), f.message);
//!     }
//! }
//! # Ok(()) }
//! ```

mod algorithm;
mod clock;
mod config;
mod name;
mod profile;
mod store;
mod tbs;
mod verify;

pub use algorithm::SUPPORTED_ALGORITHMS;
pub use config::{AnchorConfig, TrustConfig};
pub use profile::{CertificateProfile, PROFILE_NAMES};
pub use store::{Anchor, TrustStore};
pub use tbs::{ContextField, MAX_ISSUER_BYTES, MAX_TO_BE_SIGNED_BYTES, TO_BE_SIGNED_HEADER, ToBeSigned};
pub use verify::{Failure, FailureKind, Revocation, SignatureInput, Verdict};

/// Limits on what a client may send, checked before any parsing.
pub const MAX_CHAIN_CERTIFICATES: usize = 8;
/// Largest accepted DER certificate, in bytes.
pub const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;

/// Why signature evidence could not be judged at all. Problems with the evidence itself
/// (bad signature, expired or revoked certificate, unknown issuer) are not errors: they are
/// a [`Verdict`] with failures.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The client named an algorithm outside [`SUPPORTED_ALGORITHMS`].
    #[error("unsupported signature algorithm {0:?}; use one of: {list}", list = SUPPORTED_ALGORITHMS.join(", "))]
    UnsupportedAlgorithm(String),
    /// A certificate of the chain is not DER X.509, or the chain breaks a size limit.
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    /// No certificate was sent.
    #[error("the certificate chain is empty; send the signing certificate first, then any intermediates")]
    EmptyChain,
    /// The trust configuration (anchors, CRLs) cannot be used, or a required certificate
    /// profile is not a built-in one.
    #[error("signature trust configuration: {0}")]
    Config(String),
}
