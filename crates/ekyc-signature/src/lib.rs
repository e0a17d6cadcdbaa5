//! Signature evidence: a client proves control of a certificate's private key by signing a
//! session nonce (what the JPKI signing certificate of a Japanese My Number card provides),
//! and sends the certificate chain with it. This crate checks the signature over the exact
//! nonce bytes, builds the chain up to a configured trust anchor, checks validity periods,
//! CA constraints and key usages, and looks the certificates up in the anchor's CRL.
//!
//! Plain Rust, no gRPC: the orchestrator maps [`SignatureError`] to `INVALID_ARGUMENT` and
//! a [`Verdict`]'s failures to reason codes ([`FailureKind::reason_code`]).
//!
//! ```no_run
//! # use ekyc_signature::*;
//! # fn demo(cfg: &TrustConfig, chain: &[Vec<u8>], sig: &[u8], nonce: &[u8]) -> Result<(), SignatureError> {
//! let store = TrustStore::load(cfg)?;
//! let input = SignatureInput { chain, signature: sig, algorithm: "RSA_PKCS1_SHA256", claimed_nonce: None };
//! let verdict = store.verify(&input, nonce, std::time::SystemTime::now())?;
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
mod store;
mod verify;

pub use algorithm::SUPPORTED_ALGORITHMS;
pub use config::{AnchorConfig, TrustConfig};
pub use store::{Anchor, TrustStore};
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
    /// The trust configuration (anchors, CRLs) cannot be used.
    #[error("signature trust configuration: {0}")]
    Config(String),
}
