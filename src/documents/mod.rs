//! Knowledge documents: resolving a leaf's `document` reference to files and their bytes
//! ([`resolve`]), turning those bytes into text ([`to_text`]: markdown, plain text, and the text
//! layer of PDFs), and cutting the text into token-bounded chunks ([`chunk`]) for the
//! seed rows. This module never knows about pipelines.

mod chunk;
mod source;
mod text;

pub use chunk::{chunk, chunk_spans, ChunkOptions, TokenCount, WordEstimate};
pub use source::{repo_slug, resolve, Resolved, ALLOWED_EXTENSIONS};
pub use text::{to_text, DocumentError};
