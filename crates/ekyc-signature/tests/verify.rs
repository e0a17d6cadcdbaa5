//! Signature evidence judged against a real (test) PKI: every supported algorithm, each way a
//! certificate can be wrong, CRLs current, stale and absent, intermediates, and the limits
//! on what a client may send; signatures bound to their session context (`context`), and
//! the JPKI certificate profiles with no personal data coming out (`profiles`).

#[path = "verify/context.rs"]
mod context;
#[path = "verify/profiles.rs"]
mod profiles;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ekyc_signature::{
    Anchor, AnchorConfig, FailureKind, Revocation, SUPPORTED_ALGORITHMS, SignatureError, SignatureInput, TrustConfig, TrustStore, Verdict,
};
use ekyc_testkit::pki::{KeyAlg, PkiOptions, TestPki, TestUser, UserKind};
use sha2::{Digest, Sha256};

const NONCE: &[u8] = b"\x00session nonce \xff with any bytes";

#[derive(Clone, Copy)]
enum Crl {
    None,
    Current,
    Stale,
}

fn store(pki: &TestPki, crl: Crl, require_revocation_check: bool) -> TrustStore {
    let crl_der = match crl {
        Crl::None => None,
        Crl::Current => Some(pki.crl_der().to_vec()),
        Crl::Stale => Some(pki.stale_crl_der().to_vec()),
    };
    let anchor = Anchor { name: "test-root".into(), certificate_der: pki.root_cert_der().to_vec(), crl_der };
    TrustStore::from_der(vec![anchor], 300, require_revocation_check).expect("the test PKI is a usable trust anchor")
}

fn input<'a>(chain: &'a [Vec<u8>], signature: &'a [u8], algorithm: &'a str) -> SignatureInput<'a> {
    SignatureInput { chain, signature, algorithm, signed_data: None }
}

fn judge_at(store: &TrustStore, user: &TestUser, now: SystemTime) -> Verdict {
    let chain = user.chain_der();
    let sig = user.sign(NONCE);
    store.verify(&input(&chain, &sig, user.algorithm()), NONCE, None, now).expect("evidence can be judged")
}

fn judge(store: &TrustStore, user: &TestUser) -> Verdict {
    judge_at(store, user, SystemTime::now())
}

fn kinds(v: &Verdict) -> Vec<FailureKind> {
    v.failures.iter().map(|f| f.kind).collect()
}

fn assert_only(v: &Verdict, kind: FailureKind) {
    assert_eq!(kinds(v), vec![kind], "{:#?}", v.failures);
    assert!(!v.valid);
}

#[test]
fn good_signatures_of_every_key_type_are_valid_and_describe_the_certificate() {
    let pki = TestPki::new();
    let trust = store(&pki, Crl::Current, true);
    for alg in [KeyAlg::Rsa2048, KeyAlg::EcdsaP256, KeyAlg::EcdsaP384, KeyAlg::Ed25519] {
        let user = pki.user(UserKind::Good, alg);
        let v = judge(&trust, &user);
        assert!(v.valid, "{alg:?}: {:#?}", v.failures);
        assert!(v.failures.is_empty());
        assert_eq!(v.trust_anchor.as_deref(), Some("test-root"));
        assert_eq!(v.revocation, Revocation::Good);
        assert_eq!(v.serial_hex, user.serial_hex());
        assert_eq!(v.certificate_sha256, hex::encode(Sha256::digest(user.cert_der())));
        // RFC 4514: most specific RDN first. The subject is never reported.
        assert_eq!(v.issuer, "CN=ekyc Test Root CA,O=ekyc test,C=JP");
        assert_eq!(v.profile, None, "the generic test users fit no JPKI profile");
        assert!(!format!("{v:?}").contains("Test User"), "{v:?}");
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64;
        assert!(v.not_before_unix_ms < now_ms && now_ms < v.not_after_unix_ms);
    }
}

#[test]
fn every_supported_algorithm_verifies_with_a_fitting_key() {
    let pki = TestPki::new();
    let trust = store(&pki, Crl::None, false);
    let users = [
        pki.user(UserKind::Good, KeyAlg::Rsa2048),
        pki.user(UserKind::Good, KeyAlg::EcdsaP256),
        pki.user(UserKind::Good, KeyAlg::EcdsaP384),
        pki.user(UserKind::Good, KeyAlg::Ed25519),
    ];
    for name in SUPPORTED_ALGORITHMS {
        let user = match name {
            n if n.starts_with("RSA") => &users[0],
            n if n.starts_with("ECDSA_P256") => &users[1],
            n if n.starts_with("ECDSA_P384") => &users[2],
            _ => &users[3],
        };
        let chain = user.chain_der();
        let sig = user.sign_with(NONCE, name);
        let v = trust.verify(&input(&chain, &sig, name), NONCE, None, SystemTime::now()).expect("judged");
        assert!(v.valid, "{name}: {:#?}", v.failures);
        assert_eq!(v.revocation, Revocation::NotChecked);
        // The same signature over one changed nonce byte fails.
        let mut other = NONCE.to_vec();
        other[3] ^= 1;
        let v = trust.verify(&input(&chain, &sig, name), &other, None, SystemTime::now()).expect("judged");
        assert_only(&v, FailureKind::SignatureInvalid);
    }
}

#[test]
fn an_altered_signature_or_a_misnamed_algorithm_is_signature_invalid() {
    let pki = TestPki::new();
    let trust = store(&pki, Crl::Current, false);
    let user = pki.user(UserKind::Good, KeyAlg::EcdsaP256);
    let chain = user.chain_der();
    let mut sig = user.sign(NONCE);
    let last = sig.len() - 1;
    sig[last] ^= 0x40;
    assert_only(
        &trust.verify(&input(&chain, &sig, "ECDSA_P256_SHA256"), NONCE, None, SystemTime::now()).expect("judged"),
        FailureKind::SignatureInvalid,
    );

    let sig = user.sign(NONCE);
    let v = trust.verify(&input(&chain, &sig, "RSA_PKCS1_SHA256"), NONCE, None, SystemTime::now()).expect("judged");
    assert_only(&v, FailureKind::SignatureInvalid);
    assert!(
        v.failures[0].message.contains("needs an RSA key") && v.failures[0].message.contains("ECDSA P-256"),
        "{}",
        v.failures[0].message
    );
    // DER and fixed-width ECDSA are not interchangeable.
    let v = trust.verify(&input(&chain, &sig, "ECDSA_P256_SHA256_FIXED"), NONCE, None, SystemTime::now()).expect("judged");
    assert_only(&v, FailureKind::SignatureInvalid);
}

#[test]
fn echoed_signed_data_that_differs_and_is_no_to_be_signed_text_is_a_nonce_mismatch_and_nothing_else() {
    let pki = TestPki::new();
    let trust = store(&pki, Crl::Current, false);
    let user = pki.user(UserKind::Good, KeyAlg::Rsa2048);
    let chain = user.chain_der();
    let other = b"an older session's nonce";
    let sig = user.sign(other);
    let claimed = SignatureInput { signed_data: Some(other), ..input(&chain, &sig, user.algorithm()) };
    let v = trust.verify(&claimed, NONCE, None, SystemTime::now()).expect("judged");
    assert_only(&v, FailureKind::NonceMismatch);
    assert_eq!(v.failures[0].kind.reason_code(), "NONCE_MISMATCH");

    let sig = user.sign(NONCE);
    let honest = SignatureInput { signed_data: Some(NONCE), ..input(&chain, &sig, user.algorithm()) };
    assert!(trust.verify(&honest, NONCE, None, SystemTime::now()).expect("judged").valid);
    // A correct signature with a wrong echo is still refused: the echo must be the bytes.
    let wrong_echo = SignatureInput { signed_data: Some(other), ..honest };
    assert_only(&trust.verify(&wrong_echo, NONCE, None, SystemTime::now()).expect("judged"), FailureKind::NonceMismatch);
}

#[test]
fn expired_and_not_yet_valid_certificates_are_cert_expired() {
    let pki = TestPki::new();
    let trust = store(&pki, Crl::Current, false);
    let v = judge(&trust, &pki.user(UserKind::Expired, KeyAlg::EcdsaP256));
    assert_only(&v, FailureKind::CertExpired);
    assert!(v.failures[0].message.contains("expired at"), "{}", v.failures[0].message);
    assert_eq!(v.trust_anchor.as_deref(), Some("test-root"));
    let v = judge(&trust, &pki.user(UserKind::NotYetValid, KeyAlg::Ed25519));
    assert_only(&v, FailureKind::CertExpired);
    assert!(v.failures[0].message.contains("not valid before"), "{}", v.failures[0].message);
}

#[test]
fn validity_periods_allow_the_configured_clock_skew() {
    let pki = TestPki::new();
    let trust = store(&pki, Crl::None, false);
    let user = pki.user(UserKind::Good, KeyAlg::EcdsaP256);
    let v = judge(&trust, &user);
    let at = |ms: i64| UNIX_EPOCH + Duration::from_millis(ms as u64);
    assert!(judge_at(&trust, &user, at(v.not_before_unix_ms - 200_000)).valid);
    assert_only(&judge_at(&trust, &user, at(v.not_before_unix_ms - 400_000)), FailureKind::CertExpired);
    assert!(judge_at(&trust, &user, at(v.not_after_unix_ms + 200_000)).valid);
    assert_only(&judge_at(&trust, &user, at(v.not_after_unix_ms + 400_000)), FailureKind::CertExpired);
}

#[test]
fn a_certificate_from_another_ca_with_the_same_name_is_untrusted() {
    let pki = TestPki::new();
    let trust = store(&pki, Crl::Current, true);
    let user = pki.user(UserKind::UntrustedCa, KeyAlg::EcdsaP256);
    let v = judge(&trust, &user);
    assert_only(&v, FailureKind::CertUntrusted);
    assert!(v.failures[0].message.contains("does not verify"), "{}", v.failures[0].message);
    assert_eq!((v.trust_anchor, v.revocation), (None, Revocation::NotChecked));
    // Sending the rogue root along does not help.
    let chain = user.chain_with_root_der();
    let sig = user.sign(NONCE);
    let v = trust.verify(&input(&chain, &sig, user.algorithm()), NONCE, None, SystemTime::now()).expect("judged");
    assert_only(&v, FailureKind::CertUntrusted);
}

#[test]
fn a_revoked_certificate_is_refused_even_by_a_stale_crl() {
    let pki = TestPki::new();
    let user = pki.user(UserKind::Revoked, KeyAlg::Rsa2048);
    for crl in [Crl::Current, Crl::Stale] {
        let v = judge(&store(&pki, crl, false), &user);
        assert_only(&v, FailureKind::CertRevoked);
        assert_eq!(v.revocation, Revocation::Revoked);
        assert!(v.failures[0].message.contains(&user.serial_hex()), "{}", v.failures[0].message);
    }
    // Without the CRL nobody knows.
    let v = judge(&store(&pki, Crl::None, false), &user);
    assert!(v.valid);
    assert_eq!(v.revocation, Revocation::NotChecked);
}

#[test]
fn key_usage_must_allow_signing_when_present() {
    let pki = TestPki::new();
    let trust = store(&pki, Crl::Current, false);
    let v = judge(&trust, &pki.user(UserKind::WrongKeyUsage, KeyAlg::EcdsaP256));
    assert_only(&v, FailureKind::CertKeyUsage);
    assert_eq!(v.failures[0].kind.reason_code(), "CERT_KEY_USAGE");
    assert!(judge(&trust, &pki.user(UserKind::NoKeyUsage, KeyAlg::EcdsaP256)).valid);
}

#[test]
fn revocation_status_follows_the_crl_and_the_policy() {
    let pki = TestPki::new();
    let user = pki.user(UserKind::Good, KeyAlg::EcdsaP256);
    let cases = [
        (Crl::None, false, Revocation::NotChecked, true),
        (Crl::None, true, Revocation::NotChecked, false),
        (Crl::Current, false, Revocation::Good, true),
        (Crl::Current, true, Revocation::Good, true),
        (Crl::Stale, false, Revocation::Unknown, true),
        (Crl::Stale, true, Revocation::Unknown, false),
    ];
    for (crl, required, status, valid) in cases {
        let v = judge(&store(&pki, crl, required), &user);
        assert_eq!((v.revocation, v.valid), (status, valid), "{:#?}", v.failures);
        if !valid {
            assert_only(&v, FailureKind::RevocationUnknown);
            assert_eq!(v.failures[0].kind.reason_code(), "CERT_REVOCATION_UNKNOWN");
        }
    }
    let v = judge(&store(&pki, Crl::Stale, true), &user);
    assert!(v.failures[0].message.contains("out of date"), "{}", v.failures[0].message);
}

#[test]
fn chains_through_an_intermediate_in_any_order_with_or_without_the_root() {
    let pki = TestPki::with_intermediate();
    let trust = store(&pki, Crl::Current, true);
    let user = pki.user(UserKind::Good, KeyAlg::Ed25519);
    let sig = user.sign(NONCE);
    let full = user.chain_with_root_der();
    let reordered = vec![full[0].clone(), full[2].clone(), full[1].clone()];
    for chain in [user.chain_der(), full.clone(), reordered] {
        let v = trust.verify(&input(&chain, &sig, "ED25519"), NONCE, None, SystemTime::now()).expect("judged");
        assert!(v.valid, "{:#?}", v.failures);
        assert_eq!(v.revocation, Revocation::Good, "the intermediate's CRL is checked with the intermediate's key");
        assert_eq!(v.issuer, "CN=ekyc Test Intermediate CA,O=ekyc test,C=JP");
    }
    // Without the intermediate the chain stops short of the anchor.
    let leaf_only = vec![full[0].clone()];
    let v = trust.verify(&input(&leaf_only, &sig, "ED25519"), NONCE, None, SystemTime::now()).expect("judged");
    assert_only(&v, FailureKind::CertUntrusted);
    assert!(v.failures[0].message.contains("send any intermediate"), "{}", v.failures[0].message);

    let revoked = pki.user(UserKind::Revoked, KeyAlg::EcdsaP256);
    assert_only(&judge(&trust, &revoked), FailureKind::CertRevoked);
}

#[test]
fn an_all_rsa_chain_like_jpki_is_valid() {
    let pki = TestPki::with_options(PkiOptions { ca_key: KeyAlg::Rsa2048, intermediate: true, jpki: None });
    let trust = store(&pki, Crl::Current, true);
    let v = judge(&trust, &pki.user(UserKind::Good, KeyAlg::Rsa2048));
    assert!(v.valid, "{:#?}", v.failures);
    assert_only(&judge(&trust, &pki.user(UserKind::UntrustedCa, KeyAlg::Rsa2048)), FailureKind::CertUntrusted);
    assert_only(&judge(&trust, &pki.user(UserKind::Revoked, KeyAlg::Rsa2048)), FailureKind::CertRevoked);
}

#[test]
fn an_empty_store_trusts_nothing() {
    let pki = TestPki::new();
    let trust = TrustStore::from_der(Vec::new(), 300, false).expect("an empty store is allowed");
    assert!(trust.is_empty());
    let v = judge(&trust, &pki.user(UserKind::Good, KeyAlg::EcdsaP256));
    assert_only(&v, FailureKind::CertUntrusted);
    assert!(v.failures[0].message.contains("no signature trust anchors"), "{}", v.failures[0].message);
    assert!(!store(&pki, Crl::None, false).is_empty());
}

#[test]
fn input_that_cannot_be_judged_is_an_error() {
    let pki = TestPki::new();
    let trust = store(&pki, Crl::Current, false);
    let user = pki.user(UserKind::Good, KeyAlg::EcdsaP256);
    let chain = user.chain_der();
    let sig = user.sign(NONCE);
    let now = SystemTime::now();

    let e = trust.verify(&input(&chain, &sig, "ECDSA_SHA256"), NONCE, None, now).expect_err("unknown algorithm");
    assert!(matches!(&e, SignatureError::UnsupportedAlgorithm(a) if a == "ECDSA_SHA256"));
    assert!(e.to_string().contains("RSA_PKCS1_SHA256"), "the message lists what is accepted: {e}");

    assert!(matches!(trust.verify(&input(&[], &sig, "ECDSA_P256_SHA256"), NONCE, None, now), Err(SignatureError::EmptyChain)));

    let garbage = vec![b"not a certificate".to_vec()];
    let e = trust.verify(&input(&garbage, &sig, "ECDSA_P256_SHA256"), NONCE, None, now).expect_err("garbage");
    assert!(matches!(&e, SignatureError::BadCertificate(m) if m.starts_with("chain[0]")), "{e}");

    let mut trailing = chain.clone();
    trailing[0].push(0);
    assert!(matches!(trust.verify(&input(&trailing, &sig, "ECDSA_P256_SHA256"), NONCE, None, now), Err(SignatureError::BadCertificate(_))));

    let nine = vec![chain[0].clone(); 9];
    let e = trust.verify(&input(&nine, &sig, "ECDSA_P256_SHA256"), NONCE, None, now).expect_err("too many");
    assert!(matches!(&e, SignatureError::BadCertificate(m) if m.contains("at most 8")), "{e}");
    let eight = vec![chain[0].clone(); 8];
    assert!(trust.verify(&input(&eight, &sig, "ECDSA_P256_SHA256"), NONCE, None, now).expect("8 is fine").valid);

    let huge = vec![chain[0].clone(), vec![0x30; 16 * 1024 + 1]];
    let e = trust.verify(&input(&huge, &sig, "ECDSA_P256_SHA256"), NONCE, None, now).expect_err("too large");
    assert!(matches!(&e, SignatureError::BadCertificate(m) if m.starts_with("chain[1]") && m.contains("16384")), "{e}");
}

#[test]
fn the_store_loads_pem_and_der_files_and_refuses_a_foreign_crl() {
    let pki = TestPki::new();
    let dir = pki.trust_dir();
    let user = pki.user(UserKind::Revoked, KeyAlg::EcdsaP256);
    for crl in [&dir.crl_pem, &dir.crl_der] {
        let cfg = TrustConfig {
            anchors: vec![AnchorConfig { name: "jpki".into(), certificate_pem: dir.ca_pem.clone(), crl: Some(crl.clone()) }],
            ..Default::default()
        };
        let trust = TrustStore::load(&cfg).expect("loads");
        let v = judge(&trust, &user);
        assert_only(&v, FailureKind::CertRevoked);
        assert_eq!(v.trust_anchor.as_deref(), Some("jpki"));
    }

    let missing = TrustConfig {
        anchors: vec![AnchorConfig { name: "jpki".into(), certificate_pem: dir.dir.path().join("nope.pem"), crl: None }],
        ..Default::default()
    };
    let e = TrustStore::load(&missing).expect_err("missing file");
    assert!(matches!(&e, SignatureError::Config(m) if m.contains("nope.pem")), "{e}");

    // Another PKI's CRL names the same issuer but is not signed by this anchor's key.
    let other = TestPki::new();
    let foreign = Anchor { name: "jpki".into(), certificate_der: pki.root_cert_der().to_vec(), crl_der: Some(other.crl_der().to_vec()) };
    let e = TrustStore::from_der(vec![foreign], 300, false).expect_err("foreign CRL");
    assert!(matches!(&e, SignatureError::Config(m) if m.contains("does not verify")), "{e}");

    // A user certificate is not a trust anchor.
    let leaf = Anchor { name: "leaf".into(), certificate_der: user.cert_der().to_vec(), crl_der: None };
    let e = TrustStore::from_der(vec![leaf], 300, false).expect_err("not a CA");
    assert!(matches!(&e, SignatureError::Config(m) if m.contains("not a CA")), "{e}");
}
