//! Redis stopped mid-test: calls fail UNAVAILABLE with a message naming the store (not the
//! Redis URL), never a pass; the service recovers when Redis returns.

use std::time::Duration;

use ekyc_proto::v1 as pb;

use crate::common::{Server, create, good_frames};

#[tokio::test]
async fn redis_down_is_unavailable_never_a_pass_and_the_service_recovers() {
    let mut server = Server::start().await;
    let mut client = server.client().await;
    let c = create(&mut client, 2).await;
    let frames = good_frames(&c, "obama_1.jpg");

    server.redis.stop();
    let e = client.create_challenge(pb::CreateChallengeRequest::default()).await.expect_err("no store");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    // Says which store and a correlation id for the server's log; never the Redis URL.
    assert!(e.message().contains("challenge store unavailable (ref "), "{}", e.message());
    assert!(!e.message().contains(&server.redis.url()) && !e.message().contains(&server.redis.port().to_string()), "{}", e.message());
    let e = client
        .verify_challenge(pb::VerifyChallengeRequest {
            challenge_id: c.challenge_id.clone(),
            frames: frames.clone(),
            frame_attestations: vec![],
        })
        .await
        .expect_err("never a pass without the store");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");

    server.redis.restart();
    let mut recovered = None;
    for _ in 0..50 {
        match client.create_challenge(pb::CreateChallengeRequest::default()).await {
            Ok(c) => {
                recovered = Some(c.into_inner());
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::Unavailable);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let c = recovered.expect("the service recovered once Redis returned");
    let r = crate::common::verify(&mut client, &c, good_frames(&c, "obama_1.jpg")).await;
    assert!(r.passed, "{:#?}", r.reasons);
}

/// Redis with `requirepass`: the service reaches it with `redis_password_file` (the
/// password never in the URL).
#[tokio::test]
async fn redis_with_a_password_works_with_the_password_file() {
    let password = "liveness-test-password-0815";
    let redis = ekyc_testkit::redis_server::RedisServer::start_with(&["--requirepass", password]);
    let file = std::env::temp_dir().join(format!("ekyc-liveness-redis-password-{}", std::process::id()));
    std::fs::write(&file, format!("{password}\n")).expect("write the password file");
    let with = file.clone();
    let server = Server::start_with(redis, move |c| ekyc_liveness::LivenessConfig { redis_password_file: Some(with), ..c }).await;
    let mut client = server.client().await;
    let c = create(&mut client, 2).await;
    let r = crate::common::verify(&mut client, &c, good_frames(&c, "obama_1.jpg")).await;
    assert!(r.passed, "{:#?}", r.reasons);
    let _ = std::fs::remove_file(&file);
}
