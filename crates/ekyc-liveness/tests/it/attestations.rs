//! The chat-bot flow: each frame is checked as it arrives (CheckFrame, which does not
//! consume the challenge) and only its signed attestation is kept; VerifyChallenge then
//! judges the attestations as it would the frames. Altered or foreign attestations are
//! refused without consuming the challenge.

use ekyc_proto::v1 as pb;
use pb::ReasonCode as R;

use crate::common::{Server, codes, create, frame, good_frames, turned};

const PERSON: &str = "obama_1.jpg";

async fn check(
    client: &mut ekyc_proto::v1::liveness_client::LivenessClient<tonic::transport::Channel>,
    c: &pb::Challenge,
    f: pb::Frame,
) -> Result<pb::CheckFrameResponse, tonic::Status> {
    client
        .check_frame(pb::CheckFrameRequest { challenge_id: c.challenge_id.clone(), frame: Some(f), ..Default::default() })
        .await
        .map(|r| r.into_inner())
}

async fn verify_attested(
    client: &mut ekyc_proto::v1::liveness_client::LivenessClient<tonic::transport::Channel>,
    c: &pb::Challenge,
    frames: Vec<pb::Frame>,
    attestations: Vec<Vec<u8>>,
) -> pb::VerifyChallengeResponse {
    client
        .verify_challenge(pb::VerifyChallengeRequest { challenge_id: c.challenge_id.clone(), frames, frame_attestations: attestations })
        .await
        .expect("verdict")
        .into_inner()
}

#[tokio::test]
async fn frames_checked_one_by_one_verify_from_their_attestations() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let c = create(&mut client, 3).await;
    let frames = good_frames(&c, PERSON);
    let mut attestations = Vec::new();
    for f in frames.clone() {
        let step = f.step_index as usize;
        let r = check(&mut client, &c, f).await.expect("checked");
        let result = r.result.expect("a step result");
        assert_eq!(result.step_index as usize, step);
        assert!(result.reached && result.passed, "step {step}: {result:?}");
        assert!(result.similarity_to_reference.is_none());
        assert_eq!(r.embedding.map(|e| e.values.len()), Some(128), "SFace embeds in 128 dimensions");
        assert!(r.attestation.len() <= 16 * 1024, "{} bytes", r.attestation.len());
        attestations.push(r.attestation);
    }
    // Checking consumed nothing: the images are gone, the attestations suffice.
    let v = verify_attested(&mut client, &c, vec![], attestations.clone()).await;
    assert!(v.passed, "{:?}", codes(&v));
    assert_eq!(v.frame_digests.len(), 3);
    assert_eq!(v.frame_digests[1].sha256, {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&frames[1].image.as_ref().expect("image").data))
    });
    let again = verify_attested(&mut client, &c, vec![], attestations).await;
    assert_eq!(codes(&again), vec![R::AlreadyUsed]);
    let e = check(&mut client, &c, frames[0].clone()).await.expect_err("used");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().starts_with("ALREADY_USED"), "{}", e.message());
}

#[tokio::test]
async fn altered_foreign_and_replayed_attestations_are_caught() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let c = create(&mut client, 3).await;
    let other = create(&mut client, 3).await;
    let frames = good_frames(&c, PERSON);
    let mut attestations = Vec::new();
    for f in frames.clone() {
        attestations.push(check(&mut client, &c, f).await.expect("checked").attestation);
    }
    let foreign = check(&mut client, &other, good_frames(&other, PERSON).remove(1)).await.expect("checked").attestation;

    // A changed byte in the sealed blob.
    let mut altered = attestations.clone();
    let n = altered[1].len();
    altered[1][n / 2] ^= 0x01;
    let r = verify_attested(&mut client, &c, vec![], altered).await;
    assert_eq!(codes(&r), vec![R::ChallengeInvalid]);
    // An attestation made for another challenge.
    let mut mixed = attestations.clone();
    mixed[2] = foreign;
    let r = verify_attested(&mut client, &c, vec![], mixed).await;
    assert_eq!(codes(&r), vec![R::ChallengeInvalid]);
    let e = check(&mut client, &pb::Challenge { challenge_id: format!("{}x", c.challenge_id), ..c.clone() }, frames[0].clone())
        .await
        .expect_err("forged");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().starts_with("CHALLENGE_INVALID"), "{}", e.message());

    // None of that consumed the challenge; a frame attested twice is a replay.
    let mut replayed = attestations.clone();
    replayed[2] = replayed[1].clone();
    let r = verify_attested(&mut client, &c, vec![], replayed).await;
    assert!(!r.passed && codes(&r).contains(&R::ReplayedFrame), "{:?} {:?}", codes(&r), r.reasons);

    // Frames and attestations mix: the first steps checked one by one, the last step's
    // frame sent with VerifyChallenge (the same frames as above, so the replay memory is
    // cleared first). Steps count in the order the service received their frames, and a
    // frame sent with VerifyChallenge arrives after every checked one.
    crate::common::forget_replays(&server).await;
    let c = create(&mut client, 3).await;
    let frames = good_frames(&c, PERSON);
    let a0 = check(&mut client, &c, frames[0].clone()).await.expect("checked").attestation;
    let a1 = check(&mut client, &c, frames[1].clone()).await.expect("checked").attestation;
    let r = verify_attested(&mut client, &c, vec![frames[2].clone()], vec![a0.clone(), a1.clone()]).await;
    assert!(r.passed, "{:?}", codes(&r));

    // The frontal frame arriving last (after the turns were checked) is out of order.
    crate::common::forget_replays(&server).await;
    let c = create(&mut client, 3).await;
    let frames = good_frames(&c, PERSON);
    let a1 = check(&mut client, &c, frames[1].clone()).await.expect("checked").attestation;
    let a2 = check(&mut client, &c, frames[2].clone()).await.expect("checked").attestation;
    let r = verify_attested(&mut client, &c, vec![frames[0].clone()], vec![a1, a2]).await;
    assert!(!r.passed && codes(&r).contains(&R::StepOutOfOrder), "{:?}", codes(&r));
}

async fn check_from(
    client: &mut ekyc_proto::v1::liveness_client::LivenessClient<tonic::transport::Channel>,
    c: &pb::Challenge,
    f: pb::Frame,
    reference: &[u8],
) -> Result<pb::CheckFrameResponse, tonic::Status> {
    let req = pb::CheckFrameRequest { challenge_id: c.challenge_id.clone(), frame: Some(f), reference_attestation: reference.to_vec() };
    client.check_frame(req).await.map(|r| r.into_inner())
}

/// A challenge of two steps whose second is a turn to the left.
async fn frontal_then_left(client: &mut ekyc_proto::v1::liveness_client::LivenessClient<tonic::transport::Channel>) -> pb::Challenge {
    for _ in 0..200 {
        let c = create(client, 2).await;
        if c.steps[1].pose() == pb::PoseStep::TurnLeft {
            return c;
        }
    }
    panic!("no challenge with a left turn in 200 draws");
}

/// A web page stops turning as soon as a step is satisfied, so a step judged from a
/// straight-ahead pose at CheckFrame but from the real frontal frame at VerifyChallenge was
/// "satisfied" and then refused whenever the person's frontal frame was already turned a
/// little the same way. With the frontal frame's attestation as the reference, CheckFrame
/// measures the turn as VerifyChallenge does.
#[tokio::test]
async fn a_turn_is_measured_from_the_kept_frontal_frame_as_verify_measures_it() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let c = frontal_then_left(&mut client).await;
    // The frontal frame already turned 9 degrees to the left; the step's frame 19 degrees:
    // past the 15-degree target from straight ahead, 10 degrees from the frontal frame.
    let frontal = frame(turned(PERSON, 9.0, 0.0), 0);
    let small_turn = frame(turned(PERSON, 19.0, 0.0), 1);
    let f0 = check(&mut client, &c, frontal.clone()).await.expect("checked");
    let r0 = f0.result.expect("result");
    assert!(r0.passed, "the frontal frame passes its step: {r0:?}");

    let provisional = check(&mut client, &c, small_turn.clone()).await.expect("checked").result.expect("result");
    assert!(provisional.reached, "from straight ahead the turn is {} degrees: {provisional:?}", provisional.reached_angle_deg);
    let judged = check_from(&mut client, &c, small_turn.clone(), &f0.attestation).await.expect("checked");
    let r1 = judged.result.clone().expect("result");
    let yaw = |r: &pb::StepResult| r.measured_pose.as_ref().expect("a pose").yaw_deg;
    assert!((r1.reached_angle_deg - (yaw(&r1) - yaw(&r0))).abs() < 1e-3, "measured from the frontal frame: {r1:?} {r0:?}");
    assert!(!r1.reached && !r1.passed, "{r1:?}");
    assert!(r1.reasons.iter().any(|x| x.code() == R::PoseNotReached && x.blocking), "{:?}", r1.reasons);
    let sim = r1.similarity_to_reference.expect("compared with the frontal face");
    assert!(sim >= judged.same_person_threshold, "the same person: {sim}");

    // VerifyChallenge judges those two attestations exactly so.
    let v = verify_attested(&mut client, &c, vec![], vec![f0.attestation.clone(), judged.attestation.clone()]).await;
    assert!(!v.passed, "{:?}", codes(&v));
    assert!(codes(&v).contains(&R::PoseNotReached), "{:?}", codes(&v));
    assert!((v.steps[1].reached_angle_deg - r1.reached_angle_deg).abs() < 1e-3, "{:?} vs {r1:?}", v.steps[1]);

    // A turn far enough from the frontal frame is satisfied at CheckFrame and passes.
    crate::common::forget_replays(&server).await;
    let c = frontal_then_left(&mut client).await;
    let f0 = check(&mut client, &c, frontal.clone()).await.expect("checked");
    let full_turn = frame(turned(PERSON, 33.0, 0.0), 1);
    let judged = check_from(&mut client, &c, full_turn, &f0.attestation).await.expect("checked");
    let r1 = judged.result.clone().expect("result");
    assert!(r1.reached && r1.passed, "{r1:?}");
    let v = verify_attested(&mut client, &c, vec![], vec![f0.attestation.clone(), judged.attestation.clone()]).await;
    assert!(v.passed, "{:?}", codes(&v));
}

#[tokio::test]
async fn a_reference_that_is_not_this_challenges_frontal_frame_is_refused() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let c = create(&mut client, 3).await;
    let other = create(&mut client, 3).await;
    let frames = good_frames(&c, PERSON);
    let a0 = check(&mut client, &c, frames[0].clone()).await.expect("checked").attestation;
    let a1 = check(&mut client, &c, frames[1].clone()).await.expect("checked").attestation;
    let foreign = check(&mut client, &other, frame(turned(PERSON, 2.0, 0.0), 0)).await.expect("checked").attestation;

    let e = check_from(&mut client, &c, frames[2].clone(), &a1).await.expect_err("a turned frame is no reference");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("step 0"), "{}", e.message());
    let e = check_from(&mut client, &c, frames[2].clone(), &foreign).await.expect_err("another challenge's frame");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().starts_with("CHALLENGE_INVALID"), "{}", e.message());
    let mut altered = a0.clone();
    let n = altered.len();
    altered[n / 2] ^= 0x01;
    let e = check_from(&mut client, &c, frames[2].clone(), &altered).await.expect_err("altered");
    assert!(e.message().starts_with("CHALLENGE_INVALID"), "{}", e.message());
    // None of that consumed the challenge: the real reference still works.
    let r = check_from(&mut client, &c, frames[2].clone(), &a0).await.expect("checked").result.expect("result");
    assert!(r.passed && r.similarity_to_reference.is_some(), "{r:?}");
}
