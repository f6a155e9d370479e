//! Rendering a model's own chat template (`tokenizer.chat_template`, Jinja) with minijinja, the
//! way Hugging Face's `apply_chat_template` does with jinja2: variables `messages` (each with
//! `role` and `content`), `add_generation_prompt`, `bos_token`, `eos_token`, and the function
//! `raise_exception(msg)`.

use minijinja::{context, Environment, Error, ErrorKind};

use crate::teacher::ChatMessage;

use std::path::Path;

use super::hf_config::{read_file, HfTokenizerConfig};
use super::{GgufFile, ModelError};

/// A parsed chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// A template from its Jinja source and the special tokens it may refer to. Fails when the
    /// source does not parse.
    pub fn new(source: impl Into<String>, bos_token: impl Into<String>, eos_token: impl Into<String>) -> Result<ChatTemplate, ModelError> {
        let t = ChatTemplate { source: source.into(), bos_token: bos_token.into(), eos_token: eos_token.into() };
        environment().template_from_str(&t.source).map_err(|e| ModelError::Template(format!("parsing: {e:#}")))?;
        Ok(t)
    }

    /// The template stored in a GGUF file (`tokenizer.chat_template`), with its BOS/EOS texts.
    pub fn from_gguf(f: &GgufFile) -> Result<ChatTemplate, ModelError> {
        let source = f.req_str("tokenizer.chat_template")?;
        let tokens = f.req_str_array("tokenizer.ggml.tokens")?;
        let text =
            |key: &str| f.get(key).and_then(|v| v.as_u64()).and_then(|i| tokens.get(i as usize)).map(|s| s.to_string()).unwrap_or_default();
        ChatTemplate::new(source, text("tokenizer.ggml.bos_token_id"), text("tokenizer.ggml.eos_token_id"))
    }

    /// The template of a Hugging Face folder: `tokenizer_config.json`'s `chat_template`, or the
    /// `chat_template.jinja` file newer transformers write beside it; BOS/EOS texts from
    /// `tokenizer_config.json`. A missing `tokenizer_config.json` is an error naming it.
    pub fn from_hf_folder(dir: impl AsRef<Path>) -> Result<ChatTemplate, ModelError> {
        let dir = dir.as_ref();
        let path = dir.join("tokenizer_config.json");
        let tc = HfTokenizerConfig::read(&path)?;
        let jinja = dir.join("chat_template.jinja");
        let source = match tc.chat_template(&path)? {
            Some(s) => s,
            None if jinja.is_file() => {
                String::from_utf8(read_file(&jinja)?).map_err(|e| ModelError::Template(format!("{}: not UTF-8: {e}", jinja.display())))?
            }
            None => {
                return Err(ModelError::Missing {
                    path,
                    message: format!("no key \"chat_template\" and no {}: the model has no chat template", jinja.display()),
                })
            }
        };
        ChatTemplate::new(source, tc.bos_text().unwrap_or_default(), tc.eos_text().unwrap_or_default())
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages`, ending with the assistant's turn opener when `add_generation_prompt`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, ModelError> {
        let env = environment();
        let tmpl = env.template_from_str(&self.source).map_err(|e| ModelError::Template(format!("parsing: {e:#}")))?;
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| ModelError::Template(format!("rendering: {e:#}")))
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.add_function("raise_exception", |msg: String| -> Result<String, Error> { Err(Error::new(ErrorKind::InvalidOperation, msg)) });
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_and_exceptions() {
        let src = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let t = ChatTemplate::new(src, "", "").expect("parses");
        let got = t.render(&[ChatMessage::new("user", "Hi")], true).expect("renders");
        assert_eq!(got, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
        let t = ChatTemplate::new("{{ raise_exception('no system role') }}", "", "").expect("parses");
        assert!(t.render(&[], false).expect_err("raises").to_string().contains("no system role"));
        assert!(ChatTemplate::new("{% for %}", "", "").is_err());
    }
}
