//! llama.cpp's server as packaged by llama-cpp-python (`python -m llama_cpp.server`), on a free
//! port of 127.0.0.1 over the default model, for tests against a server no one here wrote.
//!
//! Enabled by `LABFLOW_LLAMA_SERVER_PYTHON`: a python with `llama-cpp-python[server]` installed.
//! `.ci/run` does not install it (a source build of llama.cpp: 23 minutes measured on the
//! project's 2-core machine), so without it the tests print SKIPPED and pass.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A running server, killed on drop.
pub struct LlamaServer {
    child: Child,
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The python to run the server with, or `None` after a SKIPPED line naming `what` the test
/// would check.
pub fn python(what: &str) -> Option<String> {
    let python = std::env::var("LABFLOW_LLAMA_SERVER_PYTHON").ok().filter(|p| !p.is_empty());
    if python.is_none() {
        println!(
            "SKIPPED: set LABFLOW_LLAMA_SERVER_PYTHON to a python with llama-cpp-python's server installed \
             (`pip install 'llama-cpp-python[server]'`, a 15-25 minute llama.cpp build, so CI leaves it out) to test {what}"
        );
    }
    python
}

/// Starts the server with weight repacking off: llama-cpp-python 0.3.36's CPU build segfaults in
/// its first decode on this machine's AMX/AVX-512 CPUs with the repacked ("extra buffer") Q4
/// weights, and runs fine without them (they only change speed).
const LAUNCH: &str = "import runpy, sys, llama_cpp.llama_cpp as C\n\
_d = C.llama_model_default_params\n\
def _p():\n    p = _d(); p.use_extra_bufts = False; return p\n\
C.llama_model_default_params = _p\n\
sys.argv[0] = 'llama_cpp.server'\n\
runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)\n";

/// Starts the server over `model` and waits (up to 120 s) until `/v1/models` answers; its output
/// goes to `labflow-llama-server-PORT.log` in the temporary folder.
pub async fn start(python: &str, model: &Path) -> LlamaServer {
    let port = super::free_port();
    let log_path = std::env::temp_dir().join(format!("labflow-llama-server-{port}.log"));
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new(python)
        .args(["-c", LAUNCH, "--model"])
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--n_ctx", "2048"])
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("start the llama.cpp server");
    let server = LlamaServer { child, base_url: format!("http://127.0.0.1:{port}/v1") };
    let probe = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if probe.get(format!("{}/models", server.base_url)).send().await.is_ok_and(|r| r.status().is_success()) {
            return server;
        }
        assert!(Instant::now() < deadline, "llama.cpp server did not come up in 120 s; see {}", log_path.display());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
