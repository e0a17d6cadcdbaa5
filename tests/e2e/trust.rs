//! What an attacker with ordinary access tries (issue 10), end to end over real gRPC and a
//! real Redis: calling without credentials or with another session's token, rewriting a
//! session in Redis to change its decision, and reading biometric data out of Redis.

use ekyc_proto::v1 as pb;
use ekyc_proto::v1::face_match_client::FaceMatchClient;
use ekyc_proto::v1::orchestrator_client::OrchestratorClient;
use ekyc_testkit::frames::id_card_photo;
use ekyc_tests::{backends, orchestrator, orchestrator_config};
use tonic::Code;

use crate::orchestrator::{PERSON, PERSON_CARD, add_document, add_frames, client, decision, frames_for, start};

/// A client whose calls carry `authorization: Bearer <credential>`.
fn bearer(
    channel: tonic::transport::Channel,
    credential: &str,
) -> OrchestratorClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, impl tonic::service::Interceptor>> {
    let value: tonic::metadata::MetadataValue<_> = format!("Bearer {credential}").parse().expect("ASCII");
    OrchestratorClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", value.clone());
        Ok(r)
    })
    .max_decoding_message_size(32 << 20)
    .max_encoding_message_size(32 << 20)
}

fn assert_refused(e: &tonic::Status, code: Code, reason: &str) {
    assert_eq!(e.code(), code, "{e:?}");
    assert!(e.message().starts_with(reason), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_need_a_credential_and_a_session_token_opens_its_own_session_only() {
    let b = backends();
    let (orch, _) = orchestrator(orchestrator_config(b)).await;
    let mut operator = client(&orch).await;
    let mine = start(&mut operator, "low-risk").await;
    let theirs = start(&mut operator, "low-risk").await;
    assert!(mine.session_token.starts_with("st1.") && mine.session_token != theirs.session_token);

    // Nobody without a credential, or with a made-up one.
    let channel = orch.channel().await;
    let mut nobody = OrchestratorClient::new(channel.clone());
    let e = nobody.start_session(pb::StartSessionRequest::default()).await.expect_err("no key");
    assert_refused(&e, Code::Unauthenticated, "CALLER_UNAUTHENTICATED");
    let e = nobody.list_policies(pb::ListPoliciesRequest {}).await.expect_err("no key");
    assert_refused(&e, Code::Unauthenticated, "CALLER_UNAUTHENTICATED");
    let e = nobody.get_session(pb::GetSessionRequest { session_id: mine.session_id.clone() }).await.expect_err("no key");
    assert_refused(&e, Code::Unauthenticated, "CALLER_UNAUTHENTICATED");
    let mut guesser = bearer(channel.clone(), "ek_guessed");
    let e = guesser.start_session(pb::StartSessionRequest::default()).await.expect_err("unknown key");
    assert_refused(&e, Code::Unauthenticated, "CALLER_UNAUTHENTICATED");
    let forged = mine.session_token.replace(&mine.session_id, &theirs.session_id);
    let e = bearer(channel.clone(), &forged)
        .get_session(pb::GetSessionRequest { session_id: theirs.session_id.clone() })
        .await
        .expect_err("a token moved to another session");
    assert_refused(&e, Code::Unauthenticated, "CALLER_UNAUTHENTICATED");

    // The session token: its own session's evidence calls, nothing else.
    let mut browser = bearer(channel, &mine.session_token);
    let p = browser.get_session(pb::GetSessionRequest { session_id: mine.session_id.clone() }).await.expect("own session").into_inner();
    assert_eq!(p.session_id, mine.session_id);
    let frame = frames_for(&mine, PERSON).into_iter().next().expect("a frontal frame");
    let p = browser
        .add_frame(pb::AddFrameRequest { session_id: mine.session_id.clone(), frame: Some(frame.clone()) })
        .await
        .expect("a frame on its own session")
        .into_inner();
    assert_eq!(p.steps[0].frames_received, 1);
    let e = browser
        .add_frame(pb::AddFrameRequest { session_id: theirs.session_id.clone(), frame: Some(frame) })
        .await
        .expect_err("another session");
    assert_refused(&e, Code::PermissionDenied, "CALLER_NOT_PERMITTED");
    let e = browser.finish(pb::FinishRequest { session_id: theirs.session_id.clone() }).await.expect_err("another session");
    assert_refused(&e, Code::PermissionDenied, "CALLER_NOT_PERMITTED");
    let e = browser.start_session(pb::StartSessionRequest::default()).await.expect_err("tokens start nothing");
    assert_refused(&e, Code::PermissionDenied, "CALLER_NOT_PERMITTED");
    let e = browser.cancel_session(pb::CancelSessionRequest { session_id: mine.session_id.clone() }).await.expect_err("operator only");
    assert_refused(&e, Code::PermissionDenied, "CALLER_NOT_PERMITTED");
    // The other session saw nothing of it.
    let p = operator.get_session(pb::GetSessionRequest { session_id: theirs.session_id.clone() }).await.expect("read").into_inner();
    assert_eq!(p.steps[0].frames_received, 0);
    orch.stop().await;
}

async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).expect("url").get_multiplexed_async_connection().await.expect("redis connects")
}

fn session_key(id: &str) -> String {
    format!("ekyc:orchestrator:session:{id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_rewritten_in_redis_is_refused_and_never_decided() {
    let b = backends();
    let (orch, _) = orchestrator(orchestrator_config(b)).await;
    let mut c = client(&orch).await;
    // Without a signature this policy gives at most REVIEW: the attack of the issue was to
    // write `signature: {valid: true}` into the stored session and get ACCEPT.
    let s = start(&mut c, "resident-certificate").await;
    add_frames(&mut c, &s, frames_for(&s, PERSON)).await;
    add_document(&mut c, &s, id_card_photo(PERSON_CARD, 3)).await;
    let other = start(&mut c, "resident-certificate").await;
    let mut r = redis(&b.redis_url).await;
    let key = session_key(&s.session_id);
    let (rev, data): (String, Vec<u8>) = redis::cmd("HMGET").arg(&key).arg("rev").arg("data").query_async(&mut r).await.expect("stored");
    assert!(serde_json::from_slice::<serde_json::Value>(&data).is_err(), "the record is sealed, not JSON");
    assert!(!String::from_utf8_lossy(&data).contains("resident-certificate"), "no field is readable");

    async fn set(r: &mut redis::aio::MultiplexedConnection, key: &str, rev: &str, data: &[u8]) {
        let _: () = redis::cmd("HSET").arg(key).arg("rev").arg(rev).arg("data").arg(data).query_async(r).await.expect("written");
    }
    let get = |c: &mut crate::orchestrator::Client| {
        let id = s.session_id.clone();
        let mut c = c.clone();
        async move { c.get_session(pb::GetSessionRequest { session_id: id }).await }
    };
    // 1. A plain JSON session claiming a valid signature, as the old store kept it.
    let forged = serde_json::json!({"id": s.session_id, "signature": {"valid": true, "check": ""}, "phase": "collecting"});
    set(&mut r, &key, &rev, &serde_json::to_vec(&forged).expect("json")).await;
    let e = c.finish(pb::FinishRequest { session_id: s.session_id.clone() }).await.expect_err("never decided");
    assert_refused(&e, Code::DataLoss, "SESSION_CORRUPT");
    // 2. Any byte of the sealed record changed (every byte of the header, then a sample).
    let positions: Vec<usize> = (0..64.min(data.len())).chain((64..data.len()).step_by(251)).chain([data.len() - 1]).collect();
    for i in positions {
        let mut bad = data.clone();
        bad[i] ^= 0x20;
        set(&mut r, &key, &rev, &bad).await;
        let e = get(&mut c).await.expect_err("altered");
        assert_refused(&e, Code::DataLoss, "SESSION_CORRUPT");
    }
    // 3. The revision field changed, the record cut short, another session's record moved in.
    let next: u64 = rev.parse::<u64>().expect("a number") + 1;
    set(&mut r, &key, &next.to_string(), &data).await;
    assert_refused(&get(&mut c).await.expect_err("revision"), Code::DataLoss, "SESSION_CORRUPT");
    set(&mut r, &key, &rev, &data[..data.len() / 2]).await;
    assert_refused(&get(&mut c).await.expect_err("truncated"), Code::DataLoss, "SESSION_CORRUPT");
    let (orev, odata): (String, Vec<u8>) =
        redis::cmd("HMGET").arg(session_key(&other.session_id)).arg("rev").arg("data").query_async(&mut r).await.expect("stored");
    set(&mut r, &key, &orev, &odata).await;
    let e = c.finish(pb::FinishRequest { session_id: s.session_id.clone() }).await.expect_err("another session's record");
    assert_refused(&e, Code::DataLoss, "SESSION_CORRUPT");
    // The untouched record still decides, and only as the evidence allows.
    set(&mut r, &key, &rev, &data).await;
    let res = c.finish(pb::FinishRequest { session_id: s.session_id.clone() }).await.expect("decided").into_inner();
    assert_eq!(decision(&res), pb::Decision::Review, "{res:#?}");
    orch.stop().await;
}

/// Why `value` gives away `embedding` or an image, looking into it as raw bytes, as f32
/// vectors, as text, JSON and base64 at any depth; None when it does not.
fn leak(value: &[u8], embedding: &[f32], depth: usize) -> Option<String> {
    // Whole signatures (a JPEG's SOI and first marker), so that sealed random bytes do not
    // pass for an image by chance.
    const MAGIC: [&[u8]; 2] = [b"\x89PNG\r\n\x1a\n", b"WEBPVP8"];
    if let Some(m) = MAGIC.iter().find(|m| value.windows(m.len()).any(|w| w == **m)) {
        return Some(format!("image signature {m:?}"));
    }
    if value.windows(4).any(|w| w[..3] == [0xFF, 0xD8, 0xFF] && matches!(w[3], 0xE0 | 0xE1 | 0xDB | 0xEE)) {
        return Some("JPEG signature".into());
    }
    let n = embedding.len();
    for align in 0..4 {
        let floats: Vec<f32> =
            value.get(align..).unwrap_or_default().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if let Some(sim) = floats.windows(n).filter_map(|w| cosine(w, embedding)).find(|s| *s > 0.9) {
            return Some(format!("raw f32 vector, cosine {sim}"));
        }
    }
    if depth == 0 {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?.trim();
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(text)
        && let Some(why) = leak_json(&json, embedding, depth - 1)
    {
        return Some(format!("in JSON: {why}"));
    }
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        if let Ok(raw) = engine.decode(text)
            && let Some(why) = leak(&raw, embedding, depth - 1)
        {
            return Some(format!("in base64: {why}"));
        }
    }
    None
}

fn leak_json(v: &serde_json::Value, embedding: &[f32], depth: usize) -> Option<String> {
    match v {
        serde_json::Value::Array(items) => {
            let nums: Vec<f32> = items.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect();
            if nums.len() >= embedding.len()
                && let Some(sim) = nums.windows(embedding.len()).filter_map(|w| cosine(w, embedding)).find(|s| *s > 0.9)
            {
                return Some(format!("number array, cosine {sim}"));
            }
            items.iter().find_map(|x| leak_json(x, embedding, depth))
        }
        serde_json::Value::Object(m) => m.values().find_map(|x| leak_json(x, embedding, depth)),
        serde_json::Value::String(s) => leak(s.as_bytes(), embedding, depth),
        _ => None,
    }
}

fn cosine(a: &[f32], b: &[f32]) -> Option<f32> {
    let (mut d, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        if !x.is_finite() {
            return None;
        }
        d += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    (na > 0.0 && nb > 0.0).then(|| (d / (na.sqrt() * nb.sqrt())) as f32)
}

/// Every value in the Redis at `url`: strings, hash fields, list, set and sorted-set members.
async fn everything_in(url: &str) -> Vec<(String, Vec<u8>)> {
    let mut r = redis(url).await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut r).await.expect("keys");
    let mut out = Vec::new();
    for k in keys {
        let kind: String = redis::cmd("TYPE").arg(&k).query_async(&mut r).await.expect("type");
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(&k).query_async(&mut r).await.expect("get")],
            "hash" => redis::cmd("HGETALL").arg(&k).query_async(&mut r).await.expect("hgetall"),
            "list" => redis::cmd("LRANGE").arg(&k).arg(0).arg(-1).query_async(&mut r).await.expect("lrange"),
            "set" => redis::cmd("SMEMBERS").arg(&k).query_async(&mut r).await.expect("smembers"),
            "zset" => redis::cmd("ZRANGE").arg(&k).arg(0).arg(-1).query_async(&mut r).await.expect("zrange"),
            _ => Vec::new(),
        };
        out.push((k.clone(), k.into_bytes()));
        out.extend(values.into_iter().map(|v| (kind.clone(), v)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_in_redis_gives_away_a_face_embedding_or_an_image() {
    let b = backends();
    let (orch, _) = orchestrator(orchestrator_config(b)).await;
    let mut c = client(&orch).await;
    let s = start(&mut c, "low-risk").await;
    let frames = frames_for(&s, PERSON);
    // The face embedding of the frontal frame, as facematch computes it.
    let fm = tonic::transport::Channel::from_shared(format!("http://{}", b.facematch)).expect("uri").connect().await.expect("connects");
    let embedded = FaceMatchClient::new(fm)
        .max_decoding_message_size(32 << 20)
        .max_encoding_message_size(32 << 20)
        .embed(pb::EmbedRequest {
            images: vec![frames[0].image.clone().expect("an image")],
            largest_face_only: true,
            min_face_size_px: 0,
            skip_embeddings: false,
        })
        .await
        .expect("embeds")
        .into_inner();
    let embedding = embedded.results[0].faces[0].face.as_ref().and_then(|f| f.embedding.clone()).expect("an embedding").values;
    assert!(embedding.len() >= 64);
    // The detector works on our own encoding too: a sanity check that `leak` can fail.
    let plain: Vec<u8> = embedding.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert!(leak(&plain, &embedding, 3).is_some());
    assert!(leak(serde_json::to_string(&serde_json::json!({"e": embedding})).expect("json").as_bytes(), &embedding, 3).is_some());
    assert!(leak(frames[0].image.as_ref().expect("image").data.as_slice(), &embedding, 0).is_some());

    add_frames(&mut c, &s, frames).await;
    add_document(&mut c, &s, id_card_photo(PERSON_CARD, 5)).await;
    for (kind, v) in everything_in(&b.redis_url).await {
        assert!(leak(&v, &embedding, 4).is_none(), "mid-session, a {kind} value in Redis: {:?}", leak(&v, &embedding, 4));
    }
    let res = c.finish(pb::FinishRequest { session_id: s.session_id.clone() }).await.expect("decided").into_inner();
    assert_ne!(decision(&res), pb::Decision::Unspecified);
    for (kind, v) in everything_in(&b.redis_url).await {
        assert!(leak(&v, &embedding, 4).is_none(), "after Finish, a {kind} value in Redis: {:?}", leak(&v, &embedding, 4));
    }
    orch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_counts_only_for_its_own_session_and_the_required_certificate() {
    use ekyc_testkit::pki::{JPKI_TEST_PERSON, JpkiProfile, KeyAlg, TestPki, UserKind};
    let b = backends();
    let user_auth = TestPki::jpki(JpkiProfile::UserAuthentication);
    let signing = TestPki::jpki(JpkiProfile::Signing);
    let (ua_dir, sg_dir) = (user_auth.trust_dir(), signing.trust_dir());
    let (orch, _) = orchestrator(crate::orchestrator::trusting_all(&[&ua_dir, &sg_dir], b)).await;
    let mut c = client(&orch).await;
    let mine = start(&mut c, "resident-certificate").await;
    let theirs = start(&mut c, "resident-certificate").await;
    let text = String::from_utf8(mine.to_be_signed.clone()).expect("UTF-8 text");
    assert!(text.starts_with("ekyc-signature/v1\nissuer=ekyc\n"), "{text}");
    assert!(text.contains(&format!("\nsession={}\n", mine.session_id)) && text.contains("\npolicy=resident-certificate@"), "{text}");
    assert!(text.contains(&format!("\nnonce={}\n", hex::encode(&mine.nonce))), "{text}");

    let adder = c.clone();
    let add = |chain: Vec<Vec<u8>>, signature: Vec<u8>, algorithm: &str, echo: Option<Vec<u8>>| {
        let mut c = adder.clone();
        let ev = pb::SignatureEvidence { certificate_chain: chain, signature, signature_algorithm: algorithm.into(), signed_data: echo };
        let id = mine.session_id.clone();
        async move {
            let p = c.add_signature(pb::AddSignatureRequest { session_id: id, signature: Some(ev) }).await.expect("checked").into_inner();
            let Some(pb::session_progress::Added::Signature(check)) = p.added else { panic!("a signature check") };
            check
        }
    };
    let codes = |c: &pb::SignatureCheck| crate::orchestrator::codes(&c.reasons);
    let card = user_auth.user(UserKind::Good, KeyAlg::Rsa2048);
    // Made for another session: refused, and with the echo the reason says so.
    let check = add(card.chain_der(), card.sign(&theirs.to_be_signed), card.algorithm(), None).await;
    assert!(!check.valid && codes(&check).contains(&pb::ReasonCode::SignatureInvalid), "{check:?}");
    let check = add(card.chain_der(), card.sign(&theirs.to_be_signed), card.algorithm(), Some(theirs.to_be_signed.clone())).await;
    assert!(!check.valid && codes(&check).contains(&pb::ReasonCode::SignatureContextMismatch), "{check:?}");
    // The bare nonce, as the old protocol had it.
    let check = add(card.chain_der(), card.sign(&mine.nonce), card.algorithm(), None).await;
    assert!(!check.valid && codes(&check).contains(&pb::ReasonCode::SignatureInvalid), "{check:?}");
    // The signing certificate where the policy asks for the user-authentication one.
    let signer = signing.user(UserKind::Good, KeyAlg::Rsa2048);
    let check = add(signer.chain_der(), signer.sign(&mine.to_be_signed), signer.algorithm(), None).await;
    assert!(!check.valid && codes(&check).contains(&pb::ReasonCode::CertProfileMismatch), "{check:?}");
    assert_eq!(check.profile, "jpki-signing");
    // Nothing of the signing certificate's holder comes back, now or later.
    let progress = c.get_session(pb::GetSessionRequest { session_id: mine.session_id.clone() }).await.expect("read").into_inner();
    let shown = format!("{check:?} {progress:?}");
    let wire = String::from_utf8_lossy(&prost::Message::encode_to_vec(&progress)).into_owned();
    for value in JPKI_TEST_PERSON.values() {
        assert!(!shown.contains(value) && !wire.contains(value), "{value} came back to the client");
    }
    // The right certificate over this session's bytes.
    let check = add(card.chain_der(), card.sign(&mine.to_be_signed), card.algorithm(), Some(mine.to_be_signed.clone())).await;
    assert!(check.valid, "{check:?}");
    assert_eq!(check.profile, "jpki-user-authentication");
    orch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_sent_in_an_earlier_session_is_a_replayed_frame() {
    let b = backends();
    // A liveness service of this test's own, with the cross-session replay memory on (the
    // shared rig turns it off because its tests reuse frames).
    let liveness = ekyc_tests::spawn_liveness(ekyc_liveness::LivenessConfig {
        redis_url: None,
        replay_window_s: 3600,
        ..ekyc_tests::liveness_config(None)
    })
    .await;
    ekyc_tests::wait_ready(&liveness).await;
    let mut cfg = orchestrator_config(b);
    cfg.backends.liveness.endpoint = format!("http://{}", liveness.addr);
    let (orch, _) = orchestrator(cfg).await;
    let mut c = client(&orch).await;
    let first = start(&mut c, "low-risk").await;
    let frontal = frames_for(&first, PERSON).into_iter().next().expect("a frontal frame");
    let p = add_frames(&mut c, &first, vec![frontal.clone()]).await;
    assert!(p.steps[0].satisfied, "{:?}", p.steps[0]);
    // The same photo sent again within its own session is a retry, not a replay.
    let p = add_frames(&mut c, &first, vec![frontal.clone()]).await;
    assert!(p.steps[0].satisfied, "{:?}", p.steps[0]);

    let second = start(&mut c, "low-risk").await;
    let p = add_frames(&mut c, &second, vec![frontal]).await;
    let Some(pb::session_progress::Added::Frame(check)) = p.added else { panic!("a frame check") };
    let replayed = check.reasons.iter().any(|r| r.code == pb::ReasonCode::ReplayedFrame as i32 && r.blocking);
    assert!(replayed && !check.step_satisfied, "{check:?}");
    orch.stop().await;
    liveness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_photo_from_an_earlier_session_is_reported() {
    let b = backends();
    let cfg = ekyc_orchestrator::OrchestratorConfig { document_replay_window_s: 3600, ..orchestrator_config(b) };
    let (orch, _) = orchestrator(cfg).await;
    let mut c = client(&orch).await;
    // A card photo no other test sends (its own seed).
    let card = id_card_photo(PERSON_CARD, 4242);
    let seen = |p: &pb::SessionProgress| {
        let d = p.kept_document.as_ref().expect("a document check");
        d.reasons.iter().find(|r| r.code == pb::ReasonCode::DocumentSeenBefore as i32).map(|r| (r.blocking, d.usable))
    };
    let first = start(&mut c, "low-risk").await;
    let p = add_document(&mut c, &first, card.clone()).await;
    assert_eq!(seen(&p), None, "first time");
    // Sent again within its own session: a retry, not a replay.
    let p = add_document(&mut c, &first, card.clone()).await;
    assert_eq!(seen(&p), None, "same session");
    let second = start(&mut c, "low-risk").await;
    let p = add_document(&mut c, &second, card).await;
    assert_eq!(seen(&p), Some((false, true)), "reported to staff, not blocking: {:?}", p.kept_document);
    // Only a keyed digest went to Redis: not the photo's plain SHA-256.
    let sha = p.kept_document.as_ref().expect("check").image_sha256.clone();
    for (_, v) in everything_in(&b.redis_url).await {
        assert!(!String::from_utf8_lossy(&v).contains(&sha), "the plain digest is in Redis");
    }
    orch.stop().await;
}
