//! The axum [`Router`] of `labflow serve`: the three OpenAI endpoints, the API-key check, and
//! OpenAI-shaped answers for unknown paths and methods.

use super::access_log::Served as ServedLog;
use super::error::ApiError;
use super::parse::{self, ApiRequest, Endpoint};
use super::render::{self, Meta};
use crate::teacher::{Client, Request, Response as TeacherResponse, TeacherError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request as HttpRequest, State};
use axum::http::{header, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What every handler shares.
struct Served {
    client: Arc<dyn Client>,
    model: String,
    api_key: Option<String>,
    started: u64,
}

type Shared = Arc<Served>;

/// The server's routes over `client`, answering as `model_name`.
///
/// Any `model` a request names is accepted and answered by `client` (as llama.cpp's server
/// does): one server serves one model, and clients are often configured with a name of their
/// own. Responses carry `model_name`, so a client can see which model answered.
///
/// With `api_key`, every request must carry `Authorization: Bearer <api_key>`.
pub fn router(client: Arc<dyn Client>, model_name: String, api_key: Option<String>) -> Router {
    let state = Arc::new(Served { client, model: model_name, api_key, started: unix_now() });
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), authorize))
        .with_state(state)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Compare without an early exit, so response timing does not reveal how much of a guessed
/// key was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(State(state): State<Shared>, request: HttpRequest, next: Next) -> Response {
    let Some(expected) = state.api_key.as_deref() else {
        return next.run(request).await;
    };
    // The scheme name is case-insensitive (RFC 9110 §11.1).
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key);
    match given {
        Some(key) if same_secret(key.trim().as_bytes(), expected.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::unauthorized("incorrect API key provided").into_response(),
        None => ApiError::unauthorized("missing API key: send the header `Authorization: Bearer <key>`").into_response(),
    }
}

/// The model object of `/v1/models`: OpenAI's fields, and under `labflow` what a labflow client
/// may rely on (`seeds_choices_independently`: choice i of a seeded request is answered as one
/// choice with seed + i, see [`Client::seeds_choices_independently`]).
fn model_object(state: &Served) -> serde_json::Value {
    json!({
        "id": state.model,
        "object": "model",
        "created": state.started,
        "owned_by": "labflow",
        "labflow": {"seeds_choices_independently": state.client.seeds_choices_independently()},
    })
}

async fn models(State(state): State<Shared>) -> Json<serde_json::Value> {
    Json(json!({"object": "list", "data": [model_object(&state)]}))
}

async fn model(State(state): State<Shared>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    if id != state.model {
        return Err(ApiError {
            status: axum::http::StatusCode::NOT_FOUND,
            message: format!("the model `{id}` does not exist; this server serves `{}`", state.model),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found"),
        });
    }
    Ok(Json(model_object(&state)))
}

async fn chat(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    answer(&state, Endpoint::Chat, body).await
}

async fn completions(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    answer(&state, Endpoint::Completions, body).await
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        message: format!("{method} is not allowed on `{}`", uri.path()),
        kind: "invalid_request_error",
        param: None,
        code: Some("method_not_allowed"),
    }
}

/// Parse, ask the teacher once per prompt (concurrently), and answer whole or as a stream.
///
/// A stream is live (`live`: pieces as the teacher decodes them), except with log-probabilities:
/// then the answer is completed first and sent one token per chunk with its log-probabilities.
async fn answer(state: &Served, endpoint: Endpoint, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body =
        body.map_err(|e| ApiError { status: e.status(), ..ApiError::invalid("body", format!("cannot read the request body: {e}")) })?;
    let request = parse::parse(endpoint, &body)?;
    let meta = Meta {
        id: format!(
            "{}-{:016x}{:016x}",
            if endpoint == Endpoint::Chat { "chatcmpl" } else { "cmpl" },
            rand::random::<u64>(),
            rand::random::<u64>()
        ),
        created: unix_now(),
        model: state.model.clone(),
    };
    let requests = teacher_requests(&request);
    if request.stream && request.sampling.logprobs.is_none() {
        return super::live::respond(Arc::clone(&state.client), request, requests, meta).await;
    }
    let responses =
        futures::future::try_join_all(requests.iter().map(|r| state.client.complete(r))).await.map_err(|e| ApiError::teacher(&e))?;
    check_choices(state.client.as_ref(), request.sampling.n, &responses)?;
    let served = ServedLog {
        prompts: request.prompts.len(),
        n: request.sampling.n,
        prompt_tokens: responses.iter().map(|r| r.usage.prompt_tokens).sum(),
        completion_tokens: responses.iter().map(|r| r.usage.completion_tokens).sum(),
    };
    let mut response = if request.stream {
        let events = render::stream(&request, &responses, &meta).into_iter().map(|data| Ok::<_, Infallible>(Event::default().data(data)));
        Sse::new(futures::stream::iter(events)).into_response()
    } else {
        Json(render::body(&request, &responses, &meta)).into_response()
    };
    // For the access log, when one is kept (`access_log::record`).
    response.extensions_mut().insert(served);
    Ok(response)
}

/// One teacher request per prompt.
fn teacher_requests(request: &ApiRequest) -> Vec<Request> {
    request
        .prompts
        .iter()
        // No model name: the served client answers with its own model (an HTTP teacher refuses a
        // name other than its upstream's, and the served name is often not that; the embedded
        // teacher ignores it). So serve's cache keys equal `generate`'s for the same teacher.
        .map(|prompt| Request { model: String::new(), prompt: prompt.clone(), sampling: request.sampling.clone() })
        .collect()
}

/// Every response has the `n` choices asked for.
pub(super) fn check_choices(client: &dyn Client, n: u32, responses: &[TeacherResponse]) -> Result<(), ApiError> {
    match responses.iter().find(|r| r.choices.len() != n as usize) {
        Some(response) => Err(ApiError::teacher(&TeacherError::Data {
            endpoint: client.identity(),
            message: format!("asked for {n} choices, got {}", response.choices.len()),
        })),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }
}
