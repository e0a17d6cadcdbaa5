//! A test PKI for TLS between the services: a CA, server certificates (DNS names and IP
//! addresses in the SAN) and client certificates (a DNS name in the SAN), written as PEM
//! files into a temporary folder that the settings under test point at. A second
//! [`TlsPki`] is "another CA" whose certificates a server must refuse.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

/// A certificate and its key, as PEM text and as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A CA in a temporary folder; certificates it issues are written there too.
pub struct TlsPki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_file: PathBuf,
}

impl std::fmt::Debug for TlsPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPki").field("dir", &self.dir.path()).finish()
    }
}

fn params(common_name: &str, names: &[&str]) -> CertificateParams {
    let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid SAN names");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "ekyc test");
    params.distinguished_name.push(DnType::CommonName, common_name);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(30);
    params
}

impl TlsPki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TlsPki {
        let dir = tempfile::tempdir().expect("a temporary folder for the test PKI");
        let mut p = params(name, &[]);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate a P-256 key");
        let ca = CertifiedIssuer::self_signed(p, key).expect("self-sign the test TLS CA");
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, ca.pem()).expect("write the CA certificate");
        TlsPki { dir, ca, ca_file }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The file holding the CA certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A server certificate for `names` (DNS names or IP addresses), files `<file>.crt/.key`.
    pub fn server(&self, file: &str, names: &[&str]) -> CertFiles {
        let mut p = params(names.first().copied().unwrap_or(file), names);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file, p)
    }

    /// A client certificate naming `name` (SAN DNS and CN), files `<file>.crt/.key`.
    pub fn client(&self, file: &str, name: &str) -> CertFiles {
        let mut p = params(name, &[name]);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(file, p)
    }

    fn issue(&self, file: &str, mut p: CertificateParams) -> CertFiles {
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate a P-256 key");
        let cert = p.signed_by(&key, &self.ca).expect("issue a test TLS certificate");
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        let cert_file = self.dir.path().join(format!("{file}.crt"));
        let key_file = self.dir.path().join(format!("{file}.key"));
        std::fs::write(&cert_file, &cert_pem).expect("write the certificate");
        std::fs::write(&key_file, &key_pem).expect("write the key");
        CertFiles { cert_pem, key_pem, cert_file, key_file }
    }

    /// Writes `text` to `name` in this PKI's folder (e.g. a password file) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a test file");
        path
    }
}
