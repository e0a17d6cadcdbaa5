//! Presentation-attack detection as the service runs it (PAD on, the shipped models).

use ekyc_liveness::pad::PadConfig;
use ekyc_proto::v1 as pb;
use ekyc_testkit::redis_server::RedisServer;
use pb::ReasonCode as R;

use crate::common::{Server, create, frame, good_frames, verify};

const PERSON: &str = "obama_1.jpg";

async fn pad_server() -> Server {
    Server::start_with(RedisServer::start(), |c| ekyc_liveness::LivenessConfig { pad: PadConfig::default(), ..c }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verdict_says_what_pad_found_and_which_models_ran() {
    let server = pad_server().await;
    let mut client = server.client().await;
    let c = create(&mut client, 3).await;
    let r = verify(&mut client, &c, good_frames(&c, PERSON)).await;
    let pad = r.pad.as_ref().expect("a PAD result");
    assert!((0.0..=1.0).contains(&pad.attack_score), "{pad:?}");
    assert_eq!(pad.threshold, PadConfig::default().threshold);
    assert_eq!(pad.model_ids, vec!["minifasnet-v2-2.7-80x80".to_string(), "minifasnet-v1se-4.0-80x80".to_string()]);
    let roles: Vec<&str> = r.models.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles.iter().filter(|r| **r == "anti_spoofing").count(), 2, "{roles:?}");
    assert!(r.steps.iter().all(|s| s.pad_score.is_some_and(|p| (0.0..=1.0).contains(&p))), "{:?}", r.steps);
    // The score is a confidence, capped by PAD's: never above 1 - attack score.
    assert!(r.liveness_score <= 1.0 - pad.attack_score + 1e-6, "{} vs {}", r.liveness_score, pad.attack_score);
    // PAD on: no PAD_NOT_CHECKED warning.
    assert!(r.reasons.iter().all(|x| x.code != R::PadNotChecked as i32));

    // With PAD off the verdict says so.
    let off = Server::start_with(RedisServer::start(), |c| c).await;
    let mut client = off.client().await;
    let c = create(&mut client, 2).await;
    let r = verify(&mut client, &c, good_frames(&c, PERSON)).await;
    assert!(r.pad.is_none());
    assert!(r.reasons.iter().any(|x| x.code == R::PadNotChecked as i32 && !x.blocking), "{:?}", r.reasons);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_together_and_frames_attested_one_by_one_get_the_same_pad_verdict() {
    let server = pad_server().await;
    let mut client = server.client().await;
    let a = create(&mut client, 3).await;
    let frames = good_frames(&a, PERSON);
    let together = verify(&mut client, &a, frames.clone()).await;
    // A second challenge with the same poses, answered with the same frames one call at a
    // time (the replay memory forgets the first challenge's frames).
    let poses = |c: &pb::Challenge| c.steps.iter().map(|s| s.pose).collect::<Vec<_>>();
    let mut b = create(&mut client, 3).await;
    for _ in 0..200 {
        if poses(&b) == poses(&a) {
            break;
        }
        b = create(&mut client, 3).await;
    }
    assert_eq!(poses(&b), poses(&a), "a challenge with the same poses within 200 draws");
    crate::common::forget_replays(&server).await;
    let mut attestations = Vec::new();
    for f in &frames {
        let r = client
            .check_frame(pb::CheckFrameRequest { challenge_id: b.challenge_id.clone(), frame: Some(f.clone()), ..Default::default() })
            .await
            .expect("checked")
            .into_inner();
        attestations.push(r.attestation);
    }
    let attested = client
        .verify_challenge(pb::VerifyChallengeRequest {
            challenge_id: b.challenge_id.clone(),
            frames: vec![],
            frame_attestations: attestations,
        })
        .await
        .expect("verdict")
        .into_inner();
    let (p, q) = (together.pad.clone().expect("PAD together"), attested.pad.clone().expect("PAD attested"));
    assert!((p.attack_score - q.attack_score).abs() < 1e-4, "{p:?} vs {q:?}");
    assert_eq!(p.species, q.species);
    assert_eq!(p.shading_spread.is_some(), q.shading_spread.is_some());
    assert_eq!(together.passed, attested.passed);
    let pads = |r: &pb::VerifyChallengeResponse| r.steps.iter().map(|s| s.pad_score.unwrap_or(-1.0)).collect::<Vec<_>>();
    for (x, y) in pads(&together).iter().zip(pads(&attested)) {
        assert!((x - y).abs() < 1e-4, "{:?} vs {:?}", pads(&together), pads(&attested));
    }
}

/// A photo with its colour removed, as a monochrome print or a grey-scale screen shows it.
fn grey(bytes: &[u8]) -> Vec<u8> {
    let img = image::load_from_memory(bytes).expect("decodes").to_luma8();
    let rgb = image::DynamicImage::ImageLuma8(img).to_rgb8();
    ekyc_testkit::headturn::encode_jpeg(&rgb, 92).expect("jpeg")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_answered_in_grey_scale_is_refused_as_an_attack() {
    let server = pad_server().await;
    let mut client = server.client().await;
    let c = create(&mut client, 3).await;
    let frames: Vec<pb::Frame> =
        good_frames(&c, PERSON).into_iter().map(|f| frame(grey(&f.image.expect("image").data), f.step_index as usize)).collect();
    let r = verify(&mut client, &c, frames).await;
    assert!(!r.passed, "{:?}", r.reasons);
    let codes: Vec<i32> = r.reasons.iter().filter(|x| x.blocking).map(|x| x.code).collect();
    assert!(codes.contains(&(R::PresentationAttackSuspected as i32)), "{:?}", r.reasons);
    assert!(codes.contains(&(R::PrintAttackSuspected as i32)), "{:?}", r.reasons);
    assert!(r.pad.as_ref().is_some_and(|p| p.attack_score >= p.threshold && p.species == "print"), "{:?}", r.pad);
}
