//! The trust store: the configured anchors, checked once when loaded (a CA certificate
//! that may sign certificates; a CRL that parses, is signed by its issuer and is a complete
//! CRL), with each CRL reduced to the set of revoked serial numbers so that a large CRL
//! costs one lookup per verification.

use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::config::TrustConfig;
use crate::name::rfc4514;
use crate::verify::{self, SignatureInput, Verdict};
use crate::{SignatureError, name};

/// A trust anchor given as bytes: a CA certificate (DER) and optionally a CRL (DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Name reported in verdicts and messages.
    pub name: String,
    /// The CA certificate, DER.
    pub certificate_der: Vec<u8>,
    /// A CRL of the anchor or of an intermediate CA under it, DER.
    pub crl_der: Option<Vec<u8>>,
}

/// Verifies signature evidence against the configured anchors. Cheap to share: verification
/// takes `&self` and keeps no state between calls.
#[derive(Debug)]
pub struct TrustStore {
    pub(crate) anchors: Vec<LoadedAnchor>,
    pub(crate) clock_skew_s: u32,
    pub(crate) require_revocation_check: bool,
}

/// An anchor checked at load time.
#[derive(Debug)]
pub(crate) struct LoadedAnchor {
    pub(crate) name: String,
    pub(crate) der: Vec<u8>,
    pub(crate) crl: Option<Crl>,
}

/// What verification needs of a CRL.
#[derive(Debug)]
pub(crate) struct Crl {
    /// The issuer name, DER, to match against certificates' issuers.
    pub(crate) issuer_raw: Vec<u8>,
    pub(crate) issuer: String,
    pub(crate) this_update: i64,
    pub(crate) next_update: Option<i64>,
    /// Revoked serial numbers (big-endian, no leading zero bytes) and their revocation times.
    pub(crate) revoked: HashMap<Vec<u8>, i64>,
    /// The issuing distribution point limits the CRL to end-entity or to CA certificates.
    pub(crate) only_user_certs: bool,
    pub(crate) only_ca_certs: bool,
    /// The whole CRL when its issuer is not the anchor: its signature is then checked
    /// against the intermediate CA found in each chain. None when the anchor signed it
    /// (checked once, at load).
    pub(crate) der_to_verify: Option<Vec<u8>>,
}

impl TrustStore {
    /// Reads the anchor certificates and CRLs named in `cfg` and checks them.
    pub fn load(cfg: &TrustConfig) -> Result<TrustStore, SignatureError> {
        cfg.validate().map_err(SignatureError::Config)?;
        let mut anchors = Vec::with_capacity(cfg.anchors.len());
        for a in &cfg.anchors {
            let cert = read(&a.certificate_pem)?;
            let certificate_der = pem_or_der(&cert, &["CERTIFICATE", "TRUSTED CERTIFICATE"])
                .map_err(|e| SignatureError::Config(format!("anchor {:?}: {}: {e}", a.name, a.certificate_pem.display())))?;
            let crl_der = match &a.crl {
                Some(path) => Some(
                    pem_or_der(&read(path)?, &["X509 CRL"])
                        .map_err(|e| SignatureError::Config(format!("anchor {:?}: {}: {e}", a.name, path.display())))?,
                ),
                None => None,
            };
            anchors.push(Anchor { name: a.name.clone(), certificate_der, crl_der });
        }
        TrustStore::from_der(anchors, cfg.clock_skew_s, cfg.require_revocation_check)
    }

    /// Builds a store from anchors in memory. Every anchor must be a CA certificate allowed
    /// to sign certificates; a CRL must parse, be complete (no delta, indirect or
    /// reason-partitioned CRLs) and, when its issuer is the anchor, carry the anchor's
    /// signature.
    pub fn from_der(anchors: Vec<Anchor>, clock_skew_s: u32, require_revocation_check: bool) -> Result<TrustStore, SignatureError> {
        let mut loaded: Vec<LoadedAnchor> = Vec::with_capacity(anchors.len());
        for a in anchors {
            let fail = |what: String| SignatureError::Config(format!("anchor {:?}: {what}", a.name));
            if a.name.trim().is_empty() {
                return Err(SignatureError::Config("an anchor has an empty name".into()));
            }
            if loaded.iter().any(|l| l.name == a.name) {
                return Err(fail("the name is used twice".into()));
            }
            let cert = parse_certificate(&a.certificate_der).map_err(|e| fail(format!("the certificate {e}")))?;
            if !verify::is_ca(&cert) {
                return Err(fail(format!("{} is not a CA certificate (basicConstraints CA is not set)", rfc4514(cert.subject()))));
            }
            if !verify::may_sign_certificates(&cert) {
                return Err(fail(format!("{}'s keyUsage does not allow keyCertSign", rfc4514(cert.subject()))));
            }
            let crl = match &a.crl_der {
                Some(der) => Some(load_crl(der, &cert).map_err(|e| fail(format!("CRL: {e}")))?),
                None => None,
            };
            loaded.push(LoadedAnchor { name: a.name, der: a.certificate_der, crl });
        }
        Ok(TrustStore { anchors: loaded, clock_skew_s, require_revocation_check })
    }

    /// True when no anchor is configured: every verdict is then untrusted.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Judges one piece of signature evidence at time `now`. `to_be_signed` is the
    /// session's to-be-signed bytes ([`crate::ToBeSigned::to_bytes`], as handed to the
    /// client): the signature must be over exactly these bytes. `required_profile` names the
    /// built-in certificate profile ([`crate::PROFILE_NAMES`]) the signer's certificate must
    /// fit (the policy's `signature_profile`; None = any trusted certificate).
    ///
    /// Errors only for input that cannot be judged (unknown algorithm, a certificate that
    /// does not parse, an empty or oversized chain) and for an unknown profile name
    /// ([`SignatureError::Config`]); everything else is in the verdict.
    pub fn verify(
        &self,
        input: &SignatureInput<'_>,
        to_be_signed: &[u8],
        required_profile: Option<&str>,
        now: SystemTime,
    ) -> Result<Verdict, SignatureError> {
        verify::verify(self, input, to_be_signed, required_profile, now)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SignatureError> {
    std::fs::read(path).map_err(|e| SignatureError::Config(format!("cannot read {}: {e}", path.display())))
}

/// DER from a file that is either DER or PEM (exactly one block with one of `labels`).
fn pem_or_der(bytes: &[u8], labels: &[&str]) -> Result<Vec<u8>, String> {
    // DER certificates and CRLs are SEQUENCEs; PEM files may have text before the block.
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    let mut found = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        let block = block.map_err(|e| format!("bad PEM: {e}"))?;
        if labels.contains(&block.label.as_str()) {
            found.push(block.contents);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!("no PEM block labelled {}", labels.join(" or "))),
        n => Err(format!("{n} PEM blocks labelled {}; put one per file", labels[0])),
    }
}

/// Parses a DER certificate with nothing after it; the error reads after "the certificate".
pub(crate) fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok((rest, _)) if !rest.is_empty() => Err(format!("has {} bytes after its DER encoding", rest.len())),
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(format!("is not a DER X.509 certificate ({e})")),
    }
}

/// A serial number as big-endian bytes without leading zeros (the sign byte DER adds).
pub(crate) fn normalized_serial(raw: &[u8]) -> Vec<u8> {
    let skip = raw.iter().take_while(|b| **b == 0).count();
    raw[skip.min(raw.len().saturating_sub(1))..].to_vec()
}

fn load_crl(der: &[u8], anchor: &X509Certificate<'_>) -> Result<Crl, String> {
    let crl = match CertificateRevocationList::from_der(der) {
        Ok((rest, _)) if !rest.is_empty() => return Err(format!("{} bytes after its DER encoding", rest.len())),
        Ok((_, crl)) => crl,
        Err(e) => return Err(format!("not a DER X.509 CRL ({e})")),
    };
    let (mut only_user_certs, mut only_ca_certs) = (false, false);
    for ext in crl.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::IssuingDistributionPoint(idp) => {
                if idp.indirect_crl || idp.only_some_reasons.is_some() || idp.only_contains_attribute_certs {
                    return Err(
                        "an indirect or partitioned CRL (issuingDistributionPoint) is not supported; configure the issuer's complete CRL"
                            .into(),
                    );
                }
                only_user_certs = idp.only_contains_user_certs;
                only_ca_certs = idp.only_contains_ca_certs;
            }
            ParsedExtension::CRLNumber(_) | ParsedExtension::AuthorityKeyIdentifier(_) => {}
            _ if ext.oid.to_id_string() == "2.5.29.27" => {
                return Err("a delta CRL is not supported; configure the issuer's complete CRL".into());
            }
            _ if ext.critical => return Err(format!("unsupported critical extension {}", ext.oid.to_id_string())),
            _ => {}
        }
    }
    let issuer_raw = crl.issuer().as_raw().to_vec();
    let der_to_verify = if issuer_raw == anchor.subject().as_raw() {
        verify::check_crl_signature(&crl, anchor)
            .map_err(|e| format!("{e}; configure the CRL published by {}", name::rfc4514(anchor.subject())))?;
        None
    } else {
        Some(der.to_vec())
    };
    let revoked = crl.iter_revoked_certificates().map(|r| (normalized_serial(r.raw_serial()), r.revocation_date.timestamp())).collect();
    Ok(Crl {
        issuer: rfc4514(crl.issuer()),
        issuer_raw,
        this_update: crl.last_update().timestamp(),
        next_update: crl.next_update().map(|t| t.timestamp()),
        revoked,
        only_user_certs,
        only_ca_certs,
        der_to_verify,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_or_der_takes_one_labelled_block_or_raw_bytes() {
        let pem = b"junk\n-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_or_der(pem, &["CERTIFICATE"]), Ok(vec![1, 2, 3]));
        assert_eq!(pem_or_der(&[0x30, 0x03, 1, 2, 3], &["CERTIFICATE"]), Ok(vec![0x30, 0x03, 1, 2, 3]));
        assert!(
            pem_or_der(b"  -----BEGIN X509 CRL-----\nAQID\n-----END X509 CRL-----\n", &["CERTIFICATE"])
                .is_err_and(|e| e.contains("no PEM block"))
        );
        let two = [&pem[5..], &pem[5..]].concat();
        assert!(pem_or_der(&two, &["CERTIFICATE"]).is_err_and(|e| e.contains("2 PEM blocks")));
    }

    #[test]
    fn serials_compare_without_sign_bytes() {
        assert_eq!(normalized_serial(&[0, 0x80, 1]), vec![0x80, 1]);
        assert_eq!(normalized_serial(&[0]), vec![0]);
        assert_eq!(normalized_serial(&[0x12]), vec![0x12]);
    }

    #[test]
    fn garbage_anchors_are_refused_with_the_anchor_named() {
        let e = TrustStore::from_der(vec![Anchor { name: "jpki".into(), certificate_der: vec![1, 2, 3], crl_der: None }], 300, false);
        assert!(
            matches!(&e, Err(SignatureError::Config(m)) if m.contains("\"jpki\"") && m.contains("not a DER X.509 certificate")),
            "{e:?}"
        );
    }
}
