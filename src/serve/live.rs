//! Live streaming for `labflow serve`: each choice's text goes out as the teacher generates it
//! ([`Client::complete_streaming`]), not after the whole answer is done.
//!
//! Order of the `data:` payloads: every choice's opening (chat's role, completions' echoed
//! prompt), then text pieces as they arrive (choices interleaved as the teacher decodes them),
//! then every choice's finish chunk, the usage chunk when asked for, and `[DONE]`. A teacher
//! error before the first piece is answered as an ordinary HTTP error; after it, as a last
//! `{"error": …}` payload (what OpenAI's clients raise as an `APIError`).
//!
//! If the client goes away mid-stream, the teacher still finishes the answer (a response cache
//! in front of it keeps it); nothing more is sent.

use super::access_log::{PendingServed, Served as ServedLog};
use super::error::ApiError;
use super::parse::ApiRequest;
use super::render::{Chunks, Meta};
use super::router::check_choices;
use crate::teacher::{Client, Delta, Request, Response as TeacherResponse};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// What the teacher task reports to the stream.
enum Progress {
    /// More text of choice `index` (OpenAI numbering over all prompts).
    Piece { index: usize, text: String },
    /// The whole answer, or why it failed.
    Done(Result<Vec<TeacherResponse>, ApiError>),
}

/// Answer `request` (one teacher request per prompt in `requests`) as a live stream.
pub async fn respond(client: Arc<dyn Client>, request: ApiRequest, requests: Vec<Request>, meta: Meta) -> Result<Response, ApiError> {
    let (tx, mut rx) = unbounded_channel();
    let n = request.sampling.n;
    tokio::spawn(async move {
        let result = ask(client.as_ref(), requests, n as usize, &tx).await;
        let result = result.and_then(|responses| check_choices(client.as_ref(), n, &responses).map(|()| responses));
        let _ = tx.send(Progress::Done(result));
    });
    let first = rx.recv().await.unwrap_or_else(|| {
        Progress::Done(Err(ApiError::teacher(&crate::teacher::TeacherError::Unsupported("the answer task stopped".into()))))
    });
    if let Progress::Done(Err(e)) = first {
        // Nothing sent yet: an ordinary error response with its status.
        return Err(e);
    }
    let chunks = Chunks::new(&request, meta);
    let mut pending = VecDeque::new();
    for (index, prompt) in request.prompts.iter().flat_map(|p| std::iter::repeat_n(p, n as usize)).enumerate() {
        pending.extend(chunks.opening(index, prompt).0);
    }
    let (served_tx, pending_served) = PendingServed::channel();
    let state = Live { rx, first: Some(first), pending, done: false, chunks, request, served: Some(served_tx) };
    let events = futures::stream::unfold(state, |mut live| async move {
        loop {
            if let Some(data) = live.pending.pop_front() {
                return Some((Ok::<_, Infallible>(SseEvent::default().data(data)), live));
            }
            if live.done {
                return None;
            }
            let next = match live.first.take() {
                Some(first) => Some(first),
                None => live.rx.recv().await,
            };
            live.take(next);
        }
    });
    let mut response = Sse::new(events).into_response();
    response.extensions_mut().insert(pending_served);
    Ok(response)
}

/// The stream's state between payloads.
struct Live {
    rx: UnboundedReceiver<Progress>,
    /// The first report, read before the response was started.
    first: Option<Progress>,
    pending: VecDeque<String>,
    done: bool,
    chunks: Chunks,
    request: ApiRequest,
    /// For the access log, sent when the answer is complete.
    served: Option<tokio::sync::oneshot::Sender<ServedLog>>,
}

impl Live {
    /// Turn one report into payloads.
    fn take(&mut self, progress: Option<Progress>) {
        match progress {
            Some(Progress::Piece { index, text }) => self.pending.push_back(self.chunks.text(index, &text, None, 0)),
            Some(Progress::Done(Ok(responses))) => {
                self.pending.extend(self.chunks.ending(&self.request, &responses));
                if let Some(served) = self.served.take() {
                    let _ = served.send(ServedLog {
                        prompts: self.request.prompts.len(),
                        n: self.request.sampling.n,
                        prompt_tokens: responses.iter().map(|r| r.usage.prompt_tokens).sum(),
                        completion_tokens: responses.iter().map(|r| r.usage.completion_tokens).sum(),
                    });
                }
                self.done = true;
            }
            Some(Progress::Done(Err(e))) => {
                self.pending.push_back(e.body().to_string());
                self.done = true;
            }
            None => self.done = true,
        }
    }
}

/// Ask for every prompt's answer concurrently, forwarding each piece with its OpenAI index
/// (choice `j` of prompt `p` is `p * n + j`).
async fn ask(
    client: &dyn Client,
    requests: Vec<Request>,
    n: usize,
    tx: &UnboundedSender<Progress>,
) -> Result<Vec<TeacherResponse>, ApiError> {
    let mut forwarders = Vec::with_capacity(requests.len());
    let mut answers = Vec::with_capacity(requests.len());
    for (p, request) in requests.iter().enumerate() {
        let (deltas, mut pieces) = unbounded_channel::<Delta>();
        forwarders.push(async move {
            while let Some(Delta { choice, text }) = pieces.recv().await {
                let _ = tx.send(Progress::Piece { index: p * n + choice as usize, text });
            }
        });
        answers.push(client.complete_streaming(request, deltas));
    }
    // A forwarder ends when its answer is done (or dropped) and its sender with it.
    let (answers, _) = futures::join!(futures::future::try_join_all(answers), futures::future::join_all(forwarders));
    answers.map_err(|e| ApiError::teacher(&e))
}
