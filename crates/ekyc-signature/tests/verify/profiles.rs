//! The two JPKI certificate profiles against test PKIs that mimic them: each recognised,
//! each refused where the other is required, generic certificates fitting neither, unknown
//! profile names a configuration error; and nothing of the signing certificate's holder
//! (subject, name, gender, birth date, address) in any verdict, failure or `Debug` output.

use std::time::SystemTime;

use ekyc_signature::{Anchor, FailureKind, PROFILE_NAMES, SignatureError, SignatureInput, ToBeSigned, TrustStore, Verdict};
use ekyc_testkit::pki::{JPKI_TEST_PERSON, JpkiProfile, KeyAlg, TestPki, TestUser, UserKind};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{assert_only, input, kinds};

const USER_AUTH: &str = "jpki-user-authentication";
const SIGNING: &str = "jpki-signing";

/// Both JPKI CAs as anchors, each with its current CRL.
fn jpki_store(ua: &TestPki, sign: &TestPki) -> TrustStore {
    let anchor = |name: &str, pki: &TestPki| Anchor {
        name: name.into(),
        certificate_der: pki.root_cert_der().to_vec(),
        crl_der: Some(pki.crl_der().to_vec()),
    };
    TrustStore::from_der(vec![anchor("jpki-user-auth", ua), anchor("jpki-sign", sign)], 300, true).expect("the JPKI test CAs load")
}

fn tbs() -> Vec<u8> {
    ToBeSigned {
        issuer: "ekyc".into(),
        session_id: "s1".into(),
        policy: "online-request".into(),
        policy_version: "1".into(),
        nonce: vec![7; 32],
        expires_at_unix_ms: 1,
    }
    .to_bytes()
}

fn judge(trust: &TrustStore, user: &TestUser, required: Option<&str>) -> Verdict {
    let chain = user.chain_der();
    let sig = user.sign(&tbs());
    trust.verify(&input(&chain, &sig, user.algorithm()), &tbs(), required, SystemTime::now()).expect("judged")
}

/// The RFC 4514-ish pieces of a certificate's subject, read independently of the verifier.
fn subject_values(der: &[u8]) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(der).expect("a certificate");
    cert.subject().iter_attributes().filter_map(|a| a.as_str().ok().map(str::to_string)).filter(|v| v != "JP").collect()
}

#[test]
fn both_jpki_profiles_are_recognised_and_accepted_where_required() {
    let (ua, sign) = (TestPki::jpki(JpkiProfile::UserAuthentication), TestPki::jpki(JpkiProfile::Signing));
    let trust = jpki_store(&ua, &sign);
    for (pki, name, anchor) in [(&ua, USER_AUTH, "jpki-user-auth"), (&sign, SIGNING, "jpki-sign")] {
        let user = pki.user(UserKind::Good, KeyAlg::Rsa2048);
        for required in [None, Some(name)] {
            let v = judge(&trust, &user, required);
            assert!(v.valid, "{name} {required:?}: {:#?}", v.failures);
            assert_eq!(v.profile.as_deref(), Some(name));
            assert_eq!(v.trust_anchor.as_deref(), Some(anchor));
        }
        assert_eq!(pki.jpki_profile().map(JpkiProfile::profile_name), Some(name));
    }
    let v = judge(&trust, &ua.user(UserKind::Good, KeyAlg::Rsa2048), None);
    assert_eq!(v.issuer, "OU=Japan Agency for Local Authority Information Systems,OU=JPKI for user authentication,O=JPKI,C=JP");
    assert_eq!(PROFILE_NAMES, [USER_AUTH, SIGNING]);
}

#[test]
fn each_jpki_certificate_is_a_profile_mismatch_where_the_other_is_required() {
    let (ua, sign) = (TestPki::jpki(JpkiProfile::UserAuthentication), TestPki::jpki(JpkiProfile::Signing));
    let trust = jpki_store(&ua, &sign);

    let v = judge(&trust, &sign.user(UserKind::Good, KeyAlg::Rsa2048), Some(USER_AUTH));
    assert_only(&v, FailureKind::CertProfileMismatch);
    assert_eq!(v.failures[0].kind.reason_code(), "CERT_PROFILE_MISMATCH");
    let m = &v.failures[0].message;
    assert!(m.contains(&format!("{USER_AUTH:?} this policy requires")) && m.contains(&format!("it fits the profile {SIGNING:?}")), "{m}");
    assert_eq!(v.profile.as_deref(), Some(SIGNING), "the verdict still says what the certificate is");

    let v = judge(&trust, &ua.user(UserKind::Good, KeyAlg::Rsa2048), Some(SIGNING));
    assert_only(&v, FailureKind::CertProfileMismatch);
    let m = &v.failures[0].message;
    assert!(m.contains("nonRepudiation") && m.contains(&format!("it fits the profile {USER_AUTH:?}")), "{m}");
    assert_eq!(v.profile.as_deref(), Some(USER_AUTH));
}

#[test]
fn certificates_that_are_not_jpki_like_fit_no_profile() {
    // A generic all-RSA test PKI: right key and algorithm, but not a JPKI issuer.
    let generic = TestPki::with_options(ekyc_testkit::pki::PkiOptions { ca_key: KeyAlg::Rsa2048, intermediate: false, jpki: None });
    let trust = super::store(&generic, super::Crl::Current, false);
    let user = generic.user(UserKind::Good, KeyAlg::Rsa2048);
    let v = judge(&trust, &user, Some(USER_AUTH));
    assert_only(&v, FailureKind::CertProfileMismatch);
    let m = &v.failures[0].message;
    assert!(m.contains("clientAuth") && m.contains("it fits no built-in profile"), "{m}");
    assert_eq!(v.profile, None);
    // It has nonRepudiation like a signing certificate; only the issuer gives it away.
    let v = judge(&trust, &user, Some(SIGNING));
    assert_only(&v, FailureKind::CertProfileMismatch);
    let m = &v.failures[0].message;
    assert!(m.contains("O=JPKI and OU=JPKI for digital signature"), "{m}");
    assert_eq!(v.profile, None);

    // Under a JPKI CA: an ECDSA key, missing key usages.
    let ua = TestPki::jpki(JpkiProfile::UserAuthentication);
    let trust = jpki_store(&ua, &TestPki::jpki(JpkiProfile::Signing));
    let v = judge(&trust, &ua.user(UserKind::Good, KeyAlg::EcdsaP256), Some(USER_AUTH));
    assert_only(&v, FailureKind::CertProfileMismatch);
    assert!(v.failures[0].message.contains("not RSA"), "{}", v.failures[0].message);
    let v = judge(&trust, &ua.user(UserKind::NoKeyUsage, KeyAlg::Rsa2048), Some(USER_AUTH));
    assert_only(&v, FailureKind::CertProfileMismatch);
    assert!(v.failures[0].message.contains("no keyUsage"), "{}", v.failures[0].message);
    // Wrong key usage is both a key-usage and a profile failure.
    let v = judge(&trust, &ua.user(UserKind::WrongKeyUsage, KeyAlg::Rsa2048), Some(USER_AUTH));
    assert_eq!(kinds(&v), vec![FailureKind::CertKeyUsage, FailureKind::CertProfileMismatch], "{:#?}", v.failures);
}

#[test]
fn an_unknown_profile_name_is_a_configuration_error() {
    let ua = TestPki::jpki(JpkiProfile::UserAuthentication);
    let trust = jpki_store(&ua, &TestPki::jpki(JpkiProfile::Signing));
    let user = ua.user(UserKind::Good, KeyAlg::Rsa2048);
    let chain = user.chain_der();
    let sig = user.sign(&tbs());
    let inp: SignatureInput<'_> = input(&chain, &sig, user.algorithm());
    let e = trust.verify(&inp, &tbs(), Some("jpki-auth"), SystemTime::now()).expect_err("unknown profile");
    assert!(matches!(&e, SignatureError::Config(m) if m.contains("\"jpki-auth\"") && m.contains(USER_AUTH)), "{e}");
}

#[test]
fn nothing_of_the_signing_certificates_holder_comes_out() {
    let (ua, sign) = (TestPki::jpki(JpkiProfile::UserAuthentication), TestPki::jpki(JpkiProfile::Signing));
    let trust = jpki_store(&ua, &sign);
    let good = sign.user(UserKind::Good, KeyAlg::Rsa2048);

    // The test certificate does carry the person, in the subject and the JPKI extensions.
    let subject = subject_values(good.cert_der());
    assert!(subject.iter().any(|v| v == JPKI_TEST_PERSON.name), "{subject:?}");
    let (_, cert) = X509Certificate::from_der(good.cert_der()).expect("a certificate");
    let jpki_ext = cert.extensions().iter().filter(|e| e.oid.to_id_string().starts_with("1.2.392.200149.8.5.5.")).count();
    assert_eq!(jpki_ext, 6);

    let mut verdicts = vec![judge(&trust, &good, Some(SIGNING)), judge(&trust, &good, Some(USER_AUTH))];
    assert!(verdicts[0].valid, "{:#?}", verdicts[0].failures);
    for kind in [UserKind::Expired, UserKind::NotYetValid, UserKind::Revoked, UserKind::UntrustedCa, UserKind::WrongKeyUsage] {
        let user = sign.user(kind, KeyAlg::Rsa2048);
        let v = judge(&trust, &user, Some(USER_AUTH));
        assert!(!v.valid && v.failures.len() >= 2, "{kind:?}: {:#?}", v.failures);
        verdicts.push(v);
    }
    // A signature over another session's bytes, with the echo.
    let other = ToBeSigned::parse(&tbs()).map(|t| ToBeSigned { session_id: "s2".into(), ..t }).expect("parses").to_bytes();
    let chain = good.chain_der();
    let sig = good.sign(&other);
    let inp = SignatureInput { signed_data: Some(&other), ..input(&chain, &sig, good.algorithm()) };
    verdicts.push(trust.verify(&inp, &tbs(), Some(SIGNING), SystemTime::now()).expect("judged"));
    assert_eq!(verdicts.last().map(kinds), Some(vec![FailureKind::SignatureContextMismatch]));

    for v in &verdicts {
        let text = format!("{v:?}\n{v:#?}\n{}", serde_json::to_string(v).expect("serializes"));
        for value in JPKI_TEST_PERSON.values().iter().copied().chain(subject.iter().map(String::as_str)) {
            assert!(!text.contains(value), "{value:?} leaked: {text}");
        }
        // Escaped forms too (JSON escapes nothing here, but a hex or \u dump would).
        assert!(!text.contains("\\u{5c71}") && !text.contains("e5b1b1"), "{text}");
        for f in &v.failures {
            assert!(!f.message.contains("CN="), "{}", f.message);
        }
    }
    // The serial and digest name the certificate instead.
    let revoked = &verdicts[4];
    assert_eq!(kinds(revoked)[0], FailureKind::CertRevoked);
    assert!(revoked.failures[0].message.contains("serial"), "{}", revoked.failures[0].message);

    // The user-authentication certificate's opaque subject is not reported either.
    let ua_user = ua.user(UserKind::Expired, KeyAlg::Rsa2048);
    let v = judge(&trust, &ua_user, Some(SIGNING));
    let text = format!("{v:?}");
    for value in subject_values(ua_user.cert_der()) {
        assert!(!text.contains(&value), "{value:?} leaked: {text}");
    }
}
