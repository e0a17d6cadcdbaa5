//! Certificate profiles: what a signer's (leaf) certificate must look like for a policy to
//! accept it, beyond a valid chain. Two are built in, one for each certificate of a My
//! Number card's JPKI applet:
//!
//! - `jpki-user-authentication` (利用者証明用電子証明書), the certificate the ministry's
//!   ordinance requires for online requests: RSA 2048-bit key, signed with
//!   sha256WithRSAEncryption, a critical keyUsage with digitalSignature, extendedKeyUsage
//!   clientAuth, issued by a CA whose name holds `O=JPKI` and `OU=JPKI for user
//!   authentication`. Its subject is an opaque identifier.
//! - `jpki-signing` (署名用電子証明書): RSA 2048, sha256WithRSAEncryption, keyUsage
//!   nonRepudiation, issued by a CA whose name holds `O=JPKI` and `OU=JPKI for digital
//!   signature`. Its subject and its extensions 1.2.392.200149.8.5.5.1 to .6 hold the
//!   holder's name, gender, birth date and address: this crate never reads them (the
//!   profile check looks at the key, the signature algorithm, the key usages and the
//!   issuer only), and no verdict, message or `Debug` output contains them.

use x509_parser::certificate::X509Certificate;
use x509_parser::x509::X509Name;

use crate::SignatureError;

/// The names of the built-in profiles, as a policy names them.
pub const PROFILE_NAMES: [&str; 2] = ["jpki-user-authentication", "jpki-signing"];

/// A built-in certificate profile. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertificateProfile {
    /// `jpki-user-authentication`: the JPKI user-authentication certificate.
    JpkiUserAuthentication,
    /// `jpki-signing`: the JPKI signing certificate.
    JpkiSigning,
}

/// sha256WithRSAEncryption.
const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
/// rsaEncryption.
const RSA_KEY: &str = "1.2.840.113549.1.1.1";

impl CertificateProfile {
    /// Every built-in profile, in the order a leaf is matched against them.
    pub const ALL: [CertificateProfile; 2] = [CertificateProfile::JpkiUserAuthentication, CertificateProfile::JpkiSigning];

    /// The profile's name (one of [`PROFILE_NAMES`]).
    pub fn name(self) -> &'static str {
        match self {
            CertificateProfile::JpkiUserAuthentication => PROFILE_NAMES[0],
            CertificateProfile::JpkiSigning => PROFILE_NAMES[1],
        }
    }

    /// The profile of this exact name, if it is built in.
    pub fn from_name(name: &str) -> Option<CertificateProfile> {
        CertificateProfile::ALL.into_iter().find(|p| p.name() == name)
    }

    /// [`CertificateProfile::from_name`] for settings: an unknown name is a
    /// configuration error whose message lists the known ones.
    pub fn lookup(name: &str) -> Result<CertificateProfile, SignatureError> {
        CertificateProfile::from_name(name).ok_or_else(|| {
            SignatureError::Config(format!("unknown certificate profile {name:?}; the built-in profiles are {}", PROFILE_NAMES.join(", ")))
        })
    }

    /// The `OU` the issuing CA's name must hold, next to `O=JPKI`.
    fn issuer_unit(self) -> &'static str {
        match self {
            CertificateProfile::JpkiUserAuthentication => "JPKI for user authentication",
            CertificateProfile::JpkiSigning => "JPKI for digital signature",
        }
    }

    /// Why `leaf` does not fit this profile (the first reason found), or None when it fits.
    /// The reason names the key, algorithms, usages and the issuer, never the subject.
    pub(crate) fn misfit(self, leaf: &X509Certificate<'_>) -> Option<String> {
        let spki = leaf.public_key();
        if spki.algorithm.algorithm.to_id_string() != RSA_KEY {
            return Some(format!("its key is not RSA (algorithm {})", spki.algorithm.algorithm.to_id_string()));
        }
        match rsa_modulus_bits(leaf) {
            Some(2048) => {}
            Some(bits) => return Some(format!("its RSA key has {bits} bits, not 2048")),
            None => return Some("its RSA key does not parse".into()),
        }
        let sig_alg = leaf.signature_algorithm.algorithm.to_id_string();
        if sig_alg != SHA256_WITH_RSA {
            return Some(format!("it is signed with algorithm {sig_alg}, not sha256WithRSAEncryption"));
        }
        let key_usage = match leaf.key_usage() {
            Ok(Some(ku)) => ku,
            Ok(None) => return Some("it has no keyUsage".into()),
            Err(_) => return Some("its keyUsage does not parse".into()),
        };
        match self {
            CertificateProfile::JpkiUserAuthentication => {
                if !key_usage.critical || !key_usage.value.digital_signature() {
                    return Some(format!(
                        "its keyUsage ({}{}) is not a critical digitalSignature",
                        key_usage.value,
                        if key_usage.critical { ", critical" } else { ", not critical" }
                    ));
                }
                match leaf.extended_key_usage() {
                    Ok(Some(eku)) if eku.value.client_auth => {}
                    Ok(_) => return Some("its extendedKeyUsage does not include clientAuth".into()),
                    Err(_) => return Some("its extendedKeyUsage does not parse".into()),
                }
            }
            CertificateProfile::JpkiSigning => {
                if !key_usage.value.non_repudiation() {
                    return Some(format!("its keyUsage ({}) does not include nonRepudiation", key_usage.value));
                }
            }
        }
        if !(has_value(leaf.issuer(), Attr::Organization, "JPKI") && has_value(leaf.issuer(), Attr::Unit, self.issuer_unit())) {
            return Some(format!("its issuer is not a JPKI CA with O=JPKI and OU={}", self.issuer_unit()));
        }
        None
    }
}

/// The built-in profile `leaf` fits, the first in [`CertificateProfile::ALL`] order.
pub(crate) fn fitting(leaf: &X509Certificate<'_>) -> Option<CertificateProfile> {
    CertificateProfile::ALL.into_iter().find(|p| p.misfit(leaf).is_none())
}

#[derive(Clone, Copy)]
enum Attr {
    Organization,
    Unit,
}

fn has_value(name: &X509Name<'_>, attr: Attr, value: &str) -> bool {
    let mut iter: Box<dyn Iterator<Item = _>> = match attr {
        Attr::Organization => Box::new(name.iter_organization()),
        Attr::Unit => Box::new(name.iter_organizational_unit()),
    };
    iter.any(|atv| atv.as_str().is_ok_and(|s| s == value))
}

/// The size of an RSA key's modulus in bits (leading zero bits not counted).
fn rsa_modulus_bits(cert: &X509Certificate<'_>) -> Option<usize> {
    match cert.public_key().parsed().ok()? {
        x509_parser::public_key::PublicKey::RSA(rsa) => {
            let m = rsa.modulus;
            let skip = m.iter().take_while(|b| **b == 0).count();
            let m = &m[skip..];
            let first = *m.first()?;
            Some(m.len() * 8 - first.leading_zeros() as usize)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_configuration_errors() {
        for p in CertificateProfile::ALL {
            assert_eq!(CertificateProfile::from_name(p.name()), Some(p));
            assert_eq!(CertificateProfile::lookup(p.name()).ok(), Some(p));
        }
        assert_eq!(CertificateProfile::from_name("JPKI-signing"), None);
        let e = CertificateProfile::lookup("jpki").expect_err("unknown");
        assert!(matches!(&e, SignatureError::Config(m) if m.contains("\"jpki\"") && m.contains("jpki-user-authentication")), "{e}");
    }
}
