//! Replays across challenges: a frame used in one challenge and sent again in another is
//! REPLAYED_FRAME (CheckFrame and VerifyChallenge), also re-encoded (perceptual hash of the
//! aligned face crop), while a re-send within its own challenge is not. The perceptual
//! hash's behaviour is measured on the development photos.

use std::sync::Arc;
use std::time::Duration;

use ekyc_liveness::perceptual::FaceHash;
use ekyc_proto::v1 as pb;
use ekyc_runtime::replay::ReplayMemory;
use ekyc_runtime::seal::Keyring;
use ekyc_testkit::dataset::photo;
use ekyc_testkit::headturn::encode_jpeg;
use pb::ReasonCode as R;

use crate::common::{Server, codes, create, frame, good_frames, verify};

/// The face hash of the largest face in `bytes`, as the engine computes it.
fn face_hash(bytes: &[u8]) -> Option<FaceHash> {
    let p = ekyc_testkit::frames::pipeline();
    let img = p.decode(bytes).ok()?;
    let prepared = p.prepare(&img, false).ok()?;
    prepared.first().map(|f| FaceHash::of_crop(&f.crop, p.config().embedder.margin))
}

/// `bytes` decoded, lightly re-noised (deterministic, +-`amp` grey levels) and re-encoded
/// as JPEG at `quality`.
fn reencode(bytes: &[u8], quality: u8, amp: i16) -> Vec<u8> {
    let mut img = image::load_from_memory(bytes).expect("decodes").to_rgb8();
    let mut state = 0x2545_f491_u32;
    for v in img.iter_mut() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = if amp == 0 { 0 } else { (state % (2 * amp as u32 + 1)) as i16 - amp };
        *v = (i16::from(*v) + n).clamp(0, 255) as u8;
    }
    encode_jpeg(&img, quality).expect("jpeg")
}

/// Whether remembering `a` then seeing `b` recognises `b` (what the replay memory does:
/// `a`'s hash is remembered, `b`'s probes are looked up).
fn recognised(a: &FaceHash, b: &FaceHash) -> bool {
    b.probes().contains(&a.value)
}

/// Measured on real photos: copies of one picture (JPEG re-encoded at 75 and 60, re-noised
/// by +-3 grey levels, the same photo at other resolutions, a PNG of a JPEG) are recognised;
/// different photos (of the same person too) and different head poses of one synthesised
/// face are not. Prints the Hamming distances.
#[test]
fn perceptual_hash_survives_reencoding() {
    let singles = [
        "alex_lacamoire_2.jpg",
        "alex_lacamoire_3.jpg",
        "biden_2.jpg",
        "kit_harington_2.jpg",
        "kit_harington_3.jpg",
        "obama_1.jpg",
        "obama_2.jpg",
        "obama_3.jpg",
        "obama_5_720p.jpg",
        "obama_6_small.jpg",
        "rose_leslie_1.jpg",
        "rose_leslie_2.jpg",
    ];
    let mut copies = 0;
    let mut copies_recognised = 0;
    let mut hashes = Vec::new();
    for file in singles {
        let bytes = photo(file).bytes();
        let h = face_hash(&bytes).expect("a face");
        for (quality, amp) in [(75u8, 0i16), (60, 0), (85, 3)] {
            let c = face_hash(&reencode(&bytes, quality, amp)).expect("a face");
            let d = (h.value ^ c.value).count_ones();
            let ok = recognised(&h, &c);
            println!("{file} q{quality} noise {amp}: {d} bits differ, recognised {ok}");
            copies += 1;
            copies_recognised += usize::from(ok);
        }
        hashes.push((file.to_string(), h));
    }
    for (a, b) in
        [("obama_5_720p.jpg", "obama_5_1080p.jpg"), ("obama_5_720p.jpg", "obama_5_480p.jpg"), ("obama_2.jpg", "obama_7_rgba32.png")]
    {
        let (ha, hb) = (face_hash(&photo(a).bytes()).expect("face"), face_hash(&photo(b).bytes()).expect("face"));
        let ok = recognised(&ha, &hb);
        println!("{a} vs {b}: {} bits differ, recognised {ok}", (ha.value ^ hb.value).count_ones());
        copies += 1;
        copies_recognised += usize::from(ok);
    }
    // Synthesised poses of one face: different pictures.
    for (yaw, pitch) in [(0.0, 0.0), (15.0, 0.0), (-15.0, 0.0), (0.0, 10.0), (0.0, -10.0), (25.0, 0.0)] {
        let h = face_hash(&ekyc_testkit::frames::turned("obama_1.jpg", yaw, pitch)).expect("face");
        hashes.push((format!("obama_1 turned {yaw}/{pitch}"), h));
    }
    // obama_1, obama_5_* and obama_6_small are one photograph at several sizes and crops
    // (face_recognition's obama.jpg, obama_720p.jpg, obama_small.jpg), and the synthesised
    // frontal frame re-renders obama_1: copies, not different pictures.
    let one_photo = |n: &str| ["obama_1.jpg", "obama_5_720p.jpg", "obama_6_small.jpg", "obama_1 turned 0/0"].contains(&n);
    let mut min = 64;
    let mut false_matches = Vec::new();
    for (i, (na, a)) in hashes.iter().enumerate() {
        for (nb, b) in &hashes[..i] {
            if one_photo(na) && one_photo(nb) {
                let ok = recognised(a, b) || recognised(b, a);
                println!("{na} vs {nb}: {} bits differ, recognised {ok}", (a.value ^ b.value).count_ones());
                continue;
            }
            let d = (a.value ^ b.value).count_ones();
            min = min.min(d);
            if recognised(a, b) || recognised(b, a) {
                false_matches.push(format!("{na} ~ {nb} ({d} bits)"));
            }
        }
    }
    println!(
        "copies recognised: {copies_recognised}/{copies}; different pictures: smallest distance {min} bits, false matches {false_matches:?}"
    );
    // Probes flip at most WEAK_BITS bits: pictures further apart can never be taken for each
    // other.
    assert!(min as usize > ekyc_liveness::perceptual::WEAK_BITS, "different pictures only {min} bits apart");
    assert!(false_matches.is_empty(), "different pictures taken for replays: {false_matches:?}");
    assert!(copies_recognised * 10 >= copies * 8, "only {copies_recognised} of {copies} copies recognised");
}

async fn check(server: &Server, c: &pb::Challenge, f: pb::Frame) -> pb::CheckFrameResponse {
    let mut client = server.client().await;
    client
        .check_frame(pb::CheckFrameRequest { challenge_id: c.challenge_id.clone(), frame: Some(f), ..Default::default() })
        .await
        .expect("checked")
        .into_inner()
}

fn replayed(r: &pb::StepResult) -> bool {
    r.reasons.iter().any(|x| x.code() == R::ReplayedFrame && x.blocking)
}

/// REPLAYED_FRAME as a warning only (a face-hash match, by default).
fn resembles(r: &pb::StepResult) -> bool {
    r.reasons.iter().any(|x| x.code() == R::ReplayedFrame && !x.blocking)
}

#[tokio::test]
async fn a_frame_from_an_earlier_challenge_is_a_replay_also_reencoded() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let person = "obama_1.jpg";

    // First use: passes.
    let a = create(&mut client, 3).await;
    let first = good_frames(&a, person);
    let r = verify(&mut client, &a, first.clone()).await;
    assert!(r.passed, "{:?}", codes(&r));

    // VerifyChallenge path: the same frontal frame in a second challenge.
    let b = create(&mut client, 3).await;
    let mut frames = good_frames(&b, "biden_2.jpg");
    frames[0] = first[0].clone();
    let r = verify(&mut client, &b, frames).await;
    assert!(!r.passed && codes(&r).contains(&R::ReplayedFrame), "{:?}", codes(&r));
    assert!(!r.steps[0].passed && replayed(&r.steps[0]), "the replayed frame fails its step: {:?}", r.steps[0]);
    assert_eq!(r.liveness_score, 0.0);

    // CheckFrame path, and the attestation it returns keeps the verdict.
    let c = create(&mut client, 2).await;
    let checked = check(&server, &c, first[0].clone()).await;
    let step = checked.result.expect("a step result");
    assert!(!step.passed && replayed(&step), "{step:?}");
    let r = client
        .verify_challenge(pb::VerifyChallengeRequest {
            challenge_id: c.challenge_id.clone(),
            frames: vec![],
            frame_attestations: vec![checked.attestation],
        })
        .await
        .expect("verdict")
        .into_inner();
    assert!(!r.passed && codes(&r).contains(&R::ReplayedFrame), "{:?}", codes(&r));

    // Re-encoded at another quality and lightly re-noised: other bytes and pixels, the same
    // picture (perceptual hash), on both paths: reported, but by default not blocking (the
    // same person photographed again in the same setting can match too; see
    // `face_hash_replay_blocks`, tested blocking below).
    let copy = reencode(&first[0].image.as_ref().expect("image").data, 70, 2);
    assert_ne!(copy, first[0].image.as_ref().expect("image").data);
    let d = create(&mut client, 2).await;
    let step = check(&server, &d, frame(copy.clone(), 0)).await.result.expect("a step result");
    assert!(resembles(&step) && !replayed(&step), "re-encoded copy, CheckFrame: {step:?}");
    let e = create(&mut client, 2).await;
    let mut frames = good_frames(&e, "rose_leslie_2.jpg");
    frames[0] = frame(reencode(&first[0].image.as_ref().expect("image").data, 80, 1), 0);
    let r = verify(&mut client, &e, frames).await;
    assert!(resembles(&r.steps[0]) && !replayed(&r.steps[0]), "re-encoded copy, VerifyChallenge: {:?}", codes(&r));
    // A warning, not a failure: every frame a re-encoded copy of the first challenge's
    // (same person, other bytes), and the verdict stands on the other checks.
    let g = create(&mut client, 2).await;
    let frames: Vec<pb::Frame> = good_frames(&g, person)
        .into_iter()
        .enumerate()
        .map(|(i, f)| frame(reencode(&f.image.as_ref().expect("image").data, 85, 3), i))
        .collect();
    let r = verify(&mut client, &g, frames).await;
    assert!(resembles(&r.steps[0]) && !replayed(&r.steps[0]), "the frontal frame resembles the first challenge's: {r:?}");
    assert!(r.passed && r.liveness_score > 0.0, "a non-blocking resemblance failed the challenge: {r:?}");
}

#[tokio::test]
async fn a_frame_sent_again_within_its_own_challenge_is_not_a_cross_challenge_replay() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let c = create(&mut client, 3).await;
    let frames = good_frames(&c, "obama_1.jpg");
    // Each frame checked twice (a retried upload), then the images verified: all one
    // challenge, so nothing is a replay.
    for f in frames.iter().chain(frames.iter()) {
        let step = check(&server, &c, f.clone()).await.result.expect("a step result");
        assert!(step.passed && !replayed(&step), "{step:?}");
    }
    let r = verify(&mut client, &c, frames.clone()).await;
    assert!(r.passed, "{:?}", codes(&r));
    // And once the challenge is used, the same frames in another challenge are replays.
    let again = create(&mut client, 3).await;
    let mut f = good_frames(&again, "biden_2.jpg");
    f[0] = frames[0].clone();
    let r = verify(&mut client, &again, f).await;
    assert!(codes(&r).contains(&R::ReplayedFrame), "{:?}", codes(&r));
}

/// The Redis backend: owners tell a re-send from a replay, and a value that does not open
/// (altered in Redis) counts as seen.
#[tokio::test]
async fn redis_replay_memory_fails_closed_on_altered_values() {
    let redis = ekyc_testkit::redis_server::RedisServer::start();
    let keys = Arc::new(Keyring::ephemeral().expect("keys"));
    let client = ekyc_runtime::redis::Redis::new(&redis.url(), Duration::from_secs(2)).expect("url");
    let m = ReplayMemory::redis(client.clone(), Arc::clone(&keys));
    let (d1, d2, a, b) = ([1u8; 32], [2u8; 32], [10u8; 32], [11u8; 32]);
    let w = Duration::from_secs(60);
    assert_eq!(m.check_and_remember(&[d1], &a, w).await, Ok(None));
    assert_eq!(m.check_and_remember(&[d1], &a, w).await, Ok(None), "the same owner");
    assert_eq!(m.check_and_remember(&[d2, d1], &b, w).await, Ok(Some(1)), "another owner");
    assert_eq!(m.seen_elsewhere(&[[3u8; 32], d1], &b).await, Ok(Some(1)));
    assert_eq!(m.seen_elsewhere(&[[3u8; 32]], &b).await, Ok(None));
    let key = format!("ekyc:replay:{}", hex::encode(d1));
    let mut ttl = redis::cmd("PTTL");
    ttl.arg(&key);
    let ms: i64 = client.run(ttl).await.expect("pttl");
    assert!(ms > 50_000 && ms <= 60_000, "remembered for the window: {ms} ms");
    // The owner's own value, altered: fails closed even for that owner.
    let mut get = redis::cmd("GET");
    get.arg(&key);
    let mut v: Vec<u8> = client.run(get).await.expect("get");
    let last = v.len() - 1;
    v[last] ^= 1;
    let mut set = redis::cmd("SET");
    set.arg(&key).arg(v);
    let _: String = client.run(set).await.expect("set");
    assert_eq!(m.check_and_remember(&[d1], &a, w).await, Ok(Some(0)));
    assert_eq!(m.seen_elsewhere(&[d1], &a).await, Ok(Some(0)));
}

/// One machine without Redis: the in-process replay memory recognises the frame too; with
/// `face_hash_replay_blocks` a re-encoded copy fails its step.
#[tokio::test]
async fn without_redis_the_in_process_memory_recognises_replays() {
    let server = Server::start_with(ekyc_testkit::redis_server::RedisServer::start(), |cfg| ekyc_liveness::LivenessConfig {
        redis_url: None,
        replay_capacity: 1000,
        face_hash_replay_blocks: true,
        ..cfg
    })
    .await;
    let mut client = server.client().await;
    let a = create(&mut client, 2).await;
    let first = good_frames(&a, "obama_1.jpg");
    let r = verify(&mut client, &a, first.clone()).await;
    assert!(r.passed, "{:?}", codes(&r));
    let b = create(&mut client, 2).await;
    let mut frames = good_frames(&b, "biden_2.jpg");
    frames[0] = frame(reencode(&first[0].image.as_ref().expect("image").data, 75, 0), 0);
    let r = verify(&mut client, &b, frames).await;
    assert!(!r.passed && replayed(&r.steps[0]), "{:?}", codes(&r));
    assert!(crate::common::redis_dump(&server).await.is_empty(), "nothing went to Redis");
}
