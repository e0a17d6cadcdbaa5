//! A throw-away PKI for tests of signature evidence: a root CA (the trust anchor), optionally
//! an intermediate CA, users whose private keys the test holds (good, expired, not yet
//! valid, issued by an untrusted CA, revoked, with the wrong key usage), the CRL the issuing
//! CA publishes, and the signatures over a nonce that a My Number card (JPKI, RSA PKCS#1 v1.5
//! with SHA-256) or another device would make.
//!
//! [`TestPki::jpki`] mimics the two certificates of a My Number card's JPKI applet (all-RSA
//! 2048, sha256WithRSAEncryption): [`JpkiProfile::UserAuthentication`], a CA named
//! `C=JP, O=JPKI, OU=JPKI for user authentication, OU=Japan Agency for Local Authority
//! Information Systems` issuing users with keyUsage digitalSignature, extendedKeyUsage
//! clientAuth and an opaque random subject; and [`JpkiProfile::Signing`], a CA named
//! `... OU=JPKI for digital signature ...` issuing users with keyUsage nonRepudiation whose
//! subject names [`JPKI_TEST_PERSON`] and whose JPKI extensions 1.2.392.200149.8.5.5.1 to .6
//! carry that person's name, gender, birth date and address as UTF8Strings, so tests can
//! check that none of it comes out of a verifier. Every [`UserKind`] works in both.
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
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, CustomExtension, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature as rs;
use time::{Duration, OffsetDateTime};

/// The common name of the trust anchor. The untrusted CA uses the same name with another
/// key, so a verifier that matches names without checking signatures is caught.
pub const ROOT_CA_NAME: &str = "ekyc Test Root CA";
/// How many revoked users one PKI can issue (their serials are in the CRL from the start).
pub const MAX_REVOKED_USERS: usize = 16;

/// Which JPKI certificate a [`TestPki`] mimics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JpkiProfile {
    /// 利用者証明用電子証明書: digitalSignature (critical), clientAuth, an opaque subject.
    UserAuthentication,
    /// 署名用電子証明書: nonRepudiation, the holder's name in the subject and the holder's
    /// data in the JPKI extensions.
    Signing,
}

impl JpkiProfile {
    /// The name of the matching built-in profile of `ekyc-signature`.
    pub fn profile_name(self) -> &'static str {
        match self {
            JpkiProfile::UserAuthentication => "jpki-user-authentication",
            JpkiProfile::Signing => "jpki-signing",
        }
    }

    /// The CA's `OU` that tells the two apart.
    pub fn issuer_unit(self) -> &'static str {
        match self {
            JpkiProfile::UserAuthentication => "JPKI for user authentication",
            JpkiProfile::Signing => "JPKI for digital signature",
        }
    }
}

/// The personal data a JPKI signing certificate carries (made up), as written into the test
/// signing certificates: a verifier must never let any of it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpkiPerson {
    /// 氏名, in the subject's CN and extension .1.
    pub name: &'static str,
    /// The name in other characters, extension .2.
    pub name_other: &'static str,
    /// 性別, extension .3.
    pub gender: &'static str,
    /// 生年月日, extension .4.
    pub birth_date: &'static str,
    /// 住所, extension .5 (and the subject's L).
    pub address: &'static str,
    /// The address in other characters, extension .6.
    pub address_other: &'static str,
}

impl JpkiPerson {
    /// Every value, for "none of these appears" assertions.
    pub fn values(&self) -> [&'static str; 6] {
        [self.name, self.name_other, self.gender, self.birth_date, self.address, self.address_other]
    }
}

/// The holder of every test JPKI signing certificate.
pub const JPKI_TEST_PERSON: JpkiPerson = JpkiPerson {
    name: "山田 太郎",
    name_other: "ヤマダ タロウ",
    gender: "男性",
    birth_date: "19850401",
    address: "東京都千代田区霞が関二丁目1番2号",
    address_other: "トウキョウトチヨダクカスミガセキ",
};

/// The OID arc of the JPKI holder-data extensions (name, name in other characters, gender,
/// birth date, address, address in other characters: .1 to .6).
pub const JPKI_EXTENSION_ARC: [u64; 7] = [1, 2, 392, 200149, 8, 5, 5];

/// The name of the agency that runs JPKI, the second `OU` of its CAs.
const JPKI_AGENCY: &str = "Japan Agency for Local Authority Information Systems";

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
    /// Mimic a JPKI CA and its users (see the module documentation); None: the generic
    /// `ekyc Test Root CA` with users that fit no JPKI profile.
    pub jpki: Option<JpkiProfile>,
}

impl Default for PkiOptions {
    fn default() -> Self {
        PkiOptions { ca_key: KeyAlg::EcdsaP256, intermediate: false, jpki: None }
    }
}

/// The test PKI. See the module documentation.
pub struct TestPki {
    jpki: Option<JpkiProfile>,
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
        f.debug_struct("TestPki").field("jpki", &self.jpki).field("intermediate", &self.intermediate.is_some()).finish_non_exhaustive()
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

    /// A JPKI-like PKI (see the module documentation): an RSA-2048 root CA with the JPKI
    /// name of `profile`, issuing the users and the CRL directly. Users should be made with
    /// [`KeyAlg::Rsa2048`] to fit the profile.
    pub fn jpki(profile: JpkiProfile) -> TestPki {
        TestPki::with_options(PkiOptions { ca_key: KeyAlg::Rsa2048, intermediate: false, jpki: Some(profile) })
    }

    /// # Panics
    /// If key generation or signing fails (a broken test environment).
    pub fn with_options(options: PkiOptions) -> TestPki {
        let root_params = || match options.jpki {
            Some(profile) => jpki_ca_params(profile, None),
            None => ca_params(ROOT_CA_NAME),
        };
        let root = CertifiedIssuer::self_signed(root_params(), new_key(options.ca_key, Role::Root)).expect("self-sign the test root CA");
        let untrusted =
            CertifiedIssuer::self_signed(root_params(), new_key(options.ca_key, Role::Untrusted)).expect("self-sign the untrusted CA");
        let intermediate = options.intermediate.then(|| {
            let params = match options.jpki {
                Some(profile) => jpki_ca_params(profile, Some("ekyc Test JPKI Sub CA")),
                None => ca_params("ekyc Test Intermediate CA"),
            };
            CertifiedIssuer::signed_by(params, new_key(options.ca_key, Role::Intermediate), &root).expect("issue the test intermediate CA")
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
            jpki: options.jpki,
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
        match self.jpki {
            None => {
                params.distinguished_name.push(DnType::OrganizationName, "ekyc test");
                params.distinguished_name.push(DnType::CommonName, format!("Test User {n} ({kind:?}, {alg:?})"));
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::ContentCommitment];
            }
            Some(JpkiProfile::UserAuthentication) => {
                // An opaque identifier, as on the card: nothing about the person.
                params.distinguished_name.push(DnType::CommonName, hex_upper(&random_serial()));
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
            Some(JpkiProfile::Signing) => {
                let person = JPKI_TEST_PERSON;
                params.distinguished_name.push(DnType::LocalityName, person.address);
                params.distinguished_name.push(DnType::CommonName, person.name);
                params.key_usages = vec![KeyUsagePurpose::ContentCommitment];
                let values = person.values();
                params.custom_extensions = (1..=6u64)
                    .zip(values)
                    .map(|(i, value)| {
                        let mut oid = JPKI_EXTENSION_ARC.to_vec();
                        oid.push(i);
                        CustomExtension::from_oid_content(&oid, der_utf8_string(value))
                    })
                    .collect();
            }
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365);
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

    /// The JPKI certificate this PKI mimics, if any.
    pub fn jpki_profile(&self) -> Option<JpkiProfile> {
        self.jpki
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

/// A JPKI CA's name: `C=JP, O=JPKI, OU=<profile's unit>, OU=<the agency>[, CN=<cn>]`.
fn jpki_ca_params(profile: JpkiProfile, common_name: Option<&str>) -> CertificateParams {
    let mut params = ca_params("");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CountryName, "JP");
    params.distinguished_name.push(DnType::OrganizationName, "JPKI");
    params.distinguished_name.push(DnType::OrganizationalUnitName, profile.issuer_unit());
    // rcgen keeps one value per attribute type: the second OU goes in under its OID.
    params.distinguished_name.push(DnType::CustomDnType(vec![2, 5, 4, 11]), JPKI_AGENCY);
    if let Some(cn) = common_name {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    params
}

/// `value` as a DER UTF8String.
fn der_utf8_string(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut out = vec![0x0c];
    if bytes.len() < 128 {
        out.push(bytes.len() as u8);
    } else {
        let len = bytes.len().to_be_bytes();
        let skip = len.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (len.len() - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend_from_slice(bytes);
    out
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
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
    fn jpki_pkis_name_their_cas_and_carry_the_holder_only_in_signing_certificates() {
        let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        for profile in [JpkiProfile::UserAuthentication, JpkiProfile::Signing] {
            let pki = TestPki::jpki(profile);
            assert_eq!(pki.jpki_profile(), Some(profile));
            let root = pki.root_cert_der();
            for part in ["JPKI", profile.issuer_unit(), JPKI_AGENCY] {
                assert!(contains(root, part.as_bytes()), "{profile:?}: {part}");
            }
            let user = pki.user(UserKind::Good, KeyAlg::Rsa2048);
            let leaf = user.cert_der();
            let holder = JPKI_TEST_PERSON.values().iter().filter(|v| contains(leaf, v.as_bytes())).count();
            // clientAuth, 1.3.6.1.5.5.7.3.2 as DER OID content.
            let client_auth = contains(leaf, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02]);
            match profile {
                JpkiProfile::UserAuthentication => assert_eq!((holder, client_auth), (0, true)),
                JpkiProfile::Signing => assert_eq!((holder, client_auth), (6, false)),
            }
            assert_eq!(user.sign(b"tbs").len(), 256);
        }
        assert_eq!(der_utf8_string("ab"), vec![0x0c, 2, b'a', b'b']);
        assert_eq!(&der_utf8_string(&"x".repeat(300))[..4], &[0x0c, 0x82, 0x01, 0x2c]);
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
