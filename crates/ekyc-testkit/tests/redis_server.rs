//! The test Redis server does not outlive the process that started it, even when it is never
//! dropped (as in a `static` shared by a test binary's tests).

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use ekyc_testkit::redis_server::RedisServer;

const LEAK: &str = "EKYC_TEST_LEAK_REDIS";

/// In the child process: starts a server, prints its port, and exits without dropping it.
#[test]
fn leak_a_server_when_asked() {
    if std::env::var_os(LEAK).is_none() {
        return;
    }
    let server = RedisServer::start();
    println!("port={}", server.port());
    std::mem::forget(server);
}

#[test]
fn a_server_that_is_never_dropped_dies_with_its_process() {
    let out = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "leak_a_server_when_asked", "--nocapture", "--test-threads", "1"])
        .env(LEAK, "1")
        .output()
        .expect("the child test runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The harness prints the test's name on the same line.
    let port: u16 = stdout
        .split("port=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the child printed its port: {stdout}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "redis-server on port {port} still answers 10 s after its process ended");
        std::thread::sleep(Duration::from_millis(100));
    }
}
