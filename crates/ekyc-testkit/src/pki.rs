//! A throw-away PKI for tests of signature evidence: a root CA (the trust anchor), optionally
//! an intermediate CA, users whose private keys the test holds (good, expired, not yet
//! valid, issued by an untrusted CA, revoked, with the wrong key usage), the CRL the issuing
//! CA publishes, and the signatures over a nonce that a My Number card (JPKI, RSA PKCS#1 v1.5
//! with SHA-256) or another device would make.
//!
//! ```no_run
//! use ekyc_testkit::pki::{KeyAlg, TestPki, UserKind};
//! let pki = TestPki::new();
//! let user = pki.user(UserKind::Good, KeyAlg::EcdsaP256);
//! let nonce = b"session nonce";
//! let (chain, signature, algorithm) = (user.chain_der(), user.sign(nonce), user.algorithm());
//! let files = pki.trust_dir(); // ca.pem, crl.pem, stale-crl.pem for a TrustConfig
//! # let _ = (chain, signature, algorithm, files);
//! ```
//!
//! Everything is generated in memory when the PKI is made (a few milliseconds with the
//! default ECDSA CA); RSA keys are generated once per test process and role (user, root,
//! intermediate, untrusted CA) and shared, since RSA key generation is slow.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature as rs;
use time::{Duration, OffsetDateTime};

/// The common name of the trust anchor. The untrusted CA uses the same name with another
/// key, so a verifier that matches names without checking signatures is caught.
pub const ROOT_CA_NAME: &str = "ekyc Test Root CA";
/// How many revoked users one PKI can issue (their serials are in the CRL from the start).
pub const MAX_REVOKED_USERS: usize = 16;

/// A key type for users and CAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// RSA 2048 (one key per test process for all users), signing RSA PKCS#1 v1.5 with SHA-256 as JPKI does.
    Rsa2048,
    /// ECDSA on P-256 with SHA-256, DER signatures.
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384, DER signatures.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl KeyAlg {
    /// The `signature_algorithm` name [`TestUser::sign`] signs with.
    pub fn default_algorithm(self) -> &'static str {
        match self {
            KeyAlg::Rsa2048 => "RSA_PKCS1_SHA256",
            KeyAlg::EcdsaP256 => "ECDSA_P256_SHA256",
            KeyAlg::EcdsaP384 => "ECDSA_P384_SHA384",
            KeyAlg::Ed25519 => "ED25519",
        }
    }
}

/// What is (deliberately) wrong with a user's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserKind {
    /// Valid now, keyUsage digitalSignature + nonRepudiation (critical), as a JPKI signing
    /// certificate.
    Good,
    /// Expired a year ago.
    Expired,
    /// Valid only from a year from now.
    NotYetValid,
    /// Issued by a CA that is not the trust anchor (same name as the root, another key).
    UntrustedCa,
    /// Otherwise good, but its serial is listed in the CRL (reason keyCompromise).
    Revoked,
    /// keyUsage keyCertSign only: may not sign documents.
    WrongKeyUsage,
    /// No keyUsage extension at all (which is allowed).
    NoKeyUsage,
}

/// How to shape the PKI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PkiOptions {
    /// The CAs' key type (default ECDSA P-256; `Rsa2048` for a JPKI-like all-RSA chain).
    pub ca_key: KeyAlg,
    /// Put an intermediate CA between the root and the users; it then issues the users and
    /// the CRL.
    pub intermediate: bool,
}

impl Default for PkiOptions {
    fn default() -> Self {
        PkiOptions { ca_key: KeyAlg::EcdsaP256, intermediate: false }
    }
}

/// The test PKI. See the module documentation.
pub struct TestPki {
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: Option<CertifiedIssuer<'static, KeyPair>>,
    untrusted: CertifiedIssuer<'static, KeyPair>,
    revoked_serials: Vec<Vec<u8>>,
    next_revoked: AtomicUsize,
    next_user: AtomicUsize,
    crl_der: Vec<u8>,
    crl_pem: String,
    stale_crl_der: Vec<u8>,
    stale_crl_pem: String,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").field("intermediate", &self.intermediate.is_some()).finish_non_exhaustive()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

impl TestPki {
    /// A root CA (ECDSA P-256) that issues the users and the CRL directly.
    pub fn new() -> TestPki {
        TestPki::with_options(PkiOptions::default())
    }

    /// A root CA and an intermediate CA that issues the users and the CRL.
    pub fn with_intermediate() -> TestPki {
        TestPki::with_options(PkiOptions { intermediate: true, ..PkiOptions::default() })
    }

    /// # Panics
    /// If key generation or signing fails (a broken test environment).
    pub fn with_options(options: PkiOptions) -> TestPki {
        let root =
            CertifiedIssuer::self_signed(ca_params(ROOT_CA_NAME), new_key(options.ca_key, Role::Root)).expect("self-sign the test root CA");
        let untrusted = CertifiedIssuer::self_signed(ca_params(ROOT_CA_NAME), new_key(options.ca_key, Role::Untrusted))
            .expect("self-sign the untrusted CA");
        let intermediate = options.intermediate.then(|| {
            CertifiedIssuer::signed_by(ca_params("ekyc Test Intermediate CA"), new_key(options.ca_key, Role::Intermediate), &root)
                .expect("issue the test intermediate CA")
        });
        let revoked_serials: Vec<Vec<u8>> = (0..MAX_REVOKED_USERS).map(|_| random_serial()).collect();
        let now = OffsetDateTime::now_utc();
        let issuer = intermediate.as_ref().unwrap_or(&root);
        let crl = |this_update: OffsetDateTime, next_update: OffsetDateTime| {
            let params = CertificateRevocationListParams {
                this_update,
                next_update,
                crl_number: SerialNumber::from(1u64),
                issuing_distribution_point: None,
                revoked_certs: revoked_serials
                    .iter()
                    .map(|s| RevokedCertParams {
                        serial_number: SerialNumber::from_slice(s),
                        revocation_time: now - Duration::days(2),
                        reason_code: Some(RevocationReason::KeyCompromise),
                        invalidity_date: None,
                    })
                    .collect(),
                key_identifier_method: KeyIdMethod::Sha256,
            };
            let crl = params.signed_by(issuer).expect("sign the test CRL");
            (crl.der().to_vec(), crl.pem().expect("PEM-encode the test CRL"))
        };
        let (crl_der, crl_pem) = crl(now - Duration::hours(1), now + Duration::days(7));
        let (stale_crl_der, stale_crl_pem) = crl(now - Duration::days(30), now - Duration::days(1));
        TestPki {
            root,
            intermediate,
            untrusted,
            revoked_serials,
            next_revoked: AtomicUsize::new(0),
            next_user: AtomicUsize::new(1),
            crl_der,
            crl_pem,
            stale_crl_der,
            stale_crl_pem,
        }
    }

    /// Issues a new user of this kind with a fresh key of `alg` (RSA: the process's shared
    /// user key). Each call makes a new certificate with its own serial number.
    ///
    /// # Panics
    /// After [`MAX_REVOKED_USERS`] revoked users, or if signing fails.
    pub fn user(&self, kind: UserKind, alg: KeyAlg) -> TestUser {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "JP");
        params.distinguished_name.push(DnType::OrganizationName, "ekyc test");
        params.distinguished_name.push(DnType::CommonName, format!("Test User {n} ({kind:?}, {alg:?})"));
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::ContentCommitment];
        let serial = match kind {
            UserKind::Revoked => {
                let i = self.next_revoked.fetch_add(1, Ordering::Relaxed);
                self.revoked_serials.get(i).cloned().expect("no more than MAX_REVOKED_USERS revoked users per TestPki")
            }
            _ => random_serial(),
        };
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        match kind {
            UserKind::Expired => {
                params.not_before = now - Duration::days(730);
                params.not_after = now - Duration::days(365);
            }
            UserKind::NotYetValid => {
                params.not_before = now + Duration::days(365);
                params.not_after = now + Duration::days(730);
            }
            UserKind::WrongKeyUsage => params.key_usages = vec![KeyUsagePurpose::KeyCertSign],
            UserKind::NoKeyUsage => params.key_usages = Vec::new(),
            UserKind::Good | UserKind::UntrustedCa | UserKind::Revoked => {}
        }
        let key = new_key(alg, Role::User);
        let (issuer, intermediates): (&CertifiedIssuer<'static, KeyPair>, Vec<Vec<u8>>) = match (kind, &self.intermediate) {
            (UserKind::UntrustedCa, _) => (&self.untrusted, Vec::new()),
            (_, Some(inter)) => (inter, vec![inter.der().to_vec()]),
            (_, None) => (&self.root, Vec::new()),
        };
        let cert = params.signed_by(&key, issuer).expect("issue the test user certificate");
        TestUser {
            kind,
            alg,
            cert_der: cert.der().to_vec(),
            intermediates,
            root_der: if kind == UserKind::UntrustedCa { self.untrusted.der().to_vec() } else { self.root.der().to_vec() },
            serial,
            pkcs8: key.serialize_der(),
        }
    }

    /// The trust anchor, DER.
    pub fn root_cert_der(&self) -> &[u8] {
        self.root.der()
    }

    /// The trust anchor, PEM.
    pub fn root_cert_pem(&self) -> String {
        self.root.pem()
    }

    /// The intermediate CA, DER, when the PKI has one.
    pub fn intermediate_cert_der(&self) -> Option<&[u8]> {
        self.intermediate.as_ref().map(|i| i.der().as_ref())
    }

    /// The untrusted CA (same name as the root, another key), DER.
    pub fn untrusted_ca_cert_der(&self) -> &[u8] {
        self.untrusted.der()
    }

    /// The issuing CA's current CRL (valid from an hour ago for 7 days), listing every
    /// revoked user's serial, DER.
    pub fn crl_der(&self) -> &[u8] {
        &self.crl_der
    }

    /// [`TestPki::crl_der`] as PEM.
    pub fn crl_pem(&self) -> &str {
        &self.crl_pem
    }

    /// The same revocations in a CRL whose nextUpdate was yesterday, DER.
    pub fn stale_crl_der(&self) -> &[u8] {
        &self.stale_crl_der
    }

    /// [`TestPki::stale_crl_der`] as PEM.
    pub fn stale_crl_pem(&self) -> &str {
        &self.stale_crl_pem
    }

    /// Writes `ca.pem`, `crl.pem`, `crl.der` and `stale-crl.pem` into `dir` (which must exist).
    ///
    /// # Panics
    /// If a file cannot be written.
    pub fn write_trust_files(&self, dir: &Path) -> TrustFiles {
        let files = TrustFiles {
            ca_pem: dir.join("ca.pem"),
            crl_pem: dir.join("crl.pem"),
            crl_der: dir.join("crl.der"),
            stale_crl_pem: dir.join("stale-crl.pem"),
        };
        std::fs::write(&files.ca_pem, self.root_cert_pem()).expect("write ca.pem");
        std::fs::write(&files.crl_pem, self.crl_pem()).expect("write crl.pem");
        std::fs::write(&files.crl_der, self.crl_der()).expect("write crl.der");
        std::fs::write(&files.stale_crl_pem, self.stale_crl_pem()).expect("write stale-crl.pem");
        files
    }

    /// [`TestPki::write_trust_files`] into a new temporary directory, removed when the
    /// returned value is dropped.
    ///
    /// # Panics
    /// If the directory or a file cannot be made.
    pub fn trust_dir(&self) -> TrustDir {
        let dir = tempfile::Builder::new().prefix("ekyc-test-pki-").tempdir().expect("make a temporary directory");
        let files = self.write_trust_files(dir.path());
        TrustDir { dir, files }
    }
}

/// Paths of the files [`TestPki::write_trust_files`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustFiles {
    /// The root CA certificate: `AnchorConfig::certificate_pem`.
    pub ca_pem: PathBuf,
    /// The current CRL: `AnchorConfig::crl`.
    pub crl_pem: PathBuf,
    /// The current CRL as DER.
    pub crl_der: PathBuf,
    /// A CRL past its nextUpdate.
    pub stale_crl_pem: PathBuf,
}

/// A temporary directory holding the trust files; deleted on drop.
#[derive(Debug)]
pub struct TrustDir {
    pub dir: tempfile::TempDir,
    pub files: TrustFiles,
}

impl std::ops::Deref for TrustDir {
    type Target = TrustFiles;
    fn deref(&self) -> &TrustFiles {
        &self.files
    }
}

/// A user: a certificate and the private key that goes with it.
pub struct TestUser {
    kind: UserKind,
    alg: KeyAlg,
    cert_der: Vec<u8>,
    intermediates: Vec<Vec<u8>>,
    root_der: Vec<u8>,
    serial: Vec<u8>,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for TestUser {
    // The private key stays out of test output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestUser")
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .field("serial", &self.serial_hex())
            .finish_non_exhaustive()
    }
}

impl TestUser {
    pub fn kind(&self) -> UserKind {
        self.kind
    }

    pub fn key_alg(&self) -> KeyAlg {
        self.alg
    }

    /// The `signature_algorithm` name of [`TestUser::sign`].
    pub fn algorithm(&self) -> &'static str {
        self.alg.default_algorithm()
    }

    /// The user's certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// What a client sends: the user's certificate, then the intermediate CA if any.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        std::iter::once(self.cert_der.clone()).chain(self.intermediates.iter().cloned()).collect()
    }

    /// [`TestUser::chain_der`] followed by the root the certificate chains to.
    pub fn chain_with_root_der(&self) -> Vec<Vec<u8>> {
        let mut chain = self.chain_der();
        chain.push(self.root_der.clone());
        chain
    }

    /// The serial number as lower-case hex, no separators.
    pub fn serial_hex(&self) -> String {
        self.serial.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Signs `message` with [`TestUser::algorithm`].
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.sign_with(message, self.algorithm())
    }

    /// Signs `message` with a named `signature_algorithm` (`RSA_PSS_SHA384`,
    /// `ECDSA_P256_SHA256_FIXED`, ...).
    ///
    /// # Panics
    /// If the algorithm is unknown or does not fit the user's key.
    pub fn sign_with(&self, message: &[u8], algorithm: &str) -> Vec<u8> {
        let rng = SystemRandom::new();
        let misfit = || format!("TestUser::sign_with: {algorithm} does not fit a {:?} key", self.alg);
        let rsa = |padding: &'static dyn rs::RsaEncoding| {
            let key = rs::RsaKeyPair::from_pkcs8(&self.pkcs8).unwrap_or_else(|_| panic!("{}", misfit()));
            let mut sig = vec![0; key.public().modulus_len()];
            key.sign(padding, &rng, message, &mut sig).expect("RSA signing");
            sig
        };
        let ecdsa = |alg: &'static rs::EcdsaSigningAlgorithm| {
            let key = rs::EcdsaKeyPair::from_pkcs8(alg, &self.pkcs8, &rng).unwrap_or_else(|_| panic!("{}", misfit()));
            key.sign(&rng, message).expect("ECDSA signing").as_ref().to_vec()
        };
        match algorithm {
            "RSA_PKCS1_SHA256" => rsa(&rs::RSA_PKCS1_SHA256),
            "RSA_PKCS1_SHA384" => rsa(&rs::RSA_PKCS1_SHA384),
            "RSA_PKCS1_SHA512" => rsa(&rs::RSA_PKCS1_SHA512),
            "RSA_PSS_SHA256" => rsa(&rs::RSA_PSS_SHA256),
            "RSA_PSS_SHA384" => rsa(&rs::RSA_PSS_SHA384),
            "RSA_PSS_SHA512" => rsa(&rs::RSA_PSS_SHA512),
            "ECDSA_P256_SHA256" => ecdsa(&rs::ECDSA_P256_SHA256_ASN1_SIGNING),
            "ECDSA_P384_SHA384" => ecdsa(&rs::ECDSA_P384_SHA384_ASN1_SIGNING),
            "ECDSA_P256_SHA256_FIXED" => ecdsa(&rs::ECDSA_P256_SHA256_FIXED_SIGNING),
            "ECDSA_P384_SHA384_FIXED" => ecdsa(&rs::ECDSA_P384_SHA384_FIXED_SIGNING),
            "ED25519" => {
                let key = rs::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.pkcs8).unwrap_or_else(|_| panic!("{}", misfit()));
                key.sign(message).as_ref().to_vec()
            }
            other => panic!("TestUser::sign_with: unknown algorithm {other:?}"),
        }
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CountryName, "JP");
    params.distinguished_name.push(DnType::OrganizationName, "ekyc test");
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(30);
    params.not_after = now + Duration::days(3650);
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params
}

/// Who a key is for: RSA keys are shared per role and process, so the CAs and the users
/// never share one.
#[derive(Debug, Clone, Copy)]
enum Role {
    User = 0,
    Root = 1,
    Intermediate = 2,
    Untrusted = 3,
}

/// A fresh key of `alg`; RSA returns the process's shared key for `role`.
fn new_key(alg: KeyAlg, role: Role) -> KeyPair {
    match alg {
        KeyAlg::Rsa2048 => KeyPair::try_from(shared_rsa_pkcs8(role)).expect("load the shared RSA key"),
        KeyAlg::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate a P-256 key"),
        KeyAlg::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("generate a P-384 key"),
        KeyAlg::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("generate an Ed25519 key"),
    }
}

/// One 2048-bit RSA key per role and process, PKCS#8 DER, made on first use.
fn shared_rsa_pkcs8(role: Role) -> &'static [u8] {
    static KEYS: [OnceLock<Vec<u8>>; 4] = [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];
    KEYS[role as usize].get_or_init(|| {
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("generate an RSA key");
        key.to_pkcs8_der().expect("encode the RSA key").as_bytes().to_vec()
    })
}

/// 16 random bytes, positive and without a leading zero byte.
fn random_serial() -> Vec<u8> {
    let mut serial = vec![0u8; 16];
    SystemRandom::new().fill(&mut serial).expect("system random numbers");
    serial[0] = (serial[0] & 0x7f) | 0x10;
    serial
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_signs_with_every_algorithm_that_fits_it() {
        let pki = TestPki::new();
        let cases: [(KeyAlg, &[&str]); 4] = [
            (
                KeyAlg::Rsa2048,
                &["RSA_PKCS1_SHA256", "RSA_PKCS1_SHA384", "RSA_PKCS1_SHA512", "RSA_PSS_SHA256", "RSA_PSS_SHA384", "RSA_PSS_SHA512"],
            ),
            (KeyAlg::EcdsaP256, &["ECDSA_P256_SHA256", "ECDSA_P256_SHA256_FIXED"]),
            (KeyAlg::EcdsaP384, &["ECDSA_P384_SHA384", "ECDSA_P384_SHA384_FIXED"]),
            (KeyAlg::Ed25519, &["ED25519"]),
        ];
        for (alg, names) in cases {
            let user = pki.user(UserKind::Good, alg);
            for name in names {
                let sig = user.sign_with(b"nonce", name);
                let expected_len = match *name {
                    n if n.starts_with("RSA") => 256,
                    "ECDSA_P256_SHA256_FIXED" => 64,
                    "ECDSA_P384_SHA384_FIXED" => 96,
                    "ED25519" => 64,
                    _ => sig.len(),
                };
                assert_eq!(sig.len(), expected_len, "{name}");
                assert!(!sig.is_empty());
            }
        }
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_misfit_algorithm_panics_with_a_clear_message() {
        TestPki::new().user(UserKind::Good, KeyAlg::EcdsaP256).sign_with(b"n", "ED25519");
    }

    #[test]
    fn revoked_users_get_distinct_serials_that_good_users_never_get() {
        let pki = TestPki::new();
        let a = pki.user(UserKind::Revoked, KeyAlg::EcdsaP256);
        let b = pki.user(UserKind::Revoked, KeyAlg::EcdsaP256);
        let good = pki.user(UserKind::Good, KeyAlg::EcdsaP256);
        assert_ne!(a.serial_hex(), b.serial_hex());
        assert!(pki.revoked_serials.iter().any(|s| s == &a.serial));
        assert!(!pki.revoked_serials.iter().any(|s| s == &good.serial));
        assert_eq!(good.serial_hex().len(), 32);
    }

    #[test]
    fn chains_carry_the_intermediate_when_there_is_one() {
        let flat = TestPki::new();
        assert_eq!(flat.user(UserKind::Good, KeyAlg::Ed25519).chain_der().len(), 1);
        assert!(flat.intermediate_cert_der().is_none());
        let deep = TestPki::with_intermediate();
        let user = deep.user(UserKind::Good, KeyAlg::Ed25519);
        let chain = user.chain_with_root_der();
        assert_eq!(chain.len(), 3);
        assert_eq!(Some(chain[1].as_slice()), deep.intermediate_cert_der());
        assert_eq!(chain[2], deep.root_cert_der());
        let untrusted = deep.user(UserKind::UntrustedCa, KeyAlg::Ed25519);
        assert_eq!(untrusted.chain_der().len(), 1);
        assert_eq!(untrusted.chain_with_root_der()[1], deep.untrusted_ca_cert_der());
    }

    #[test]
    fn trust_files_are_written_and_removed_with_the_directory() {
        let pki = TestPki::new();
        let dir = pki.trust_dir();
        let ca = std::fs::read_to_string(&dir.ca_pem).expect("ca.pem");
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(std::fs::read_to_string(&dir.crl_pem).expect("crl.pem").starts_with("-----BEGIN X509 CRL-----"));
        assert_eq!(std::fs::read(&dir.crl_der).expect("crl.der"), pki.crl_der());
        assert_ne!(pki.crl_der(), pki.stale_crl_der());
        let path = dir.dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }
}
