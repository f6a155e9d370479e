//! `labflow serve` and `labflow chat`: a teacher behind an OpenAI-compatible server, or asked
//! once from the command line. Both open their teacher through [`open_teacher`].

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use labflow::serve::{self, ServeOptions};
use labflow::store::Location;
use labflow::teacher::cache::{CacheConfig, CachedClient, ResponseCache};
use labflow::teacher::constraint::Dialect;
use labflow::teacher::{ChatMessage, Client, Delta, HttpConfig, Prompt, Request, Sampling};
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The model: a GGUF file, a Hugging Face safetensors folder, or an OpenAI-compatible
    /// server `http://HOST:PORT/v1[?OPTIONS]#MODEL`. OPTIONS, `&`-separated, stay in labflow:
    /// `seeds_choices_independently=true` when the server answers choice i of a seeded request
    /// as one choice with seed + i (as `labflow serve` does);
    /// `constraints=vllm|labflow|llama.cpp|openai` to send decoding constraints in that
    /// server's fields (default `none`: not sent).
    #[arg(long, value_name = "PATH|URL")]
    pub model: String,
    /// Address to listen on. Anything but loopback makes the model reachable from the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// TCP port (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every request. Default: the environment variable
    /// LABFLOW_API_KEY when set (which keeps the key out of the process list).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Answer repeated requests from a response cache in this folder or object-store URL.
    #[arg(long, value_name = "DIR|URL")]
    pub cache: Option<String>,
    /// The model name the server reports (default: the model file's stem, or the URL).
    #[arg(long, value_name = "NAME")]
    pub served_model_name: Option<String>,
    /// Append one JSON line per request to FILE: start and end (Unix seconds, ms precision),
    /// endpoint, status, prompts, n, prompt and completion tokens.
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// The model: a GGUF file, a Hugging Face safetensors folder, or an OpenAI-compatible
    /// server `http://HOST:PORT/v1[?OPTIONS]#MODEL`. OPTIONS, `&`-separated, stay in labflow:
    /// `seeds_choices_independently=true` when the server answers choice i of a seeded request
    /// as one choice with seed + i (as `labflow serve` does);
    /// `constraints=vllm|labflow|llama.cpp|openai` to send decoding constraints in that
    /// server's fields (default `none`: not sent).
    #[arg(long, value_name = "PATH|URL")]
    pub model: String,
    /// The user message; read from standard input when absent.
    pub prompt: Option<String>,
    /// A system message sent before it.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    /// Sampling temperature; 0 is greedy (the default, so the same prompt gives the same answer).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Seed for sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Answer from a response cache in this folder or object-store URL.
    #[arg(long, value_name = "DIR|URL")]
    pub cache: Option<String>,
}

/// Open the teacher named by `--model`: the one place a model argument becomes a [`Client`].
///
/// - `http://HOST:PORT/v1[?OPTIONS]#MODEL` (or https): an upstream OpenAI-compatible server
///   through `teacher::http`; `#MODEL` names the model there (default `default`), OPTIONS are
///   labflow's own ([`http_config`]), and the API key, if any, is read from `OPENAI_API_KEY`.
/// - a GGUF file, or a Hugging Face safetensors folder (config.json, model.safetensors or its
///   shards, tokenizer.json, tokenizer_config.json): the embedded model, in this process.
pub(super) fn open_teacher(model: &str) -> Result<Arc<dyn Client>> {
    open_teacher_with(model, &|_| {})
}

/// [`open_teacher`], letting the caller adjust the HTTP client's settings (`generate` sizes its
/// requests in flight from `--max-in-flight`).
pub(super) fn open_teacher_with(model: &str, http: &dyn Fn(&mut HttpConfig)) -> Result<Arc<dyn Client>> {
    let lower = model.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let mut config = http_config(model)?;
        if std::env::var_os("OPENAI_API_KEY").is_some() {
            config.api_key_env = Some("OPENAI_API_KEY".to_string());
        }
        http(&mut config);
        return Ok(Arc::new(labflow::teacher::HttpClient::new(config)?));
    }
    let path = Path::new(model);
    if !path.exists() {
        bail!("model `{model}` not found; fetch the default model (SmolLM2-135M-Instruct GGUF) with `bash models/fetch.sh`");
    }
    Ok(Arc::new(labflow::teacher::EmbeddedTeacher::load(path)?))
}

/// The HTTP client's settings from a teacher spec `http(s)://HOST:PORT/v1[?OPTIONS][#MODEL]`.
///
/// OPTIONS are `&`-separated `KEY=VALUE` pairs for labflow, never sent to the server (which gets
/// the URL without them):
/// - `seeds_choices_independently=true|false` (default false) says the server answers choice `i`
///   of a seeded request as a request for one choice with seed `seed + i`, as `labflow serve`
///   over the embedded teacher does; the response cache then fetches a prompt's missing choices
///   in one request instead of one per choice.
/// - `constraints=none|vllm|labflow|llama.cpp|openai` (default none): how the server takes
///   decoding constraints ([`Dialect`]; `labflow` is `vllm`, what `labflow serve` reads).
fn http_config(spec: &str) -> Result<HttpConfig> {
    const OPTIONS: &str = "the options are seeds_choices_independently=true|false and constraints=none|vllm|labflow|llama.cpp|openai";
    let (url, name) = spec.split_once('#').unwrap_or((spec, "default"));
    let (base, options) = url.split_once('?').unwrap_or((url, ""));
    let mut config = HttpConfig::new(base.trim_end_matches('/'), name);
    for option in options.split('&').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("seeds_choices_independently", "true")) => config.seeds_choices_independently = true,
            Some(("seeds_choices_independently", "false")) => config.seeds_choices_independently = false,
            Some(("constraints", dialect)) => {
                config.constraints = dialect.parse::<Dialect>().map_err(|e| anyhow!("{e} (in the teacher URL `{spec}`)"))?;
            }
            _ => bail!("unknown option `{option}` in the teacher URL `{spec}`; {OPTIONS}"),
        }
    }
    Ok(config)
}

/// Put the response cache at `spec` in front of `client`.
async fn with_cache(client: Arc<dyn Client>, spec: Option<&str>) -> Result<(Arc<dyn Client>, Option<Arc<ResponseCache>>)> {
    let Some(spec) = spec else {
        return Ok((client, None));
    };
    let location = Location::open_or_create(spec).with_context(|| format!("cannot open the cache location `{spec}`"))?;
    let cache = Arc::new(ResponseCache::open(location, CacheConfig::default()).await?);
    Ok((Arc::new(CachedClient::new(client, Arc::clone(&cache))), Some(cache)))
}

/// The name `/v1/models` reports: the file stem of a model path, or the URL as given.
fn model_name(model: &str) -> String {
    if model.contains("://") {
        return model.to_string();
    }
    let path = Path::new(model.trim_end_matches('/'));
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| model.to_string())
}

pub async fn serve(args: ServeArgs) -> Result<ExitCode> {
    let api_key = args.api_key.or_else(|| std::env::var("LABFLOW_API_KEY").ok().filter(|k| !k.is_empty()));
    let options = ServeOptions { host: args.host, port: args.port, api_key, access_log: args.access_log };
    let (client, cache) = with_cache(open_teacher(&args.model)?, args.cache.as_deref()).await?;
    let name = args.served_model_name.unwrap_or_else(|| model_name(&args.model));
    if let Some(warning) = serve::exposure_warning(&options) {
        eprintln!("{warning}");
    }
    let listener = serve::bind(&options).await?;
    let address = listener.local_addr().context("cannot read the bound address")?;
    eprintln!("labflow serve: `{name}` on http://{address}/v1 (Ctrl-C stops)");
    serve::serve_on(listener, client, name, &options).await?;
    if let Some(cache) = cache {
        cache.flush().await?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn chat(args: ChatArgs) -> Result<ExitCode> {
    let prompt = match args.prompt {
        Some(p) => p,
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read the prompt from standard input")?;
            text
        }
    };
    let (client, cache) = with_cache(open_teacher(&args.model)?, args.cache.as_deref()).await?;
    let mut messages = Vec::new();
    if let Some(system) = args.system {
        messages.push(ChatMessage::new("system", system));
    }
    messages.push(ChatMessage::new("user", prompt.trim_end()));
    let sampling = Sampling { temperature: args.temperature, max_tokens: args.max_tokens, seed: args.seed, ..Sampling::default() };
    let request = Request { model: model_name(&args.model), prompt: Prompt::Chat(messages), sampling };
    // The answer is printed as it is generated (the embedded model streams; other teachers
    // print it whole when done).
    let (deltas, mut pieces) = tokio::sync::mpsc::unbounded_channel::<Delta>();
    let printer = tokio::spawn(async move {
        let mut out = std::io::stdout();
        while let Some(piece) = pieces.recv().await {
            // stdout closed (a pipe's reader left): nothing more to print.
            if out.write_all(piece.text.as_bytes()).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    });
    let response = client.complete_streaming(&request, deltas).await;
    printer.await.context("the printing task failed")?;
    let response = response?;
    if let Some(cache) = cache {
        cache.flush().await?;
    }
    if response.choices.is_empty() {
        bail!("the teacher returned no answer");
    }
    println!();
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_missing_models() {
        assert_eq!(model_name("models/SmolLM2-135M-Instruct.Q4_1.gguf"), "SmolLM2-135M-Instruct.Q4_1");
        assert_eq!(model_name("/m/qwen/"), "qwen");
        assert_eq!(model_name("http://h:1/v1"), "http://h:1/v1");
        let err = open_teacher("/no/such/model.gguf").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("bash models/fetch.sh"), "{err}");
    }

    #[test]
    fn http_specs_take_labflow_options_out_of_the_url() {
        let c = http_config("http://h:1/v1/#smol").unwrap();
        assert_eq!((c.base_url.as_str(), c.model.as_str(), c.seeds_choices_independently), ("http://h:1/v1", "smol", false));
        let c = http_config("http://h:1/v1?seeds_choices_independently=true#smol").unwrap();
        assert_eq!((c.base_url.as_str(), c.model.as_str(), c.seeds_choices_independently), ("http://h:1/v1", "smol", true));
        let c = http_config("https://h/v1?seeds_choices_independently=false").unwrap();
        assert_eq!((c.base_url.as_str(), c.model.as_str(), c.seeds_choices_independently), ("https://h/v1", "default", false));
        for bad in
            ["http://h/v1?seeds_choices_independently=yes#m", "http://h/v1?api-version=1#m", "http://h/v1?seeds_choices_independently#m"]
        {
            let err = http_config(bad).unwrap_err().to_string();
            assert!(err.contains("seeds_choices_independently=true|false"), "{err}");
        }
    }

    #[test]
    fn http_specs_name_the_constraint_dialect() {
        assert_eq!(http_config("http://h/v1#m").unwrap().constraints, Dialect::None);
        for (option, want) in [
            ("vllm", Dialect::Vllm),
            ("labflow", Dialect::Vllm),
            ("llama.cpp", Dialect::LlamaCpp),
            ("openai", Dialect::Openai),
            ("none", Dialect::None),
        ] {
            let c = http_config(&format!("http://h:1/v1?seeds_choices_independently=true&constraints={option}#smol")).unwrap();
            assert_eq!(
                (c.base_url.as_str(), c.model.as_str(), c.constraints, c.seeds_choices_independently),
                ("http://h:1/v1", "smol", want, true)
            );
        }
        let err = http_config("http://h/v1?constraints=outlines#m").unwrap_err().to_string();
        assert!(err.contains("unknown constraint dialect \"outlines\"") && err.contains("http://h/v1?constraints=outlines#m"), "{err}");
    }
}
