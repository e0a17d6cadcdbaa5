//! Signatures bound to their context: a signature over another session's or deployment's
//! to-be-signed bytes, or over the bare nonce, never passes; the client's echo of what it
//! signed only decides which reason is given, and no message prints a session id.

use std::time::SystemTime;

use ekyc_signature::{FailureKind, SignatureInput, ToBeSigned, TrustStore, Verdict};
use ekyc_testkit::pki::{KeyAlg, TestPki, TestUser, UserKind};

use super::{Crl, assert_only, input, store};

const SESSION: &str = "sess_f00dCAFE-this-is-a-bearer-secret";
const OTHER_SESSION: &str = "sess_0ther-session-also-a-secret";

fn ours() -> ToBeSigned {
    ToBeSigned {
        issuer: "ekyc.city.example.jp".into(),
        session_id: SESSION.into(),
        policy: "resident-certificate".into(),
        policy_version: "7".into(),
        nonce: (0u8..32).collect(),
        expires_at_unix_ms: 1_764_500_600_000,
    }
}

fn another_session() -> ToBeSigned {
    ToBeSigned { session_id: OTHER_SESSION.into(), nonce: (100u8..132).collect(), expires_at_unix_ms: 1_764_400_000_000, ..ours() }
}

fn judge(trust: &TrustStore, user: &TestUser, signed: &[u8], echo: Option<&[u8]>) -> Verdict {
    let chain = user.chain_der();
    let sig = user.sign(signed);
    let inp = SignatureInput { signed_data: echo, ..input(&chain, &sig, user.algorithm()) };
    trust.verify(&inp, &ours().to_bytes(), None, SystemTime::now()).expect("judged")
}

fn assert_no_session_ids(v: &Verdict) {
    let text = format!("{v:?} {}", serde_json::to_string(v).expect("serializes"));
    assert!(!text.contains(SESSION) && !text.contains(OTHER_SESSION) && !text.contains("sess_"), "{text}");
}

#[test]
fn a_signature_over_this_sessions_bytes_is_valid_with_or_without_the_echo() {
    let pki = TestPki::new();
    let trust = store(&pki, Crl::Current, false);
    for alg in [KeyAlg::Rsa2048, KeyAlg::EcdsaP256, KeyAlg::Ed25519] {
        let user = pki.user(UserKind::Good, alg);
        let tbs = ours().to_bytes();
        assert!(judge(&trust, &user, &tbs, None).valid, "{alg:?}");
        assert!(judge(&trust, &user, &tbs, Some(&tbs)).valid, "{alg:?}");
    }
}

#[test]
fn another_sessions_bytes_are_a_context_mismatch_with_the_echo_and_signature_invalid_without() {
    let pki = TestPki::new();
    let trust = store(&pki, Crl::Current, false);
    let user = pki.user(UserKind::Good, KeyAlg::Rsa2048);
    let theirs = another_session().to_bytes();

    let v = judge(&trust, &user, &theirs, Some(&theirs));
    assert_only(&v, FailureKind::SignatureContextMismatch);
    assert_eq!(v.failures[0].kind.reason_code(), "SIGNATURE_CONTEXT_MISMATCH");
    let m = &v.failures[0].message;
    assert!(m.contains("session, nonce, expiry") && !m.contains("issuer") && !m.contains("policy"), "{m}");
    assert_no_session_ids(&v);

    let v = judge(&trust, &user, &theirs, None);
    assert_only(&v, FailureKind::SignatureInvalid);
    assert!(v.failures[0].message.contains("to_be_signed"), "{}", v.failures[0].message);
    assert_no_session_ids(&v);
}

#[test]
fn another_deployments_bytes_are_a_context_mismatch_naming_the_issuer() {
    let pki = TestPki::new();
    let trust = store(&pki, Crl::Current, false);
    let user = pki.user(UserKind::Good, KeyAlg::EcdsaP256);
    // Same session id, nonce and expiry (a replay across deployments): only the issuer differs.
    let elsewhere = ToBeSigned { issuer: "ekyc.other-city.example.jp".into(), ..ours() }.to_bytes();
    let v = judge(&trust, &user, &elsewhere, Some(&elsewhere));
    assert_only(&v, FailureKind::SignatureContextMismatch);
    let m = &v.failures[0].message;
    assert!(m.contains("in issuer;"), "{m}");
    assert!(!m.contains("other-city"), "the other context's values are not echoed back: {m}");
    assert_no_session_ids(&v);
    assert_only(&judge(&trust, &user, &elsewhere, None), FailureKind::SignatureInvalid);

    let other_policy = ToBeSigned { policy_version: "8".into(), ..ours() }.to_bytes();
    let v = judge(&trust, &user, &other_policy, Some(&other_policy));
    assert_only(&v, FailureKind::SignatureContextMismatch);
    assert!(v.failures[0].message.contains("in policy;"), "{}", v.failures[0].message);
}

#[test]
fn a_signature_over_the_bare_nonce_is_invalid_and_an_echo_of_it_a_nonce_mismatch() {
    let pki = TestPki::new();
    let trust = store(&pki, Crl::Current, false);
    let user = pki.user(UserKind::Good, KeyAlg::Rsa2048);
    let nonce = ours().nonce;
    let v = judge(&trust, &user, &nonce, None);
    assert_only(&v, FailureKind::SignatureInvalid);
    assert!(v.failures[0].message.contains("not the bare nonce"), "{}", v.failures[0].message);
    assert_only(&judge(&trust, &user, &nonce, Some(&nonce)), FailureKind::NonceMismatch);
}

#[test]
fn an_echoed_context_the_signature_does_not_cover_is_only_a_nonce_mismatch() {
    let pki = TestPki::new();
    let trust = store(&pki, Crl::Current, false);
    let user = pki.user(UserKind::Good, KeyAlg::EcdsaP384);
    // The client claims another session's bytes but signed something else again: the claim
    // is not believed, so no "context" diagnosis.
    let theirs = another_session().to_bytes();
    let v = judge(&trust, &user, b"something else", Some(&theirs));
    assert_only(&v, FailureKind::NonceMismatch);
    assert_no_session_ids(&v);
    // A made-up echo with this session's bytes in a non-canonical form is not a context.
    let mut sloppy = ours().to_bytes();
    sloppy.extend_from_slice(b"\n");
    assert_only(&judge(&trust, &user, &sloppy, Some(&sloppy)), FailureKind::NonceMismatch);
}
