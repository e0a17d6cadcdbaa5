//! The orchestrator end to end: all four services on loopback over real gRPC, sessions and
//! challenges in a real Redis, real models on frames and ID-card photos synthesised from the
//! development photos, signatures made by a test PKI.

use std::time::{Duration, Instant};

use ekyc_orchestrator::OrchestratorConfig;
use ekyc_orchestrator::policy::PolicyConfig;
use ekyc_proto::v1 as pb;
use ekyc_proto::v1::orchestrator_client::OrchestratorClient;
use ekyc_signature::{AnchorConfig, TrustConfig};
use ekyc_testkit::frames::{answer, frame, id_card_photo};
use ekyc_testkit::pki::{JpkiProfile, KeyAlg, TestPki, UserKind};
use ekyc_tests::{Running, backends, orchestrator, orchestrator_config};
use tonic::Code;

/// Frames and the card of one person; the other person for mismatches.
pub(crate) const PERSON: &str = "obama_1.jpg";
pub(crate) const PERSON_CARD: &str = "obama_3.jpg";
const OTHER_CARD: &str = "biden_2.jpg";

pub(crate) type Client = OrchestratorClient<ekyc_tests::Authed>;

pub(crate) async fn client(r: &Running) -> Client {
    ekyc_tests::authed(r.channel().await)
}

pub(crate) fn image(data: Vec<u8>) -> pb::Image {
    pb::Image { data, content_type: None }
}

pub(crate) fn codes(rs: &[pb::Reason]) -> Vec<pb::ReasonCode> {
    rs.iter().filter_map(|r| pb::ReasonCode::try_from(r.code).ok()).collect()
}

pub(crate) async fn start(c: &mut Client, policy: &str) -> pb::StartSessionResponse {
    c.start_session(pb::StartSessionRequest { policy: policy.into(), client_reference: Some("chat-user-42".into()), locale: "ja".into() })
        .await
        .expect("session starts")
        .into_inner()
}

/// Frames answering every step of the session's challenge with `person`'s face.
pub(crate) fn frames_for(s: &pb::StartSessionResponse, person: &str) -> Vec<pb::Frame> {
    let ch = s.challenge.as_ref().expect("a challenge");
    ch.steps.iter().map(|st| frame(answer(person, st.pose(), 25.0), st.index as usize)).collect()
}

pub(crate) async fn add_frames(c: &mut Client, s: &pb::StartSessionResponse, frames: Vec<pb::Frame>) -> pb::SessionProgress {
    let mut last = None;
    for f in frames {
        let p =
            c.add_frame(pb::AddFrameRequest { session_id: s.session_id.clone(), frame: Some(f) }).await.expect("frame added").into_inner();
        last = Some(p);
    }
    last.expect("at least one frame")
}

pub(crate) async fn add_document(c: &mut Client, s: &pb::StartSessionResponse, card: Vec<u8>) -> pb::SessionProgress {
    c.add_document(pb::AddDocumentRequest { session_id: s.session_id.clone(), image: Some(image(card)), type_hint: 0 })
        .await
        .expect("document added")
        .into_inner()
}

pub(crate) fn decision(r: &pb::VerificationResult) -> pb::Decision {
    pb::Decision::try_from(r.decision).expect("a decision")
}

/// Checks the evidence record offline, and that changing any byte breaks it.
fn assert_evidence_verifies(r: &pb::VerificationResult, key: &ekyc_evidence::EvidencePublicKey) -> serde_json::Value {
    let jws = &r.evidence.as_ref().expect("an evidence record").evidence_jws;
    let payload = ekyc_evidence::verify(jws, key).expect("the record verifies");
    assert_eq!(payload["session"]["id"], r.session_id);
    assert_eq!(payload["policy"]["version"], r.policy_version);
    let mut bytes = jws.clone().into_bytes();
    for i in (0..bytes.len()).step_by(7) {
        let orig = bytes[i];
        bytes[i] = if orig == b'A' {
            b'B'
        } else if orig == b'.' {
            b'x'
        } else {
            b'A'
        };
        let tampered = String::from_utf8(bytes.clone()).expect("ascii");
        assert!(ekyc_evidence::verify(&tampered, key).is_err(), "a change at byte {i} went unnoticed");
        bytes[i] = orig;
    }
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_session_step_by_step_is_accepted_with_a_verifiable_record() {
    let b = backends();
    let (orch, engine) = orchestrator(orchestrator_config(b)).await;
    let mut c = client(&orch).await;
    let s = start(&mut c, "low-risk").await;
    assert_eq!(s.nonce.len(), 32);
    let p = add_frames(&mut c, &s, frames_for(&s, PERSON)).await;
    assert!(p.steps.iter().all(|st| st.satisfied), "{:?}", p.steps);
    assert!(!p.can_finish, "the document is still missing");
    assert!(p.missing.iter().any(|m| m.kind == pb::EvidenceKind::Document as i32 && m.required));
    let p = add_document(&mut c, &s, id_card_photo(PERSON_CARD, 11)).await;
    let Some(pb::session_progress::Added::Document(d)) = &p.added else { panic!("a document check") };
    assert!(d.usable, "{d:?}");
    assert!(p.can_finish);
    let r = c.finish(pb::FinishRequest { session_id: s.session_id.clone() }).await.expect("finishes").into_inner();
    assert_eq!(decision(&r), pb::Decision::Accept, "{r:#?}");
    let sum: f32 = r.factors.iter().map(|f| f.contribution).sum();
    assert!((sum - r.assurance_score).abs() < 1e-4);
    let fm = r.factors.iter().find(|f| f.kind == pb::FactorKind::FaceMatch as i32).expect("a face-match factor");
    assert!(fm.similarity.expect("a similarity") >= fm.threshold.expect("a threshold"));
    assert_eq!(r.client_reference.as_deref(), Some("chat-user-42"));
    let payload = assert_evidence_verifies(&r, &engine.evidence_public_key());
    // The record holds digests of every image, the measured angles, and no biometric data.
    let images = payload["images"].as_array().expect("images");
    assert_eq!(images.len(), s.challenge.as_ref().expect("challenge").steps.len() + 1);
    assert!(images.iter().all(|i| i["sha256"].as_str().is_some_and(|h| h.len() == 64)));
    assert!(payload["challenge"]["steps"][1]["reached_angle_deg"].as_f64().is_some(), "{payload}");
    // The record names the one embedder whose embeddings were compared.
    let embedders: Vec<&str> = payload["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter(|m| m["role"] == "embedder")
        .filter_map(|m| m["model_id"].as_str())
        .collect();
    assert_eq!(embedders, vec![ekyc_vision::VisionConfig::default().embedder.model.id.as_str()], "{payload}");
    let text = payload.to_string();
    assert!(!text.contains("embedding") && !text.contains("values"), "no templates in the record");
    // Finish is idempotent; more evidence is refused.
    let again = c.finish(pb::FinishRequest { session_id: s.session_id.clone() }).await.expect("again").into_inner();
    assert_eq!(again.evidence, r.evidence);
    let late =
        c.add_document(pb::AddDocumentRequest { session_id: s.session_id.clone(), image: Some(image(vec![1, 2, 3])), type_hint: 0 }).await;
    assert_eq!(late.expect_err("finished").code(), Code::FailedPrecondition);
    orch.stop().await;
}

/// A page advances as soon as AddFrame says a step is satisfied, so "satisfied" must mean
/// what Finish will find: the turn is measured from the kept frontal frame, not from a
/// straight-ahead pose. Here the frontal frame is already turned 9 degrees the way step 1
/// asks; a frame 4 degrees past the target from straight ahead is not enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_satisfied_when_added_is_satisfied_at_finish() {
    let b = backends();
    let (orch, _) = orchestrator(orchestrator_config(b)).await;
    let mut c = client(&orch).await;
    let s = start(&mut c, "low-risk").await;
    let steps = s.challenge.as_ref().expect("a challenge").steps.clone();
    let (pose, target) = (steps[1].pose(), steps[1].target_angle_deg);
    let p = add_frames(&mut c, &s, vec![frame(answer(PERSON, pose, 9.0), 0)]).await;
    assert!(p.steps[0].satisfied, "a frontal frame turned 9 degrees is frontal: {:?}", p.steps[0]);
    // Another person's face, turned far enough: FACE_CHANGED, reported once (by the liveness
    // service, which compares it with the frontal frame, not again by the orchestrator). The
    // face is one the renderer keeps detectable at every pose this far (biden_2.jpg looking
    // down 31 degrees has no face found).
    let p = add_frames(&mut c, &s, vec![frame(answer("rose_leslie_1.jpg", pose, 9.0 + target + 12.0), 1)]).await;
    let Some(pb::session_progress::Added::Frame(check)) = &p.added else { panic!("a frame check") };
    assert!(!check.step_satisfied, "{check:?}");
    let changed = codes(&check.reasons).iter().filter(|c| **c == pb::ReasonCode::FaceChanged).count();
    assert_eq!(changed, 1, "{:?}", check.reasons);
    let p = add_frames(&mut c, &s, vec![frame(answer(PERSON, pose, target + 4.0), 1)]).await;
    let Some(pb::session_progress::Added::Frame(check)) = &p.added else { panic!("a frame check") };
    assert!(!p.steps[1].satisfied && !check.step_satisfied, "{target} degrees needed from the frontal frame: {check:?}");
    assert!(codes(&check.reasons).contains(&pb::ReasonCode::PoseNotReached), "{:?}", check.reasons);
    let p = add_frames(&mut c, &s, vec![frame(answer(PERSON, pose, 9.0 + target + 12.0), 1)]).await;
    assert!(p.steps[1].satisfied, "{:?}", p.added);
    // Later steps turn 25 degrees from the frontal frame (a repeat of step 1's pose counts
    // from the frontal frame's 9 degrees).
    let rest: Vec<pb::Frame> = steps[2..]
        .iter()
        .map(|st| frame(answer(PERSON, st.pose(), if st.pose() == pose { 34.0 } else { 25.0 }), st.index as usize))
        .collect();
    if !rest.is_empty() {
        add_frames(&mut c, &s, rest).await;
    }
    add_document(&mut c, &s, id_card_photo(PERSON_CARD, 11)).await;
    let r = c.finish(pb::FinishRequest { session_id: s.session_id.clone() }).await.expect("finishes").into_inner();
    let liveness = r.factors.iter().find(|f| f.kind == pb::FactorKind::Liveness as i32).expect("a liveness factor");
    assert!(liveness.passed, "{:#?}", liveness.reasons);
    assert_eq!(decision(&r), pb::Decision::Accept, "{r:#?}");
    orch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_of_another_person_is_rejected() {
    let b = backends();
    let (orch, _) = orchestrator(orchestrator_config(b)).await;
    let mut c = client(&orch).await;
    let s = start(&mut c, "").await;
    let r = c
        .verify(pb::VerifyRequest {
            session_id: s.session_id.clone(),
            frames: frames_for(&s, PERSON),
            document: Some(image(id_card_photo(OTHER_CARD, 12))),
            document_type_hint: 0,
            signature: None,
        })
        .await
        .expect("verifies")
        .into_inner();
    assert_eq!(decision(&r), pb::Decision::Reject, "{r:#?}");
    assert!(codes(&r.reasons).contains(&pb::ReasonCode::FaceMismatch), "{:?}", r.reasons);
    orch.stop().await;
}

/// Settings trusting the test PKIs in `dirs` (anchors named test-pki-0, -1, ...).
pub(crate) fn trusting_all(dirs: &[&ekyc_testkit::pki::TrustDir], b: &ekyc_tests::Backends) -> OrchestratorConfig {
    let anchors = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| AnchorConfig { name: format!("test-pki-{i}"), certificate_pem: d.ca_pem.clone(), crl: Some(d.crl_pem.clone()) })
        .collect();
    OrchestratorConfig { signature: TrustConfig { anchors, ..TrustConfig::default() }, ..orchestrator_config(b) }
}

pub(crate) fn trusting(dir: &ekyc_testkit::pki::TrustDir, b: &ekyc_tests::Backends) -> OrchestratorConfig {
    trusting_all(&[dir], b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resident_certificate_needs_a_valid_signature_to_accept() {
    let b = backends();
    // The policy asks for the My Number card's user-authentication certificate.
    let pki = TestPki::jpki(JpkiProfile::UserAuthentication);
    let dir = pki.trust_dir();
    let (orch, _) = orchestrator(trusting(&dir, b)).await;
    let mut c = client(&orch).await;

    // Face match alone: REVIEW, with the policy's reason.
    let s = start(&mut c, "resident-certificate").await;
    let card = id_card_photo(PERSON_CARD, 11);
    let req = |s: &pb::StartSessionResponse, signature| pb::VerifyRequest {
        session_id: s.session_id.clone(),
        frames: frames_for(s, PERSON),
        document: Some(image(card.clone())),
        document_type_hint: 0,
        signature,
    };
    let r = c.verify(req(&s, None)).await.expect("verifies").into_inner();
    assert_eq!(decision(&r), pb::Decision::Review, "{r:#?}");
    assert!(codes(&r.reasons).contains(&pb::ReasonCode::PolicyRequiresSignature));

    // With a valid signature over the to-be-signed bytes (RSA PKCS#1 v1.5, as JPKI): ACCEPT.
    let s = start(&mut c, "resident-certificate").await;
    let user = pki.user(UserKind::Good, KeyAlg::Rsa2048);
    let sig = pb::SignatureEvidence {
        certificate_chain: user.chain_der(),
        signature: user.sign(&s.to_be_signed),
        signature_algorithm: user.algorithm().into(),
        signed_data: None,
    };
    let r = c.verify(req(&s, Some(sig))).await.expect("verifies").into_inner();
    assert_eq!(decision(&r), pb::Decision::Accept, "{r:#?}");
    let f = r.factors.iter().find(|f| f.kind == pb::FactorKind::Signature as i32).expect("a signature factor");
    assert!(f.passed && f.score == 1.0);
    orch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_signature_failure_is_reported_with_its_reason() {
    let b = backends();
    let pki = TestPki::new();
    let dir = pki.trust_dir();
    // Every case below is a signature added to one session; these are chain and key
    // failures, so the policy asks for no particular certificate profile here.
    let mut cfg = OrchestratorConfig { max_signatures_per_session: 10, ..trusting(&dir, b) };
    cfg.policies.get_mut("resident-certificate").expect("built in").signature_profile = None;
    let (orch, _) = orchestrator(cfg).await;
    let mut c = client(&orch).await;
    let s = start(&mut c, "resident-certificate").await;
    let other_nonce = vec![7u8; 32];
    let cases = [
        (UserKind::Expired, None, pb::ReasonCode::CertExpired),
        (UserKind::UntrustedCa, None, pb::ReasonCode::CertUntrusted),
        (UserKind::Revoked, None, pb::ReasonCode::CertRevoked),
        (UserKind::WrongKeyUsage, None, pb::ReasonCode::CertKeyUsage),
        (UserKind::Good, Some(other_nonce.clone()), pb::ReasonCode::SignatureInvalid),
    ];
    for (kind, signed_nonce, expected) in cases {
        let user = pki.user(kind, KeyAlg::EcdsaP256);
        let signed = signed_nonce.clone().unwrap_or_else(|| s.to_be_signed.clone());
        let ev = pb::SignatureEvidence {
            certificate_chain: user.chain_der(),
            signature: user.sign(&signed),
            signature_algorithm: user.algorithm().into(),
            signed_data: None,
        };
        let p = c
            .add_signature(pb::AddSignatureRequest { session_id: s.session_id.clone(), signature: Some(ev) })
            .await
            .expect("checked")
            .into_inner();
        let Some(pb::session_progress::Added::Signature(check)) = p.added else { panic!("a signature check") };
        assert!(!check.valid, "{kind:?}");
        assert!(codes(&check.reasons).contains(&expected), "{kind:?}: {:?}", check.reasons);
    }
    // A client that says which nonce it signed gets the precise reason.
    let user = pki.user(UserKind::Good, KeyAlg::Ed25519);
    let ev = pb::SignatureEvidence {
        certificate_chain: user.chain_der(),
        signature: user.sign(&other_nonce),
        signature_algorithm: user.algorithm().into(),
        signed_data: Some(other_nonce),
    };
    let p = c
        .add_signature(pb::AddSignatureRequest { session_id: s.session_id.clone(), signature: Some(ev) })
        .await
        .expect("checked")
        .into_inner();
    assert_eq!(codes(&p.kept_signature.expect("kept").reasons), vec![pb::ReasonCode::NonceMismatch]);
    // Malformed input is INVALID_ARGUMENT, not a verdict.
    let bad = pb::SignatureEvidence {
        certificate_chain: vec![vec![1, 2, 3]],
        signature: vec![1],
        signature_algorithm: "ED25519".into(),
        signed_data: None,
    };
    let e = c.add_signature(pb::AddSignatureRequest { session_id: s.session_id.clone(), signature: Some(bad) }).await.expect_err("garbage");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let user = pki.user(UserKind::Good, KeyAlg::EcdsaP256);
    let odd = pb::SignatureEvidence {
        certificate_chain: user.chain_der(),
        signature: vec![1],
        signature_algorithm: "MD5_RSA".into(),
        signed_data: None,
    };
    let e = c.add_signature(pb::AddSignatureRequest { session_id: s.session_id.clone(), signature: Some(odd) }).await.expect_err("unknown");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    orch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_on_another_replica() {
    let b = backends();
    let (first, _) = orchestrator(orchestrator_config(b)).await;
    let mut c1 = client(&first).await;
    let s = start(&mut c1, "low-risk").await;
    // The document first, then the frames in step order, half on each replica (they share
    // Redis and the session key, as replicas of a cluster do).
    add_document(&mut c1, &s, id_card_photo(PERSON_CARD, 11)).await;
    let mut frames = frames_for(&s, PERSON);
    let tail = frames.split_off(frames.len() / 2);
    add_frames(&mut c1, &s, frames).await;
    first.stop().await;

    let (second, _) = orchestrator(orchestrator_config(b)).await;
    let mut c2 = client(&second).await;
    let p = c2.get_session(pb::GetSessionRequest { session_id: s.session_id.clone() }).await.expect("found").into_inner();
    assert_eq!(p.state, pb::SessionState::Collecting as i32);
    assert!(p.kept_document.is_some() && !p.can_finish);
    add_frames(&mut c2, &s, tail).await;
    let p = c2.get_session(pb::GetSessionRequest { session_id: s.session_id.clone() }).await.expect("found").into_inner();
    assert!(p.can_finish && p.missing.iter().all(|m| !m.required), "{:?}", p.missing);
    let r = c2.finish(pb::FinishRequest { session_id: s.session_id.clone() }).await.expect("finishes").into_inner();
    assert_ne!(decision(&r), pb::Decision::Reject, "{r:#?}");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_out_of_step_order_fail_the_challenge() {
    let b = backends();
    let (orch, _) = orchestrator(orchestrator_config(b)).await;
    let mut c = client(&orch).await;
    let s = start(&mut c, "low-risk").await;
    add_document(&mut c, &s, id_card_photo(PERSON_CARD, 11)).await;
    // Every step answered correctly, but the last step first and the frontal step last:
    // the challenge's order is part of what proves a live person followed it.
    let mut frames = frames_for(&s, PERSON);
    frames.reverse();
    add_frames(&mut c, &s, frames).await;
    let r = c.finish(pb::FinishRequest { session_id: s.session_id.clone() }).await.expect("finishes").into_inner();
    assert_eq!(decision(&r), pb::Decision::Reject, "{r:#?}");
    let liveness = r.factors.iter().find(|f| f.kind == pb::FactorKind::Liveness as i32).expect("a liveness factor");
    assert!(!liveness.passed, "{liveness:#?}");
    assert!(
        liveness.reasons.iter().any(|x| x.code == pb::ReasonCode::StepOutOfOrder as i32 && x.blocking),
        "STEP_OUT_OF_ORDER: {:#?}",
        liveness.reasons
    );
    orch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_refuses_evidence() {
    let b = backends();
    let mut cfg = orchestrator_config(b);
    cfg.policies.insert("blink".into(), PolicyConfig { session_ttl_s: 1, ..PolicyConfig::default() });
    let (orch, _) = orchestrator(cfg).await;
    let mut c = client(&orch).await;
    let s = start(&mut c, "blink").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let f = frames_for(&s, PERSON).remove(0);
    let e = c.add_frame(pb::AddFrameRequest { session_id: s.session_id.clone(), frame: Some(f) }).await.expect_err("expired");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().starts_with("SESSION_EXPIRED"), "{e:?}");
    let p = c.get_session(pb::GetSessionRequest { session_id: s.session_id.clone() }).await.expect("still readable").into_inner();
    assert_eq!(p.state, pb::SessionState::Expired as i32);
    assert!(codes(&p.reasons).contains(&pb::ReasonCode::SessionExpired));
    let e = c.get_session(pb::GetSessionRequest { session_id: "s_nope".into() }).await.expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
    orch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_silent_backend_gives_a_clear_answer_within_the_deadline() {
    let b = backends();
    // Own liveness and document services, to kill them mid-session.
    let liveness = ekyc_tests::spawn_backend(ekyc_runtime::ServiceKind::Liveness, Some(b.redis_url.clone())).await;
    let document = ekyc_tests::spawn_backend(ekyc_runtime::ServiceKind::Document, None).await;
    ekyc_tests::wait_ready(&liveness).await;
    ekyc_tests::wait_ready(&document).await;
    let mut cfg = orchestrator_config(b);
    cfg.backends.liveness.endpoint = format!("http://{}", liveness.addr);
    cfg.backends.document.endpoint = format!("http://{}", document.addr);
    for be in [&mut cfg.backends.liveness, &mut cfg.backends.document, &mut cfg.backends.facematch] {
        be.timeout_ms = 3_000;
    }
    let (orch, _) = orchestrator(cfg.clone()).await;
    let mut c = client(&orch).await;
    let s = start(&mut c, "low-risk").await;
    add_frames(&mut c, &s, frames_for(&s, PERSON)).await;

    // The document service dies: AddDocument says so at once, the session stays open.
    document.stop().await;
    let t = Instant::now();
    let e = c
        .add_document(pb::AddDocumentRequest {
            session_id: s.session_id.clone(),
            image: Some(image(id_card_photo(PERSON_CARD, 11))),
            type_hint: 0,
        })
        .await;
    let e = e.expect_err("no document service");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().starts_with("BACKEND_UNAVAILABLE"), "{e:?}");
    assert!(t.elapsed() < Duration::from_millis(3_500), "{:?}", t.elapsed());
    let p = c.get_session(pb::GetSessionRequest { session_id: s.session_id.clone() }).await.expect("open").into_inner();
    assert_eq!(p.state, pb::SessionState::Collecting as i32);

    // The shared document service takes the photo; then liveness dies before Finish: the
    // decision cannot be ACCEPT and says why.
    drop(orch);
    cfg.backends.document.endpoint = format!("http://{}", b.document);
    let (orch, _) = orchestrator(cfg.clone()).await;
    let mut c = client(&orch).await;
    add_document(&mut c, &s, id_card_photo(PERSON_CARD, 11)).await;
    liveness.stop().await;
    let t = Instant::now();
    let r = c.finish(pb::FinishRequest { session_id: s.session_id.clone() }).await.expect("a decision").into_inner();
    assert!(t.elapsed() < Duration::from_millis(3_500), "{:?}", t.elapsed());
    assert_eq!(decision(&r), pb::Decision::Review, "{r:#?}");
    assert!(codes(&r.reasons).contains(&pb::ReasonCode::BackendUnavailable), "{:?}", r.reasons);
    orch.stop().await;

    // A backend that accepts connections but never answers: BACKEND_TIMEOUT at the deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let mut cfg = orchestrator_config(b);
    cfg.backends.liveness.endpoint = format!("http://{}", silent.local_addr().expect("addr"));
    cfg.backends.liveness.timeout_ms = 1_000;
    let (orch, _) = orchestrator(cfg).await;
    let mut c = client(&orch).await;
    let t = Instant::now();
    let e = c.start_session(pb::StartSessionRequest::default()).await.expect_err("silent liveness");
    assert!(t.elapsed() < Duration::from_millis(2_000), "{:?}", t.elapsed());
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().starts_with("BACKEND_TIMEOUT"), "{e:?}");
    orch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_statuses() {
    let b = backends();
    let (orch, _) = orchestrator(orchestrator_config(b)).await;
    let mut c = client(&orch).await;
    let e = c.start_session(pb::StartSessionRequest { policy: "no-such-policy".into(), ..Default::default() }).await.expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
    let s = start(&mut c, "low-risk").await;
    let e = c.finish(pb::FinishRequest { session_id: s.session_id.clone() }).await.expect_err("nothing yet");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().starts_with("EVIDENCE_MISSING"), "{e:?}");
    let bad_step = frame(vec![1, 2, 3], 9);
    let e = c.add_frame(pb::AddFrameRequest { session_id: s.session_id.clone(), frame: Some(bad_step) }).await.expect_err("no step 9");
    assert_eq!(e.code(), Code::InvalidArgument);
    let corrupt = frame(ekyc_testkit::bad_images::png_claiming(1, 1)[..20].to_vec(), 0);
    let e = c.add_frame(pb::AddFrameRequest { session_id: s.session_id.clone(), frame: Some(corrupt) }).await.expect_err("corrupt");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = c.get_session(pb::GetSessionRequest { session_id: "../../etc".into() }).await.expect_err("bad id");
    assert_eq!(e.code(), Code::InvalidArgument);
    let p = c.cancel_session(pb::CancelSessionRequest { session_id: s.session_id.clone() }).await.expect("cancelled").into_inner();
    assert_eq!(p.state, pb::SessionState::Cancelled as i32);
    orch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_all_four_services() {
    let spans = ekyc_runtime::testing::install_in_memory();
    let b = backends();
    let (orch, _) = orchestrator(orchestrator_config(b)).await;
    let channel = orch.channel().await;
    let mut c = OrchestratorClient::with_interceptor(channel, |r| ekyc_tests::with_api_key(ekyc_runtime::trace::inject_trace_context(r)?))
        .max_decoding_message_size(32 << 20)
        .max_encoding_message_size(32 << 20);
    let root = tracing::info_span!("chatbot verification");
    let trace_id = ekyc_runtime::trace::ids(&root).expect("an OpenTelemetry span").trace_id;
    let r = {
        use tracing::Instrument;
        async {
            let s = c.start_session(pb::StartSessionRequest::default()).await.expect("starts").into_inner();
            c.verify(pb::VerifyRequest {
                session_id: s.session_id.clone(),
                frames: frames_for(&s, PERSON),
                document: Some(image(id_card_photo(PERSON_CARD, 11))),
                document_type_hint: 0,
                signature: None,
            })
            .await
            .expect("verifies")
            .into_inner()
        }
        .instrument(root.clone())
        .await
    };
    drop(root);
    assert_eq!(decision(&r), pb::Decision::Accept, "{r:#?}");
    let services = ["ekyc.v1.Orchestrator/", "ekyc.v1.Liveness/", "ekyc.v1.Document/", "ekyc.v1.FaceMatch/"];
    let found =
        spans.wait_for(&trace_id, |got| services.iter().all(|svc| got.iter().any(|s| s.kind == "server" && s.name.starts_with(svc)))).await;
    for svc in services {
        let server = found.iter().find(|s| s.kind == "server" && s.name.starts_with(svc));
        assert!(
            server.is_some(),
            "no server span of {svc} in trace {trace_id}: {:?}",
            found.iter().map(|s| (&s.name, &s.kind)).collect::<Vec<_>>()
        );
    }
    // The backends' spans hang below the orchestrator's calls, not beside them.
    let ids: std::collections::HashSet<&str> = found.iter().map(|s| s.span_id.as_str()).collect();
    for s in found.iter().filter(|s| s.kind == "server" && !s.name.starts_with("ekyc.v1.Orchestrator/")) {
        assert!(s.parent_span_id.as_deref().is_some_and(|p| ids.contains(p)), "{} has no parent in the trace", s.name);
    }
    orch.stop().await;
}
