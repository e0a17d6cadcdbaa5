//! The chat-bot flow: each frame is checked as it arrives (CheckFrame, which does not
//! consume the challenge) and only its signed attestation is kept; VerifyChallenge then
//! judges the attestations as it would the frames. Altered or foreign attestations are
//! refused without consuming the challenge.

use ekyc_proto::v1 as pb;
use pb::ReasonCode as R;

use crate::common::{Server, codes, create, good_frames};

const PERSON: &str = "obama_1.jpg";

async fn check(
    client: &mut ekyc_proto::v1::liveness_client::LivenessClient<tonic::transport::Channel>,
    c: &pb::Challenge,
    f: pb::Frame,
) -> Result<pb::CheckFrameResponse, tonic::Status> {
    client.check_frame(pb::CheckFrameRequest { challenge_id: c.challenge_id.clone(), frame: Some(f) }).await.map(|r| r.into_inner())
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
