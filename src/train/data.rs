//! From mix records to training samples: each conversation rendered with the model's own chat
//! template, tokenised, and given a loss mask — the assistant turns (every turn but the system
//! one when the record says `unmask: true`), each with the end-of-turn token that closes it, and
//! never a turn's role header. Samples outside `[min_tokens, max_seq_len)` tokens are dropped and
//! counted by reason, never silently.
//!
//! The mask is placed on the rendered text, then mapped to tokens by their byte offsets: the
//! conversation is rendered once whole and once per prefix of its turns, so turn `i` is the text
//! between the renderings of `i` and `i + 1` turns (a template that does not render prefix by
//! prefix is refused with a message saying so). Within a turn, its content and the end-of-turn
//! text after it are trained.

use serde::{Deserialize, Serialize};

use crate::mix::records::Record;
use crate::model::{ChatTemplate, Tokenizer};
use crate::teacher::ChatMessage;

/// One tokenised conversation and which of its tokens are trained.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The record's id.
    pub id: String,
    /// Token ids.
    pub tokens: Vec<u32>,
    /// Per token: trained.
    pub train: Vec<bool>,
}

impl Sample {
    /// Trained targets (the first token is never one: nothing precedes it).
    pub fn loss_tokens(&self) -> usize {
        self.train.iter().skip(1).filter(|&&t| t).count()
    }
}

/// Renders and tokenises records for one model.
pub struct Renderer {
    template: ChatTemplate,
    tokenizer: Tokenizer,
    /// The end-of-turn text (the tokenizer's EOS), trained after each trained turn.
    eos: Option<String>,
}

/// Samples left out, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// Fewer than `min_tokens` tokens.
    pub too_short: usize,
    /// `max_seq_len` tokens or more.
    pub too_long: usize,
    /// No trained token (no assistant turn, or only empty ones).
    pub nothing_to_train: usize,
    /// The template or tokenizer failed on the record; the first few reasons are kept.
    pub unrenderable: usize,
    /// Up to 5 `id: reason` lines of the unrenderable ones.
    pub examples: Vec<String>,
}

impl Dropped {
    /// Every dropped sample.
    pub fn total(&self) -> usize {
        self.too_short + self.too_long + self.nothing_to_train + self.unrenderable
    }
}

impl Renderer {
    /// A renderer with the model's template and tokenizer.
    pub fn new(template: ChatTemplate, tokenizer: Tokenizer) -> Renderer {
        let eos = tokenizer.eos_id().and_then(|id| tokenizer.decode(&[id], false).ok()).filter(|s| !s.is_empty());
        Renderer { template, tokenizer, eos }
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// One record as a sample, or why it cannot be one.
    pub fn render(&self, record: &Record) -> Result<Sample, String> {
        let messages: Vec<ChatMessage> =
            record.messages.iter().map(|m| ChatMessage { role: m.role.clone(), content: m.content.clone() }).collect();
        let render = |n: usize| self.template.render(&messages[..n], false).map_err(|e| format!("chat template: {e}"));
        let full = render(messages.len())?;
        // Byte ranges of the text to train.
        let mut trained: Vec<(usize, usize)> = Vec::new();
        let mut seg_start = 0;
        for (i, m) in messages.iter().enumerate() {
            let seg_end = if i + 1 == messages.len() {
                full.len()
            } else {
                let prefix = render(i + 1)?;
                if !full.starts_with(&prefix) {
                    return Err(format!("the chat template does not render the conversation turn by turn (turn {}), so its loss mask cannot be placed", i + 1));
                }
                prefix.len()
            };
            let trainable = m.role == "assistant" || (record.unmask && m.role != "system");
            if trainable && seg_end > seg_start {
                let seg = &full[seg_start..seg_end];
                let content = m.content.trim();
                if !content.is_empty() {
                    let at = seg.find(content).ok_or_else(|| format!("turn {i}'s content does not appear verbatim in the rendered template"))?;
                    let (start, mut end) = (seg_start + at, seg_start + at + content.len());
                    if let Some(eos) = &self.eos {
                        if let Some(e) = full[end..seg_end].find(eos.as_str()) {
                            end += e + eos.len();
                        }
                    }
                    trained.push((start, end));
                }
            }
            seg_start = seg_end.max(seg_start);
        }
        let (tokens, offsets) = self.tokenizer.encode_with_offsets(&full).map_err(|e| e.to_string())?;
        let train = offsets.iter().map(|&(s, e)| trained.iter().any(|&(a, b)| s < b && e > a)).collect();
        Ok(Sample { id: record.id.clone(), tokens, train })
    }

    /// Every record that makes a sample within `[min_tokens, max_seq_len)` tokens with something
    /// to train; the rest counted in [`Dropped`].
    pub fn prepare(&self, records: &[Record], min_tokens: usize, max_seq_len: usize) -> (Vec<Sample>, Dropped) {
        let mut dropped = Dropped::default();
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            match self.render(r) {
                Err(e) => {
                    dropped.unrenderable += 1;
                    if dropped.examples.len() < 5 {
                        dropped.examples.push(format!("{}: {e}", r.id));
                    }
                }
                Ok(s) if s.tokens.len() < min_tokens => dropped.too_short += 1,
                Ok(s) if s.tokens.len() >= max_seq_len => dropped.too_long += 1,
                Ok(s) if s.loss_tokens() == 0 => dropped.nothing_to_train += 1,
                Ok(s) => out.push(s),
            }
        }
        (out, dropped)
    }
}
