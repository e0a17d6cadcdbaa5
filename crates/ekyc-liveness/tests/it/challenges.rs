//! Challenges end to end: a correct answer passes; each way of cheating or failing gets its
//! reason code; forged and reused challenges are refused.

use ekyc_liveness::LivenessConfig;
use ekyc_proto::v1 as pb;
use pb::ReasonCode as R;

use crate::common::{Server, answer, codes, create, forget_replays, frame, good_frames, turned, verify};

const PERSON: &str = "obama_1.jpg";

#[tokio::test]
async fn challenges_are_random_and_say_what_to_do() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let c = client
        .create_challenge(pb::CreateChallengeRequest {
            step_count: 4,
            locale: "ja-JP".into(),
            client_reference: Some("chat-user-42".into()),
        })
        .await
        .expect("ok")
        .into_inner();
    assert_eq!(c.steps.len(), 4);
    assert_eq!(c.steps[0].pose(), pb::PoseStep::Frontal);
    assert!(c.steps.windows(2).all(|w| w[0].pose != w[1].pose));
    assert!(c.steps.iter().all(|s| !s.instruction_ja.is_empty() && !s.instruction_en.is_empty() && s.instruction == s.instruction_ja));
    assert_eq!(c.expires_at_unix_ms - c.issued_at_unix_ms, LivenessConfig::default().ttl_s as i64 * 1000);
    assert_eq!(c.client_reference.as_deref(), Some("chat-user-42"));
    let other = create(&mut client, 4).await;
    assert_ne!(c.challenge_id, other.challenge_id);
    for bad in [1, 6] {
        let e = client.create_challenge(pb::CreateChallengeRequest { step_count: bad, ..Default::default() }).await.expect_err("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }
}

#[tokio::test]
async fn a_correct_answer_passes_and_a_second_use_fails() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let c = create(&mut client, 3).await;
    let r = verify(&mut client, &c, good_frames(&c, PERSON)).await;
    assert!(r.passed, "{:#?}", r.reasons);
    assert!(r.liveness_score > 0.5, "{}", r.liveness_score);
    assert_eq!(r.steps.len(), 3);
    for s in &r.steps[1..] {
        assert!(s.reached && s.passed, "{s:?}");
        assert!(s.reached_angle_deg >= s.target_angle_deg);
        // The rendered turn was 25 degrees; the test kit's per-frame tolerance for synthesised
        // turns is 2 + 0.3 x the angle (measured over all the development photos).
        assert!(
            (s.reached_angle_deg - 25.0).abs() <= 9.5,
            "step {} ({:?}) measured {} for a 25 degree turn",
            s.step_index,
            s.pose(),
            s.reached_angle_deg
        );
        assert!(s.similarity_to_reference.is_some_and(|x| x >= ekyc_vision::VisionConfig::default().match_threshold));
    }
    assert_eq!(r.frame_digests.len(), 3);
    assert!(r.frame_digests.iter().all(|d| d.sha256.len() == 64));
    assert_eq!(r.reference_embedding.as_ref().map(|e| e.values.len()), Some(128));

    let again = verify(&mut client, &c, good_frames(&c, PERSON)).await;
    assert!(!again.passed);
    assert_eq!(codes(&again), vec![R::AlreadyUsed]);
}

#[tokio::test]
async fn each_way_of_failing_has_its_reason() {
    let server = Server::start().await;
    let mut client = server.client().await;
    // Each case sends the same person's frames in a new challenge; the replay memory is
    // cleared between cases so that each fails for its own reason only.

    // Wrong order: the frames of steps 1 and 2 swapped in the request.
    let c = create(&mut client, 3).await;
    let mut f = good_frames(&c, PERSON);
    f.swap(1, 2);
    let r = verify(&mut client, &c, f).await;
    assert!(!r.passed && codes(&r).contains(&R::StepOutOfOrder), "{:?}", codes(&r));

    // Wrong order by capture time, even when the list is in order.
    forget_replays(&server).await;
    let c = create(&mut client, 3).await;
    let mut f = good_frames(&c, PERSON);
    for (k, t) in [(0, 1000), (1, 3000), (2, 2000)] {
        f[k].client_capture_unix_ms = Some(c.issued_at_unix_ms + t);
    }
    let r = verify(&mut client, &c, f).await;
    assert!(codes(&r).contains(&R::StepOutOfOrder), "{:?}", codes(&r));

    // A missing step.
    forget_replays(&server).await;
    let c = create(&mut client, 3).await;
    let mut f = good_frames(&c, PERSON);
    f.pop();
    let r = verify(&mut client, &c, f).await;
    assert!(!r.passed && codes(&r).contains(&R::StepMissing), "{:?}", codes(&r));

    // Too small an angle on step 1.
    forget_replays(&server).await;
    let c = create(&mut client, 3).await;
    let mut f = good_frames(&c, PERSON);
    f[1] = frame(answer(PERSON, c.steps[1].pose(), 5.0), 1);
    let r = verify(&mut client, &c, f).await;
    assert!(!r.passed && codes(&r).contains(&R::PoseNotReached), "{:?}", codes(&r));
    assert!(r.steps[1].reached_angle_deg < r.steps[1].target_angle_deg);

    // Another person in step 2.
    forget_replays(&server).await;
    let c = create(&mut client, 3).await;
    let mut f = good_frames(&c, PERSON);
    f[2] = frame(answer("rose_leslie_2.jpg", c.steps[2].pose(), 25.0), 2);
    let r = verify(&mut client, &c, f).await;
    assert!(!r.passed && codes(&r).contains(&R::FaceChanged), "{:?}", codes(&r));
    assert_eq!(r.liveness_score, 0.0);

    // A repeated frame: the same bytes, and the same pixels in another encoding.
    forget_replays(&server).await;
    let c = create(&mut client, 3).await;
    let mut f = good_frames(&c, PERSON);
    f[2] = frame(f[1].image.as_ref().expect("image").data.clone(), 2);
    let r = verify(&mut client, &c, f).await;
    assert!(!r.passed && codes(&r).contains(&R::ReplayedFrame), "{:?}", codes(&r));
    forget_replays(&server).await;
    let c = create(&mut client, 3).await;
    let mut f = good_frames(&c, PERSON);
    let pixels = image::load_from_memory(&f[0].image.as_ref().expect("image").data).expect("decodes");
    let mut png = std::io::Cursor::new(Vec::new());
    pixels.write_to(&mut png, image::ImageFormat::Png).expect("png");
    f.push(frame(png.into_inner(), 0));
    let r = verify(&mut client, &c, f).await;
    assert!(codes(&r).contains(&R::ReplayedFrame), "{:?}", codes(&r));
}

#[tokio::test]
async fn a_mirrored_frame_does_not_pass_as_the_other_turn() {
    let server = Server::start().await;
    let mut client = server.client().await;
    // Five steps give both turns most of the time; draw until they do.
    let mut c = create(&mut client, 5).await;
    let both = |c: &pb::Challenge| {
        c.steps.iter().any(|s| s.pose() == pb::PoseStep::TurnLeft) && c.steps.iter().any(|s| s.pose() == pb::PoseStep::TurnRight)
    };
    for _ in 0..50 {
        if both(&c) {
            break;
        }
        c = create(&mut client, 5).await;
    }
    assert!(both(&c), "no challenge with both turns in 50 draws");
    let left = turned(PERSON, 25.0, 0.0);
    let mirrored = {
        let img = image::load_from_memory(&left).expect("decodes").to_rgb8();
        ekyc_testkit::headturn::encode_jpeg(&image::imageops::flip_horizontal(&img), 92).expect("jpeg")
    };
    let frames: Vec<pb::Frame> = c
        .steps
        .iter()
        .map(|s| match s.pose() {
            pb::PoseStep::TurnLeft => frame(left.clone(), s.index as usize),
            pb::PoseStep::TurnRight => frame(mirrored.clone(), s.index as usize),
            pose => frame(answer(PERSON, pose, 25.0), s.index as usize),
        })
        .collect();
    let r = verify(&mut client, &c, frames).await;
    assert!(!r.passed, "a mirrored left turn passed as a right turn");
    assert!(codes(&r).contains(&R::MirroredFrame), "{:?}", codes(&r));
    // The right turn's pose itself was reached: only the mirror check catches it.
    let right = r.steps.iter().find(|s| s.pose() == pb::PoseStep::TurnRight).expect("step");
    assert!(right.reached, "{right:?}");
}

#[tokio::test]
async fn forged_expired_and_malformed_challenges_are_refused_before_image_work() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let c = create(&mut client, 3).await;
    let frames = good_frames(&c, PERSON);
    let before = server.engine.frames_analysed();
    // Altering the steps (to make them easier) or the expiry breaks the HMAC.
    let parts: Vec<&str> = c.challenge_id.split('.').collect();
    let forged = [parts[0], parts[1], parts[2], "99999999999999", parts[4], parts[5]].join(".");
    let mut fake = c.clone();
    fake.challenge_id = forged;
    let r = verify(&mut client, &fake, frames.clone()).await;
    assert_eq!(codes(&r), vec![R::ChallengeInvalid]);
    fake.challenge_id = "v1.AAAAAAAAAAAAAAAAAAAAAA.1.2.FL.AAAA".into();
    assert_eq!(codes(&verify(&mut client, &fake, frames.clone()).await), vec![R::ChallengeInvalid]);
    assert_eq!(server.engine.frames_analysed(), before, "no image was analysed for a forged id");

    // Bad input is INVALID_ARGUMENT and does not consume the challenge.
    let mut bad = frames.clone();
    bad[1].step_index = 7;
    let e = client
        .verify_challenge(pb::VerifyChallengeRequest { challenge_id: c.challenge_id.clone(), frames: bad, frame_attestations: vec![] })
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("frames[1].step_index"), "{}", e.message());
    let mut empty = frames.clone();
    empty[2].image = None;
    let e = client
        .verify_challenge(pb::VerifyChallengeRequest { challenge_id: c.challenge_id.clone(), frames: empty, frame_attestations: vec![] })
        .await
        .expect_err("refused");
    assert!(e.message().contains("IMAGE_EMPTY: frames[2]"), "{}", e.message());
    let r = verify(&mut client, &c, frames).await;
    assert!(
        r.passed,
        "the challenge survived the bad requests: {:?} {:?}",
        codes(&r),
        r.steps.iter().map(|s| (s.pose(), s.reached_angle_deg)).collect::<Vec<_>>()
    );

    // Expired.
    let short =
        Server::start_with(ekyc_testkit::redis_server::RedisServer::start(), |cfg| ekyc_liveness::LivenessConfig { ttl_s: 1, ..cfg }).await;
    let mut sc = short.client().await;
    let c = create(&mut sc, 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let r = verify(&mut sc, &c, good_frames(&c, PERSON)).await;
    assert_eq!(codes(&r), vec![R::Expired]);
}

#[tokio::test]
async fn two_concurrent_verifications_of_one_challenge_process_exactly_one() {
    let server = Server::start().await;
    let client = server.client().await;
    let c = create(&mut client.clone(), 2).await;
    let frames = good_frames(&c, PERSON);
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (mut cl, c, f) = (client.clone(), c.clone(), frames.clone());
            tokio::spawn(async move { verify(&mut cl, &c, f).await })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.expect("task"));
    }
    let processed = results.iter().filter(|r| !r.steps.is_empty()).count();
    let used = results.iter().filter(|r| codes(r) == vec![R::AlreadyUsed]).count();
    assert_eq!((processed, used), (1, 1), "{results:#?}");
    assert!(results.iter().any(|r| r.passed));
}

/// Every pose the challenges can ask for, answered by the synthesised frames the tests use,
/// reaches its angle within the test kit's tolerance, so the random steps above cannot
/// draw an unlucky pose. Prints the per-step angle errors.
#[tokio::test]
async fn synthesised_frames_reach_every_pose() {
    use ekyc_vision::{AnalyzeOptions, FacePipeline, VisionConfig};
    let p = tokio::task::spawn_blocking(|| FacePipeline::new(VisionConfig::default()).expect("models")).await.expect("ran");
    let pose_of = |bytes: Vec<u8>| p.analyze_bytes(&bytes, AnalyzeOptions { embed: false, largest_only: true }).expect("runs")[0].pose;
    for person in [PERSON, "rose_leslie_2.jpg", "biden_2.jpg"] {
        let front = pose_of(answer(person, pb::PoseStep::Frontal, 25.0));
        for (pose, angle) in [
            (pb::PoseStep::TurnLeft, 25.0f32),
            (pb::PoseStep::TurnRight, 25.0),
            (pb::PoseStep::LookUp, 25.0),
            (pb::PoseStep::LookDown, 25.0),
            (pb::PoseStep::TurnLeft, 15.0),
            (pb::PoseStep::LookUp, 10.0),
        ] {
            let m = pose_of(answer(person, pose, angle));
            let reached = match pose {
                pb::PoseStep::TurnLeft => m.yaw - front.yaw,
                pb::PoseStep::TurnRight => front.yaw - m.yaw,
                pb::PoseStep::LookUp => m.pitch - front.pitch,
                _ => front.pitch - m.pitch,
            };
            println!("{person} {pose:?} rendered {angle} measured {reached:.1} error {:+.1}", reached - angle);
            assert!((reached - angle).abs() <= 2.0 + 0.3 * angle, "{person} {pose:?} {angle}: measured {reached}");
        }
    }
}
