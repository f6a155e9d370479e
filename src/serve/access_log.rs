//! `labflow serve --access-log FILE`: one JSON line per request, appended, for measuring how busy
//! the teacher was (see `benches/busy.py`, which takes the union of the `[start, end]` intervals).
//!
//! A line: `{"start": 1764000000.123, "end": 1764000002.456, "method": "POST", "endpoint":
//! "/v1/completions", "status": 200, "prompts": 2, "n": 3, "prompt_tokens": 40,
//! "completion_tokens": 600}`. Times are Unix seconds with millisecond precision, taken when the
//! request arrives and when its answer is complete (for a live stream: when its last chunk is
//! ready, or when the client went away). `prompts`, `n` and the token counts come from the
//! teacher's answer and are 0 for requests that did not reach it (errors, `/v1/models`, a
//! stream the client left).
//!
//! The handlers put a [`Served`] into the response's extensions, or for a live stream a
//! [`PendingServed`] that delivers it at the end; [`record`] is the middleware that reads it and
//! writes the line. Lines are written whole with one `write_all` on a file
//! opened for appending, so concurrent requests never interleave within a line.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a request asked of the teacher, attached to its response by the handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Prompts in the request (completions accept a list; chat has one).
    pub prompts: usize,
    /// Choices per prompt.
    pub n: u32,
    /// Prompt tokens over all prompts.
    pub prompt_tokens: u64,
    /// Generated tokens over all choices.
    pub completion_tokens: u64,
}

/// The [`Served`] of a live stream, known only when the stream ends.
#[derive(Debug, Clone)]
pub struct PendingServed(Arc<Mutex<Option<tokio::sync::oneshot::Receiver<Served>>>>);

impl PendingServed {
    /// The sender the stream completes, and the extension the log waits on.
    pub fn channel() -> (tokio::sync::oneshot::Sender<Served>, PendingServed) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (tx, PendingServed(Arc::new(Mutex::new(Some(rx)))))
    }

    fn take(&self) -> Option<tokio::sync::oneshot::Receiver<Served>> {
        match self.0.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

/// An open access log.
#[derive(Debug)]
pub struct AccessLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AccessLog {
    /// Open `path` for appending, creating it if needed.
    pub fn open(path: &Path) -> std::io::Result<AccessLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AccessLog { path: path.to_path_buf(), file: Mutex::new(file) })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, line: &str) {
        // A failed write must not fail the request it describes; say so once per failure.
        let mut file = match self.file.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = file.write_all(line.as_bytes()) {
            eprintln!("labflow serve: cannot write the access log {}: {e}", self.path.display());
        }
    }
}

/// Unix time in seconds, rounded to milliseconds.
fn unix_seconds(t: SystemTime) -> f64 {
    let ms = t.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    ms as f64 / 1000.0
}

/// The JSON line for one request (with its newline).
fn line(start: SystemTime, end: SystemTime, method: &str, endpoint: &str, status: u16, served: Served) -> String {
    let mut s = json!({
        "start": unix_seconds(start),
        "end": unix_seconds(end),
        "method": method,
        "endpoint": endpoint,
        "status": status,
        "prompts": served.prompts,
        "n": served.n,
        "prompt_tokens": served.prompt_tokens,
        "completion_tokens": served.completion_tokens,
    })
    .to_string();
    s.push('\n');
    s
}

/// Middleware: time the request and append its line to `log`.
pub async fn record(State(log): State<Arc<AccessLog>>, request: Request, next: Next) -> Response {
    let start = SystemTime::now();
    let method = request.method().to_string();
    let endpoint = request.uri().path().to_string();
    let response = next.run(request).await;
    if let Some(pending) = response.extensions().get::<PendingServed>().and_then(PendingServed::take) {
        let status = response.status().as_u16();
        tokio::spawn(async move {
            // A stream the client left drops its sender: the line is written with zero counts.
            let served = pending.await.unwrap_or_default();
            log.write(&line(start, SystemTime::now(), &method, &endpoint, status, served));
        });
        return response;
    }
    let served = response.extensions().get::<Served>().copied().unwrap_or_default();
    log.write(&line(start, SystemTime::now(), &method, &endpoint, response.status().as_u16(), served));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_line_is_one_json_object_with_millisecond_times() {
        let start = UNIX_EPOCH + Duration::from_micros(1_764_000_000_123_456);
        let end = start + Duration::from_millis(2_500);
        let served = Served { prompts: 2, n: 3, prompt_tokens: 40, completion_tokens: 600 };
        let text = line(start, end, "POST", "/v1/completions", 200, served);
        assert!(text.ends_with('\n') && !text[..text.len() - 1].contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["start"], json!(1_764_000_000.123));
        assert_eq!(v["end"], json!(1_764_000_002.623));
        assert_eq!((&v["endpoint"], &v["status"], &v["prompts"], &v["n"]), (&json!("/v1/completions"), &json!(200), &json!(2), &json!(3)));
        assert_eq!((&v["prompt_tokens"], &v["completion_tokens"]), (&json!(40), &json!(600)));
    }

    #[test]
    fn lines_are_appended() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.jsonl");
        std::fs::write(&path, "{\"old\": 1}\n").expect("seed");
        let log = AccessLog::open(&path).expect("open");
        log.write("{\"a\": 1}\n");
        log.write("{\"b\": 2}\n");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{\"old\": 1}\n{\"a\": 1}\n{\"b\": 2}\n");
        assert_eq!(log.path(), path);
    }
}
