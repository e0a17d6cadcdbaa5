//! Sealed state in a real Redis: the stored challenge cannot be altered, replaced or read
//! (its targets and thresholds are inside the seal), and nothing stored, nor the
//! attestations a caller keeps, reveals the face embedding or an image.

use base64::Engine as _;
use ekyc_proto::v1 as pb;
use ekyc_vision::cosine;

use crate::common::{Server, create, good_frames, record_key, redis_cmd, redis_dump, verify};

const PERSON: &str = "obama_1.jpg";

async fn set(server: &Server, key: &str, value: &[u8]) {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value).arg("PX").arg(60_000);
    let _: String = redis_cmd(server, cmd).await;
}

async fn get(server: &Server, key: &str) -> Vec<u8> {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key);
    let v: Option<Vec<u8>> = redis_cmd(server, cmd).await;
    v.expect("the record is stored")
}

/// Both calls on the challenge with `value` in place of its record fail DATA_LOSS
/// CHALLENGE_CORRUPT, without any image analysed.
async fn assert_corrupt(server: &Server, c: &pb::Challenge, frames: &[pb::Frame], value: &[u8], what: &str) {
    let mut client = server.client().await;
    let before = server.engine.frames_analysed();
    set(server, &record_key(c), value).await;
    let e = client
        .check_frame(pb::CheckFrameRequest { challenge_id: c.challenge_id.clone(), frame: Some(frames[0].clone()), ..Default::default() })
        .await
        .expect_err(what);
    assert_eq!(e.code(), tonic::Code::DataLoss, "{what}: {e:?}");
    assert!(e.message().starts_with("CHALLENGE_CORRUPT: "), "{what}: {}", e.message());
    set(server, &record_key(c), value).await;
    let e = client
        .verify_challenge(pb::VerifyChallengeRequest {
            challenge_id: c.challenge_id.clone(),
            frames: frames.to_vec(),
            frame_attestations: vec![],
        })
        .await
        .expect_err(what);
    assert_eq!(e.code(), tonic::Code::DataLoss, "{what}: {e:?}");
    assert!(e.message().starts_with("CHALLENGE_CORRUPT: "), "{what}: {}", e.message());
    assert_eq!(server.engine.frames_analysed(), before, "{what}: no image work on a corrupt record");
}

#[tokio::test]
async fn altered_or_replaced_challenge_records_fail_corrupt_and_never_pass() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let c = create(&mut client, 3).await;
    let other = create(&mut client, 3).await;
    let frames = good_frames(&c, PERSON);
    let original = get(&server, &record_key(&c)).await;
    let steps = c.steps.len();

    // The attack of the issue: a plain record with every target at 0.
    let zero = format!("{{\"targets\":{:?},\"client_reference\":null}}", vec![0.0f32; steps]);
    assert_corrupt(&server, &c, &frames, zero.as_bytes(), "targets set to 0 in plain JSON").await;
    // Any flipped byte, anywhere in the sealed record.
    for i in (0..original.len()).step_by(original.len() / 24 + 1).chain([original.len() - 1]) {
        let mut bad = original.clone();
        bad[i] ^= 0x20;
        assert_corrupt(&server, &c, &frames, &bad, &format!("byte {i} flipped")).await;
    }
    // Another challenge's genuine record, moved under this one; a truncated and an empty one.
    let moved = get(&server, &record_key(&other)).await;
    assert_corrupt(&server, &c, &frames, &moved, "another challenge's record").await;
    assert_corrupt(&server, &c, &frames, &original[..original.len() - 1], "truncated").await;
    assert_corrupt(&server, &c, &frames, b"", "empty").await;
    // Nothing readable inside: the record is not JSON and names no target.
    assert!(serde_json::from_slice::<serde_json::Value>(&original).is_err());
    assert!(!original.windows(7).any(|w| w == b"targets"));

    // The genuine record restored: the same frames pass, so only the tampering failed above.
    set(&server, &record_key(&c), &original).await;
    let r = verify(&mut client, &c, frames).await;
    assert!(r.passed, "{:?}", r.reasons);
}

/// Whether `bytes`, read raw, as base64 or as JSON at any depth, holds an image or a float
/// vector close to `embedding`. Returns what was found.
fn leaks(bytes: &[u8], embedding: &[f32], depth: usize) -> Option<String> {
    if depth > 6 || bytes.len() < 8 {
        return None;
    }
    if bytes.windows(3).any(|w| w == [0xFF, 0xD8, 0xFF]) || bytes.windows(4).any(|w| w == b"\x89PNG") {
        return Some("image magic".into());
    }
    let n = embedding.len();
    for align in 0..4 {
        let floats: Vec<f32> = bytes[align..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if floats.len() >= n {
            for start in 0..=floats.len() - n {
                let w = &floats[start..start + n];
                if w.iter().all(|x| x.is_finite()) && cosine(w, embedding) > 0.9 {
                    return Some(format!("f32 vector at byte {}", align + 4 * start));
                }
            }
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(found) = json_leaks(&v, embedding, depth)
    {
        return Some(format!("json: {found}"));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || "+/-_=".contains(c))).filter(|t| t.len() >= 16) {
            for engine in [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE] {
                let padded = format!("{}{}", token.trim_end_matches('='), "=".repeat((4 - token.trim_end_matches('=').len() % 4) % 4));
                if let Ok(decoded) = engine.decode(&padded)
                    && let Some(found) = leaks(&decoded, embedding, depth + 1)
                {
                    return Some(format!("base64: {found}"));
                }
            }
        }
    }
    None
}

fn json_leaks(v: &serde_json::Value, embedding: &[f32], depth: usize) -> Option<String> {
    match v {
        serde_json::Value::Array(items) => {
            let nums: Vec<f32> = items.iter().filter_map(|x| x.as_f64().map(|f| f as f32)).collect();
            if nums.len() == embedding.len() && cosine(&nums, embedding) > 0.9 {
                return Some("number array".into());
            }
            items.iter().find_map(|x| json_leaks(x, embedding, depth))
        }
        serde_json::Value::Object(m) => m.values().find_map(|x| json_leaks(x, embedding, depth)),
        serde_json::Value::String(s) => leaks(s.as_bytes(), embedding, depth + 1),
        _ => None,
    }
}

#[tokio::test]
async fn nothing_stored_or_attested_reveals_the_face_or_an_image() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let c = create(&mut client, 3).await;
    let frames = good_frames(&c, PERSON);
    let mut attestations = Vec::new();
    let mut embedding = None;
    for f in frames.clone() {
        let r = client
            .check_frame(pb::CheckFrameRequest { challenge_id: c.challenge_id.clone(), frame: Some(f), ..Default::default() })
            .await
            .expect("checked")
            .into_inner();
        embedding = embedding.or(r.embedding.map(|e| e.values));
        attestations.push(r.attestation);
    }
    let embedding = embedding.expect("an embedding");

    // The detector finds what the old formats exposed: it can fail.
    let old_style = serde_json::json!({ "embedding": base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(embedding.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()) });
    let old_style = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(old_style.to_string());
    assert!(leaks(format!("{old_style}.tag").as_bytes(), &embedding, 0).is_some());
    assert!(leaks(&frames[0].image.as_ref().expect("image").data, &embedding, 0).is_some());

    let mid = redis_dump(&server).await;
    assert!(mid.iter().any(|(k, _)| k.starts_with("ekyc:liveness:challenge:")) && mid.iter().any(|(k, _)| k.starts_with("ekyc:replay:")));
    for (i, a) in attestations.iter().enumerate() {
        assert_eq!(leaks(a, &embedding, 0), None, "attestation {i}");
    }
    let v = client
        .verify_challenge(pb::VerifyChallengeRequest {
            challenge_id: c.challenge_id.clone(),
            frames: vec![],
            frame_attestations: attestations,
        })
        .await
        .expect("verdict")
        .into_inner();
    assert!(v.passed, "{:?}", v.reasons);
    // A verification with images too.
    let c2 = create(&mut client, 2).await;
    let v2 = verify(&mut client, &c2, good_frames(&c2, "biden_2.jpg")).await;
    assert!(v2.passed, "{:?}", v2.reasons);
    let reference2 = v2.reference_embedding.expect("an embedding").values;

    let after = redis_dump(&server).await;
    assert!(!after.is_empty());
    for (k, value) in mid.iter().chain(&after) {
        for e in [&embedding, &reference2] {
            assert_eq!(leaks(value, e, 0), None, "redis key {k}");
        }
    }
    println!("{} values checked in redis during, {} after", mid.len(), after.len());
}
