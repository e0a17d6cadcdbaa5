//! Judging one piece of signature evidence: the signature over the session's to-be-signed
//! bytes, the path from the signer's certificate to a trust anchor, each certificate's
//! validity period, CA constraints and key usage, revocation by the anchor's CRL, and the
//! certificate profile a policy requires. Every problem found becomes a [`Failure`]; the
//! verdict is valid only when there is none.
//!
//! No personal data leaves: the signer's certificate is named by serial number (and its
//! SHA-256 in the verdict), never by its subject, which on a JPKI signing certificate names
//! the holder; CA certificates are named by their subject.

use std::time::SystemTime;

use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::algorithm::{Algorithm, KeyKind};
use crate::clock::{rfc3339, unix_seconds};
use crate::name::rfc4514;
use crate::profile::{self, CertificateProfile};
use crate::store::{LoadedAnchor, TrustStore, normalized_serial, parse_certificate};
use crate::tbs::ToBeSigned;
use crate::{MAX_CERTIFICATE_BYTES, MAX_CHAIN_CERTIFICATES, SignatureError};

/// What the client sent.
#[derive(Debug, Clone, Copy)]
pub struct SignatureInput<'a> {
    /// DER certificates: the signing (leaf) certificate first, then intermediates in any
    /// order; the trust anchor may be included or left out.
    pub chain: &'a [Vec<u8>],
    /// The signature over the session's to-be-signed bytes, in the form `algorithm` names.
    pub signature: &'a [u8],
    /// One of [`crate::SUPPORTED_ALGORITHMS`].
    pub algorithm: &'a str,
    /// The bytes the client says it signed (`SignatureEvidence.signed_data`), when it sends
    /// them. Never trusted: the signature is always checked over the session's own bytes.
    /// When they differ from those, the verdict fails with
    /// [`FailureKind::SignatureContextMismatch`] if they are to-be-signed bytes of another
    /// context that the signature does verify over, else [`FailureKind::NonceMismatch`].
    pub signed_data: Option<&'a [u8]>,
}

/// The judgement on one piece of signature evidence, with what the signer's certificate
/// says. Holds no subject and nothing of the certificate's personal-data extensions: a
/// verdict may be stored, logged and returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// True exactly when `failures` is empty.
    pub valid: bool,
    /// The signing certificate's issuer, RFC 4514.
    pub issuer: String,
    /// The signing certificate's serial number: lower-case hex, no separators or sign byte.
    pub serial_hex: String,
    /// The signing certificate's validity period, Unix milliseconds.
    pub not_before_unix_ms: i64,
    pub not_after_unix_ms: i64,
    /// SHA-256 of the signing certificate's DER, lower-case hex.
    pub certificate_sha256: String,
    /// The name of the configured anchor the chain reached, if it reached one.
    pub trust_anchor: Option<String>,
    /// The built-in certificate profile the signer's certificate fits
    /// ([`crate::PROFILE_NAMES`]): the required one when it fits that, else the first that
    /// it fits; None when it fits none.
    pub profile: Option<String>,
    pub revocation: Revocation,
    pub failures: Vec<Failure>,
}

/// The revocation status of the signing certificate (and any intermediates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Revocation {
    /// No CRL is configured for the anchor, or the chain reached no anchor.
    NotChecked,
    /// Not listed in a current CRL that covers it.
    Good,
    /// Listed in the CRL (a stale CRL still counts: revocations are not undone).
    Revoked,
    /// The CRL is out of date, not yet valid, not verifiable with this chain or does not
    /// cover the signing certificate.
    Unknown,
}

/// One reason the evidence is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// What is wrong and what to do about it, in English.
    pub message: String,
}

/// The kinds of failure, each with a stable reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureKind {
    /// The signature does not verify over the session's to-be-signed bytes with the
    /// certificate's key.
    SignatureInvalid,
    /// A certificate of the path is expired or not yet valid.
    CertExpired,
    /// The path does not reach a trust anchor, or breaks a CA constraint.
    CertUntrusted,
    /// A certificate of the path is listed in the CRL.
    CertRevoked,
    /// The signing certificate may not sign documents, or an issuer may not sign certificates.
    CertKeyUsage,
    /// The bytes the client says it signed are not the session's to-be-signed bytes.
    NonceMismatch,
    /// The client signed the to-be-signed bytes of another session, deployment or policy.
    SignatureContextMismatch,
    /// The signer's certificate does not fit the certificate profile the policy requires.
    CertProfileMismatch,
    /// Revocation checks are required but the status could not be established.
    #[serde(rename = "CERT_REVOCATION_UNKNOWN")]
    RevocationUnknown,
}

impl FailureKind {
    /// The reason code used in API responses and metrics.
    pub fn reason_code(self) -> &'static str {
        match self {
            FailureKind::SignatureInvalid => "SIGNATURE_INVALID",
            FailureKind::CertExpired => "CERT_EXPIRED",
            FailureKind::CertUntrusted => "CERT_UNTRUSTED",
            FailureKind::CertRevoked => "CERT_REVOKED",
            FailureKind::CertKeyUsage => "CERT_KEY_USAGE",
            FailureKind::NonceMismatch => "NONCE_MISMATCH",
            FailureKind::SignatureContextMismatch => "SIGNATURE_CONTEXT_MISMATCH",
            FailureKind::CertProfileMismatch => "CERT_PROFILE_MISMATCH",
            FailureKind::RevocationUnknown => "CERT_REVOCATION_UNKNOWN",
        }
    }
}

fn failure(kind: FailureKind, message: impl Into<String>) -> Failure {
    Failure { kind, message: message.into() }
}

/// Critical extensions this verifier understands or may safely ignore; any other critical
/// extension (name or policy constraints among them) makes a certificate untrusted.
const KNOWN_CRITICAL: [&str; 18] = [
    "2.5.29.15",         // keyUsage
    "2.5.29.19",         // basicConstraints
    "2.5.29.32",         // certificatePolicies (no policy is required)
    "2.5.29.37",         // extendedKeyUsage
    "2.5.29.17",         // subjectAltName
    "2.5.29.18",         // issuerAltName
    "2.5.29.14",         // subjectKeyIdentifier
    "2.5.29.35",         // authorityKeyIdentifier
    "2.5.29.31",         // cRLDistributionPoints
    "2.5.29.9",          // subjectDirectoryAttributes
    "2.5.29.16",         // privateKeyUsagePeriod
    "1.3.6.1.5.5.7.1.1", // authorityInfoAccess
    // The JPKI signing certificate's holder data (name, name in other characters, gender,
    // birth date, address, address in other characters): data only, deliberately never read.
    "1.2.392.200149.8.5.5.1",
    "1.2.392.200149.8.5.5.2",
    "1.2.392.200149.8.5.5.3",
    "1.2.392.200149.8.5.5.4",
    "1.2.392.200149.8.5.5.5",
    "1.2.392.200149.8.5.5.6",
];

/// Signature algorithm OIDs with SHA-1, refused on certificates and CRLs.
const SHA1_SIGNATURES: [&str; 3] = ["1.2.840.113549.1.1.5", "1.3.14.3.2.29", "1.2.840.10045.4.1"];

pub(crate) fn verify(
    store: &TrustStore,
    input: &SignatureInput<'_>,
    to_be_signed: &[u8],
    required_profile: Option<&str>,
    now: SystemTime,
) -> Result<Verdict, SignatureError> {
    let required = required_profile.map(CertificateProfile::lookup).transpose()?;
    let alg = Algorithm::from_name(input.algorithm).ok_or_else(|| SignatureError::UnsupportedAlgorithm(input.algorithm.to_string()))?;
    if input.chain.is_empty() {
        return Err(SignatureError::EmptyChain);
    }
    if input.chain.len() > MAX_CHAIN_CERTIFICATES {
        return Err(SignatureError::BadCertificate(format!(
            "the chain has {} certificates; at most {MAX_CHAIN_CERTIFICATES} are accepted",
            input.chain.len()
        )));
    }
    if let Some((i, der)) = input.chain.iter().enumerate().find(|(_, d)| d.len() > MAX_CERTIFICATE_BYTES) {
        return Err(SignatureError::BadCertificate(format!(
            "chain[{i}] is {} bytes; at most {MAX_CERTIFICATE_BYTES} are accepted",
            der.len()
        )));
    }
    let certs = input
        .chain
        .iter()
        .enumerate()
        .map(|(i, der)| parse_certificate(der).map_err(|e| SignatureError::BadCertificate(format!("chain[{i}] {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    // Parsed at load, so these parse; an anchor that did not would simply never match.
    let anchors: Vec<(usize, X509Certificate<'_>)> =
        store.anchors.iter().enumerate().filter_map(|(i, a)| parse_certificate(&a.der).ok().map(|c| (i, c))).collect();

    let leaf = &certs[0];
    let now_s = unix_seconds(now);
    let skew = i64::from(store.clock_skew_s);
    let mut failures = Vec::new();

    check_signature(&alg, leaf, to_be_signed, input.signed_data, input.signature, &mut failures);

    let path = build_path(store, &anchors, &certs, &mut failures);
    for (pos, cert) in path.certs.iter().enumerate() {
        check_certificate(cert, pos, &path, now_s, skew, &mut failures);
    }
    let anchor = path.anchor.map(|(i, _)| &store.anchors[i]);
    let revocation = match anchor {
        Some(loaded) => {
            let (status, problem) = revocation(store, loaded, &path.certs, now_s, skew);
            failures.extend(problem);
            status
        }
        None => Revocation::NotChecked,
    };

    let fits = profile::fitting(leaf);
    let profile = match required {
        Some(req) => match req.misfit(leaf) {
            None => Some(req),
            Some(why) => {
                let fits_instead = match fits {
                    Some(p) => format!("it fits the profile {:?}", p.name()),
                    None => "it fits no built-in profile".to_string(),
                };
                failures.push(failure(
                    FailureKind::CertProfileMismatch,
                    format!(
                        "{} does not fit the certificate profile {:?} this policy requires: {why}; {fits_instead}",
                        leaf_label(leaf),
                        req.name()
                    ),
                ));
                fits
            }
        },
        None => fits,
    };

    let validity = leaf.validity();
    Ok(Verdict {
        valid: failures.is_empty(),
        issuer: rfc4514(leaf.issuer()),
        serial_hex: hex::encode(normalized_serial(leaf.raw_serial())),
        not_before_unix_ms: validity.not_before.timestamp().saturating_mul(1000),
        not_after_unix_ms: validity.not_after.timestamp().saturating_mul(1000),
        certificate_sha256: hex::encode(Sha256::digest(&input.chain[0])),
        trust_anchor: anchor.map(|a| a.name.clone()),
        profile: profile.map(|p| p.name().to_string()),
        revocation,
        failures,
    })
}

/// How the signer's certificate is named in messages: by serial number, never by its
/// subject (which on a JPKI signing certificate is the holder's name).
fn leaf_label(leaf: &X509Certificate<'_>) -> String {
    format!("the signer's certificate (serial {})", hex::encode(normalized_serial(leaf.raw_serial())))
}

/// The signature over the session's to-be-signed bytes, and what the client's echo of the
/// bytes it signed (`signed_data`) says about a mismatch.
fn check_signature(
    alg: &Algorithm,
    leaf: &X509Certificate<'_>,
    to_be_signed: &[u8],
    signed_data: Option<&[u8]>,
    signature: &[u8],
    failures: &mut Vec<Failure>,
) {
    let key = key_kind(leaf.public_key());
    if key != alg.key {
        failures.push(failure(
            FailureKind::SignatureInvalid,
            format!(
                "signature algorithm {} needs an {} key but the signer's certificate holds an {} key; name the algorithm that matches the certificate",
                alg.name,
                alg.key.describe(),
                key.describe()
            ),
        ));
        return;
    }
    let verifies = |message: &[u8]| alg.verify(&leaf.public_key().subject_public_key.data, message, signature);
    // Always over the session's own bytes; the echo only explains a failure.
    let genuine = verifies(to_be_signed);
    match signed_data {
        Some(echo) if echo != to_be_signed => match ToBeSigned::parse(echo) {
            Some(theirs) if verifies(echo) => {
                let fields = match ToBeSigned::parse(to_be_signed) {
                    Some(ours) => ours.differences(&theirs).iter().map(|f| f.name()).collect::<Vec<_>>().join(", "),
                    None => "format".to_string(),
                };
                failures.push(failure(
                    FailureKind::SignatureContextMismatch,
                    format!(
                        "the signature was made for another context: the signed bytes differ from this session's to_be_signed in {fields}; sign exactly this session's StartSessionResponse.to_be_signed"
                    ),
                ));
            }
            _ => failures.push(failure(
                FailureKind::NonceMismatch,
                "the bytes the client says it signed (signed_data) are not this session's to_be_signed; sign exactly StartSessionResponse.to_be_signed and echo it unchanged",
            )),
        },
        _ if !genuine => failures.push(failure(
            FailureKind::SignatureInvalid,
            format!(
                "the signature does not verify as {} over this session's to_be_signed bytes with the key of {}; sign exactly StartSessionResponse.to_be_signed (not the bare nonce, not another session's bytes) with the key of the certificate sent first",
                alg.name,
                leaf_label(leaf)
            ),
        )),
        _ => {}
    }
}

fn key_kind(spki: &SubjectPublicKeyInfo<'_>) -> KeyKind {
    let oid = spki.algorithm.algorithm.to_id_string();
    match oid.as_str() {
        "1.2.840.113549.1.1.1" => KeyKind::Rsa,
        "1.3.101.112" => KeyKind::Ed25519,
        "1.2.840.10045.2.1" => match spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|c| c.to_id_string()) {
            Some(c) if c == "1.2.840.10045.3.1.7" => KeyKind::EcP256,
            Some(c) if c == "1.3.132.0.34" => KeyKind::EcP384,
            Some(c) => KeyKind::Other(format!("EC curve {c}")),
            None => KeyKind::Other("EC key without a named curve".into()),
        },
        _ => KeyKind::Other(oid),
    }
}

/// The certificates from the leaf up to (not including) the anchor, and the anchor reached.
struct Path<'p, 'c> {
    certs: Vec<&'p X509Certificate<'c>>,
    anchor: Option<(usize, &'p X509Certificate<'c>)>,
}

/// Follows issuers from the leaf: a configured anchor first, else an unused certificate of
/// the chain whose subject is the issuer and whose key verifies the signature.
fn build_path<'p, 'c>(
    store: &TrustStore,
    anchors: &'p [(usize, X509Certificate<'c>)],
    certs: &'p [X509Certificate<'c>],
    failures: &mut Vec<Failure>,
) -> Path<'p, 'c> {
    let mut path = Path { certs: vec![&certs[0]], anchor: None };
    let mut used = vec![false; certs.len()];
    used[0] = true;
    loop {
        let cur = path.certs[path.certs.len() - 1];
        let cur_label = if path.certs.len() == 1 { leaf_label(cur) } else { format!("'{}'", rfc4514(cur.subject())) };
        let issuer_raw = cur.issuer().as_raw();
        let mut mismatch: Option<String> = None;
        for (i, anchor) in anchors {
            if anchor.subject().as_raw() == issuer_raw {
                match check_certificate_signature(cur, anchor) {
                    Ok(()) => {
                        path.anchor = Some((*i, anchor));
                        return path;
                    }
                    Err(e) => mismatch = Some(format!("{e} (trust anchor {:?})", store.anchors[*i].name)),
                }
            }
        }
        let mut next = None;
        for (j, cand) in certs.iter().enumerate() {
            if !used[j] && cand.subject().as_raw() == issuer_raw {
                match check_certificate_signature(cur, cand) {
                    Ok(()) => {
                        next = Some(j);
                        break;
                    }
                    Err(e) => mismatch = Some(format!("{e} (chain[{j}])")),
                }
            }
        }
        match next {
            Some(j) => {
                used[j] = true;
                path.certs.push(&certs[j]);
            }
            None => {
                let message = if store.is_empty() {
                    "no signature trust anchors are configured, so no certificate can be trusted; configure the CA certificate that issues the signing certificates (for My Number cards, the JPKI signing CA)".to_string()
                } else if let Some(m) = mismatch {
                    format!("{cur_label} names '{}' as its issuer, but {m}", rfc4514(cur.issuer()))
                } else if cur.subject().as_raw() == issuer_raw {
                    format!(
                        "the chain ends at the self-signed {cur_label}, which is not a configured trust anchor ({})",
                        anchor_names(store)
                    )
                } else {
                    format!(
                        "the issuer '{}' of {cur_label} is neither in the chain nor a configured trust anchor ({}); send any intermediate certificates after the signer's certificate",
                        rfc4514(cur.issuer()),
                        anchor_names(store)
                    )
                };
                failures.push(failure(FailureKind::CertUntrusted, message));
                return path;
            }
        }
    }
}

fn anchor_names(store: &TrustStore) -> String {
    let names: Vec<&str> = store.anchors.iter().map(|a| a.name.as_str()).collect();
    format!("configured: {}", names.join(", "))
}

/// `child`'s signature checked with `issuer`'s key; the error reads after "but".
fn check_certificate_signature(child: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Result<(), String> {
    let oid = child.signature_algorithm.algorithm.to_id_string();
    if SHA1_SIGNATURES.contains(&oid.as_str()) {
        return Err("it is signed with SHA-1, which is not accepted".into());
    }
    child.verify_signature(Some(issuer.public_key())).map_err(|e| match e {
        X509Error::SignatureUnsupportedAlgorithm => format!("its signature algorithm {oid} is not supported"),
        _ => "its signature does not verify with that issuer's key".into(),
    })
}

/// A CRL's signature checked with `issuer`'s key, which must be allowed to sign CRLs.
pub(crate) fn check_crl_signature(crl: &CertificateRevocationList<'_>, issuer: &X509Certificate<'_>) -> Result<(), String> {
    match issuer.key_usage() {
        Ok(Some(ku)) if !ku.value.crl_sign() => return Err("the issuer's keyUsage does not allow cRLSign".into()),
        Err(e) => return Err(format!("the issuer's keyUsage does not parse ({e})")),
        _ => {}
    }
    let oid = crl.signature_algorithm.algorithm.to_id_string();
    if SHA1_SIGNATURES.contains(&oid.as_str()) {
        return Err("the CRL is signed with SHA-1, which is not accepted".into());
    }
    crl.verify_signature(issuer.public_key()).map_err(|e| match e {
        X509Error::SignatureUnsupportedAlgorithm => format!("the CRL's signature algorithm {oid} is not supported"),
        _ => "the CRL's signature does not verify with its issuer's key".into(),
    })
}

/// basicConstraints present with CA set.
pub(crate) fn is_ca(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

/// No keyUsage extension, or one that allows keyCertSign.
pub(crate) fn may_sign_certificates(cert: &X509Certificate<'_>) -> bool {
    match cert.key_usage() {
        Ok(None) => true,
        Ok(Some(ku)) => ku.value.key_cert_sign(),
        Err(_) => false,
    }
}

/// Checks of one certificate of the path: `pos` 0 is the leaf, others are intermediate CAs.
fn check_certificate(cert: &X509Certificate<'_>, pos: usize, path: &Path<'_, '_>, now_s: i64, skew: i64, failures: &mut Vec<Failure>) {
    // The leaf by serial (its subject may name a person), CAs by subject.
    let label = if pos == 0 { leaf_label(cert) } else { format!("the intermediate CA certificate '{}'", rfc4514(cert.subject())) };
    let validity = cert.validity();
    let (not_before, not_after) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    if now_s.saturating_add(skew) < not_before {
        failures.push(failure(
            FailureKind::CertExpired,
            format!("{label} is not valid before {}; check the client's and the server's clocks", rfc3339(not_before)),
        ));
    } else if now_s.saturating_sub(skew) > not_after {
        let advice =
            if pos == 0 { "renew the certificate (for a My Number card, at the municipal office)" } else { "the issuer must renew it" };
        failures.push(failure(FailureKind::CertExpired, format!("{label} expired at {}; {advice}", rfc3339(not_after))));
    }
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if matches!(ext.parsed_extension(), ParsedExtension::ParseError { .. }) {
            failures.push(failure(FailureKind::CertUntrusted, format!("{label} has a malformed extension {oid}")));
        } else if ext.critical && !KNOWN_CRITICAL.contains(&oid.as_str()) {
            failures.push(failure(
                FailureKind::CertUntrusted,
                format!("{label} has a critical extension {oid} that this verifier does not process"),
            ));
        }
    }
    if pos == 0 {
        match cert.key_usage() {
            Ok(Some(ku)) if !(ku.value.digital_signature() || ku.value.non_repudiation()) => failures.push(failure(
                FailureKind::CertKeyUsage,
                format!(
                    "{label} has keyUsage {} which allows neither digitalSignature nor nonRepudiation; sign with a certificate made for signing (for a My Number card, the user-authentication or the signature certificate)",
                    ku.value
                ),
            )),
            Err(e) => failures.push(failure(FailureKind::CertKeyUsage, format!("the keyUsage of {label} does not parse ({e})"))),
            _ => {}
        }
        return;
    }
    if !is_ca(cert) {
        failures.push(failure(
            FailureKind::CertUntrusted,
            format!("{label} issued a certificate of the chain but is not a CA (basicConstraints)"),
        ));
    }
    if !may_sign_certificates(cert) {
        failures.push(failure(FailureKind::CertKeyUsage, format!("the keyUsage of {label} does not allow keyCertSign")));
    }
    check_path_length(cert, pos - 1, failures);
    if pos == path.certs.len() - 1
        && let Some((_, anchor)) = path.anchor
    {
        check_path_length(anchor, pos, failures);
    }
}

/// An issuer's pathLenConstraint against the number of intermediates below it.
fn check_path_length(issuer: &X509Certificate<'_>, intermediates_below: usize, failures: &mut Vec<Failure>) {
    if let Ok(Some(bc)) = issuer.basic_constraints()
        && let Some(limit) = bc.value.path_len_constraint
        && intermediates_below > limit as usize
    {
        failures.push(failure(
            FailureKind::CertUntrusted,
            format!("'{}' allows {limit} intermediate CA(s) below it but the chain has {intermediates_below}", rfc4514(issuer.subject())),
        ));
    }
}

/// The revocation status under the anchor's CRL, and the failure it causes if any.
fn revocation(
    store: &TrustStore,
    anchor: &LoadedAnchor,
    path: &[&X509Certificate<'_>],
    now_s: i64,
    skew: i64,
) -> (Revocation, Option<Failure>) {
    let required = store.require_revocation_check;
    let unknown = |message: String| (Revocation::Unknown, required.then(|| failure(FailureKind::RevocationUnknown, message)));
    let Some(crl) = &anchor.crl else {
        let message =
            format!("revocation checks are required but no CRL is configured for trust anchor {:?}; configure its CRL", anchor.name);
        return (Revocation::NotChecked, required.then(|| failure(FailureKind::RevocationUnknown, message)));
    };
    if let Some(der) = &crl.der_to_verify {
        let Some(signer) = path[1..].iter().find(|c| c.subject().as_raw() == crl.issuer_raw.as_slice()) else {
            return unknown(format!(
                "the CRL configured for trust anchor {:?} is issued by '{}', which is not in this chain",
                anchor.name, crl.issuer
            ));
        };
        let checked = match CertificateRevocationList::from_der(der) {
            Ok((_, parsed)) => check_crl_signature(&parsed, signer),
            Err(e) => Err(format!("it does not parse ({e})")),
        };
        if let Err(e) = checked {
            return unknown(format!("the CRL configured for trust anchor {:?} cannot be used: {e}", anchor.name));
        }
    }
    for (pos, cert) in path.iter().enumerate() {
        let covered =
            cert.issuer().as_raw() == crl.issuer_raw.as_slice() && !(pos == 0 && crl.only_ca_certs) && !(pos > 0 && crl.only_user_certs);
        if !covered {
            continue;
        }
        if let Some(when) = crl.revoked.get(&normalized_serial(cert.raw_serial())) {
            let label = if pos == 0 {
                leaf_label(cert)
            } else {
                format!(
                    "the intermediate CA certificate '{}' (serial {})",
                    rfc4514(cert.subject()),
                    hex::encode(normalized_serial(cert.raw_serial()))
                )
            };
            return (
                Revocation::Revoked,
                Some(failure(
                    FailureKind::CertRevoked,
                    format!("{label} was revoked at {} by '{}'; it cannot be used to sign", rfc3339(*when), crl.issuer),
                )),
            );
        }
    }
    if path[0].issuer().as_raw() != crl.issuer_raw.as_slice() || crl.only_ca_certs {
        return unknown(format!(
            "the CRL configured for trust anchor {:?} is issued by '{}' and does not cover the signer's certificate, issued by '{}'; configure the CRL of the CA that issues the signers' certificates",
            anchor.name,
            crl.issuer,
            rfc4514(path[0].issuer())
        ));
    }
    if crl.this_update > now_s.saturating_add(skew) {
        return unknown(format!(
            "the CRL configured for trust anchor {:?} is dated {}, in the future; check the server's clock",
            anchor.name,
            rfc3339(crl.this_update)
        ));
    }
    if let Some(next) = crl.next_update
        && now_s.saturating_sub(skew) > next
    {
        return unknown(format!(
            "the CRL configured for trust anchor {:?} is out of date (nextUpdate {}); install the current CRL of '{}'",
            anchor.name,
            rfc3339(next),
            crl.issuer
        ));
    }
    (Revocation::Good, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_the_serialized_names() {
        use FailureKind::*;
        for kind in [
            SignatureInvalid,
            CertExpired,
            CertUntrusted,
            CertRevoked,
            CertKeyUsage,
            NonceMismatch,
            SignatureContextMismatch,
            CertProfileMismatch,
            RevocationUnknown,
        ] {
            let json = serde_json::to_value(kind).expect("serializes");
            assert_eq!(json.as_str(), Some(kind.reason_code()));
        }
        assert_eq!(RevocationUnknown.reason_code(), "CERT_REVOCATION_UNKNOWN");
    }
}
