//! The operator's trust settings for signature evidence: which CA certificates are trust
//! anchors (for My Number cards: the JPKI user-authentication and signing CAs), their CRLs, the clock skew allowed
//! and whether an unchecked revocation status is acceptable. A section of the settings file.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Trust anchors and policy for signature evidence. No anchors: every signature is
/// reported untrusted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// The CA certificates a chain must reach, each with an optional CRL.
    pub anchors: Vec<AnchorConfig>,
    /// Seconds of clock difference tolerated on validity periods and CRL update times
    /// (default 300).
    pub clock_skew_s: u32,
    /// When true, a signature is only valid if its certificate was found unrevoked in a
    /// current CRL. When false (the default), no CRL or a stale one leaves the revocation
    /// status `NotChecked` or `Unknown` and the signature can still be valid; a certificate
    /// listed as revoked is always refused.
    pub require_revocation_check: bool,
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig { anchors: Vec::new(), clock_skew_s: 300, require_revocation_check: false }
    }
}

/// One trust anchor: a CA certificate file and optionally its CRL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnchorConfig {
    /// Name reported in verdicts (`trust_anchor`) and messages, e.g. "jpki-sign".
    pub name: String,
    /// The anchor's certificate, PEM (DER is accepted too).
    pub certificate_pem: PathBuf,
    /// A CRL of the anchor (or of an intermediate CA under it), PEM or DER. Replace the file
    /// and restart before its nextUpdate, or revocation becomes `Unknown`.
    pub crl: Option<PathBuf>,
}

/// Largest clock skew accepted, in seconds: a day.
const MAX_CLOCK_SKEW_S: u32 = 86_400;

impl TrustConfig {
    /// Checks the settings without reading any file; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.clock_skew_s > MAX_CLOCK_SKEW_S {
            return Err(format!("clock_skew_s is {}; at most {MAX_CLOCK_SKEW_S} (one day) is accepted", self.clock_skew_s));
        }
        let mut names = HashSet::new();
        for (i, a) in self.anchors.iter().enumerate() {
            if a.name.trim().is_empty() {
                return Err(format!("anchors[{i}].name is empty; give each trust anchor a name"));
            }
            if !names.insert(a.name.as_str()) {
                return Err(format!("anchors[{i}].name {:?} is used twice; anchor names must be unique", a.name));
            }
            if a.certificate_pem.as_os_str().is_empty() {
                return Err(format!("anchors[{i}].certificate_pem is empty; set the path of the CA certificate"));
            }
            if a.crl.as_ref().is_some_and(|c| c.as_os_str().is_empty()) {
                return Err(format!("anchors[{i}].crl is an empty path; remove it or set the CRL file"));
            }
            if self.require_revocation_check && a.crl.is_none() {
                return Err(format!(
                    "require_revocation_check is on but anchors[{i}] ({:?}) has no crl, so every signature under it would be refused; set its crl",
                    a.name
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(name: &str) -> AnchorConfig {
        AnchorConfig { name: name.into(), certificate_pem: "ca.pem".into(), crl: None }
    }

    #[test]
    fn defaults_allow_five_minutes_of_skew_and_do_not_require_crls() {
        let c = TrustConfig::default();
        assert_eq!((c.clock_skew_s, c.require_revocation_check, c.anchors.len()), (300, false, 0));
        assert_eq!(c.validate(), Ok(()));
        let parsed: TrustConfig = toml::from_str("[[anchors]]\nname = \"jpki\"\ncertificate_pem = \"a.pem\"\n").expect("parses");
        assert_eq!((parsed.clock_skew_s, parsed.anchors[0].crl.as_ref()), (300, None));
        assert!(toml::from_str::<TrustConfig>("anchor = []").is_err(), "unknown keys are refused");
    }

    #[test]
    fn validate_names_the_bad_field() {
        let mut c = TrustConfig { anchors: vec![anchor("a"), anchor("a")], ..Default::default() };
        assert!(c.validate().is_err_and(|e| e.contains("anchors[1].name")));
        c.anchors[1].name = " ".into();
        assert!(c.validate().is_err_and(|e| e.contains("anchors[1].name is empty")));
        c.anchors[1] = AnchorConfig { certificate_pem: PathBuf::new(), ..anchor("b") };
        assert!(c.validate().is_err_and(|e| e.contains("anchors[1].certificate_pem")));
        c.anchors[1] = anchor("b");
        assert_eq!(c.validate(), Ok(()));
        c.require_revocation_check = true;
        assert!(c.validate().is_err_and(|e| e.contains("has no crl")));
        c.anchors.iter_mut().for_each(|a| a.crl = Some("crl.pem".into()));
        assert_eq!(c.validate(), Ok(()));
        c.clock_skew_s = 100_000;
        assert!(c.validate().is_err_and(|e| e.contains("clock_skew_s")));
    }
}
