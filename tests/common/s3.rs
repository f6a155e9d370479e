//! A real S3-compatible server (`s3s-fs`, which checks request signatures) on 127.0.0.1 for
//! tests, and the `labflow` binary pointed at it.
//!
//! `.ci/run` installs `s3s-fs` and sets `LABFLOW_REQUIRE_S3=1`, so in CI a missing server fails
//! the test; elsewhere it is skipped with a message saying how to enable it.

use super::copy_tree;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BUCKET: &str = "labflow-test";
pub const KEY: &str = "labflowtestkey";
pub const SECRET: &str = "labflowtestsecret";

pub struct Server {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    root: tempfile::TempDir,
}

impl Server {
    /// The folder s3s-fs serves: `<root>/<bucket>/<key>` is an object's file.
    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start s3s-fs over a bucket holding the given `(prefix, source folder)` trees.
pub fn start(trees: &[(&str, PathBuf)]) -> Option<Server> {
    if Command::new("s3s-fs").arg("--version").stdout(Stdio::null()).status().is_err() {
        let msg = "s3s-fs not installed: `cargo install s3s-fs@0.14.1 --locked --features binary` (or run .ci/run)";
        if std::env::var("LABFLOW_REQUIRE_S3").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return None;
    }
    let root = tempfile::tempdir().expect("tempdir");
    for (prefix, src) in trees {
        copy_tree(src, &root.path().join(BUCKET).join(prefix));
    }
    let port = super::free_port();
    let child = Command::new("s3s-fs")
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", KEY, "--secret-key", SECRET])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3s-fs");
    let server = Server { child, port, root };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(server)
}

pub fn labflow(server: &Server, args: &[&str]) -> Output {
    command(server).args(args).output().expect("labflow runs")
}

/// The `labflow` binary with the server's credentials and endpoint in its environment.
pub fn command(server: &Server) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_labflow"));
    c.env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", server.port));
    c
}

pub fn url(prefix: &str) -> String {
    format!("s3://{BUCKET}/{prefix}")
}
