//! A real `redis-server` for tests, on a free loopback port, with no persistence. It can be
//! stopped and started again on the same port to test outages; it is killed on drop, and a
//! watchdog kills it within a second of the test process ending, for servers that are never
//! dropped (those held in a `static` shared by a test binary's tests).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// `sh` polling this process; kills the server once this process is gone.
    watchdog: Option<Child>,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts a server with extra arguments (`--requirepass`, `--tls-port`, ...) and waits
    /// until its plain port answers PING (or asks for authentication).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let mut s = RedisServer { port: free_port(), child: None, watchdog: None, extra: extra.iter().map(|a| a.to_string()).collect() };
        s.restart();
        s
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (SIGKILL: an outage, not a shutdown) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/setup.sh installs it)");
        // Statics are never dropped: without the watchdog a server held in one outlives the
        // test binary (and holds whatever file descriptors it inherited, such as a lock).
        let watchdog = Command::new("sh")
            .args([
                "-c",
                "while kill -0 \"$0\" 2>/dev/null; do sleep 1; done; kill -9 \"$1\" 2>/dev/null",
                &std::process::id().to_string(),
                &child.id().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs");
        self.child = Some(child);
        self.watchdog = Some(watchdog);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            assert!(Instant::now() < deadline, "redis-server did not answer on port {} within 10 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH")
    }
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
