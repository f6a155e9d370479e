//! Document bytes to text, by file extension: the step between [`resolve`](super::resolve), which
//! finds a leaf's files, and [`chunk`](super::chunk), which cuts the text for the teacher.
//!
//! Markdown (`.md`, `.markdown`) and `.txt` are UTF-8 text, kept as written (markdown syntax
//! included: the chunker uses its headings and the teacher reads it fine) except that a byte
//! order mark is dropped and CRLF / CR line endings become `\n`. PDF text comes from the
//! `pdf-extract` crate (pure Rust, on `lopdf`): its text layer only — no OCR, no layout or table
//! recovery as docling (the reference's converter) does — so a scan without text, or a PDF it
//! cannot parse, is an error that says to convert the file to markdown.

use std::path::Path;

/// A document that cannot be turned into text. Each names the file and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// The bytes of a text document are not UTF-8.
    #[error("`{path}` is not UTF-8 text (invalid byte at line {line}, column {column}); save it as UTF-8")]
    NotUtf8 {
        /// Path of the document inside its repository.
        path: String,
        /// 1-based line of the first invalid byte.
        line: usize,
        /// 1-based column (in bytes) of the first invalid byte.
        column: usize,
    },
    /// A PDF that could not be parsed (or made the PDF reader fail).
    #[error("cannot read the PDF `{path}` ({message}); convert it to markdown (e.g. with docling or pandoc) and point document.patterns at the .md file")]
    Pdf {
        /// Path of the document inside its repository.
        path: String,
        /// The PDF reader's message.
        message: String,
    },
    /// A PDF without a text layer (a scan, or only images).
    #[error("the PDF `{path}` has no text layer (a scan?); OCR it or convert it to markdown, and point document.patterns at the .md file")]
    PdfNoText {
        /// Path of the document inside its repository.
        path: String,
    },
    /// Neither markdown, text nor PDF.
    #[error("`{path}` is not a .md, .txt or .pdf document; knowledge documents must be markdown")]
    Unsupported {
        /// Path of the document inside its repository.
        path: String,
    },
}

/// The text of the document at `path` (inside its repository) whose bytes are `bytes`.
pub fn to_text(path: &str, bytes: &[u8]) -> Result<String, DocumentError> {
    let ext = Path::new(path).extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    match ext.as_str() {
        "md" | "markdown" | "txt" => utf8_text(path, bytes),
        "pdf" => pdf_text(path, bytes),
        _ => Err(DocumentError::Unsupported { path: path.to_string() }),
    }
}

fn utf8_text(path: &str, bytes: &[u8]) -> Result<String, DocumentError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let before = &bytes[..e.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        DocumentError::NotUtf8 { path: path.to_string(), line, column }
    })?;
    // Chunk boundaries look for blank lines; CR endings would hide them.
    Ok(if text.contains('\r') { text.replace("\r\n", "\n").replace('\r', "\n") } else { text.to_string() })
}

fn pdf_text(path: &str, bytes: &[u8]) -> Result<String, DocumentError> {
    // pdf-extract panics on some malformed files (it has many `unwrap`s); a bad document is data,
    // not a crash, so the panic becomes this file's error. The default hook still prints it.
    let out = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(bytes));
    let text = match out {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => return Err(DocumentError::Pdf { path: path.to_string(), message: e.to_string() }),
        Err(panic) => {
            let why = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            let message = format!("the PDF reader failed: {}", why.unwrap_or_else(|| "panic".to_string()));
            return Err(DocumentError::Pdf { path: path.to_string(), message });
        }
    };
    if text.trim().is_empty() {
        return Err(DocumentError::PdfNoText { path: path.to_string() });
    }
    // Pages are separated by form feeds in some extractors; make them paragraph breaks.
    Ok(text.replace("\r\n", "\n").replace(['\r', '\u{c}'], "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_and_text_are_read_as_utf8() {
        assert_eq!(to_text("a/b.md", "# T\r\n\r\nx\u{e9}".as_bytes()).as_deref(), Ok("# T\n\nx\u{e9}"));
        assert_eq!(to_text("notes.TXT", b"\xEF\xBB\xBFhello").as_deref(), Ok("hello"));
        assert_eq!(to_text("x.markdown", b"").as_deref(), Ok(""));
    }

    #[test]
    fn invalid_utf8_names_the_file_and_position() {
        let e = to_text("docs/x.md", b"ok\nab\xff").unwrap_err();
        assert_eq!(e, DocumentError::NotUtf8 { path: "docs/x.md".into(), line: 2, column: 3 });
        assert!(e.to_string().contains("`docs/x.md` is not UTF-8"), "{e}");
    }

    /// A one-page PDF (Helvetica, WinAnsi) with one text line per entry, xref offsets computed.
    fn tiny_pdf(lines: &[&str]) -> Vec<u8> {
        let body = lines.iter().map(|l| format!("({l}) Tj")).collect::<Vec<_>>().join(" 0 -14 Td ");
        let content = format!("BT /F1 12 Tf 72 720 Td {body} ET");
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
            format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
        ];
        let mut out = String::from("%PDF-1.4\n");
        let mut offsets = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            offsets.push(out.len());
            out += &format!("{} 0 obj\n{o}\nendobj\n", i + 1);
        }
        let xref = out.len();
        out += &format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
        for o in offsets {
            out += &format!("{o:010} 00000 n \n");
        }
        out += &format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1);
        out.into_bytes()
    }

    #[test]
    fn pdf_text_layer_is_read() {
        let text = to_text("papers/bird.pdf", &tiny_pdf(&["The chickadee is a small bird.", "It caches food for winter."])).unwrap();
        assert_eq!(text.split_whitespace().collect::<Vec<_>>().join(" "), "The chickadee is a small bird. It caches food for winter.");
    }

    #[test]
    fn bad_or_empty_pdfs_ask_for_markdown() {
        let e = to_text("papers/a.pdf", b"%PDF-1.7\ngarbage").unwrap_err();
        assert!(matches!(&e, DocumentError::Pdf { path, .. } if path == "papers/a.pdf"), "{e}");
        assert!(e.to_string().contains("cannot read the PDF `papers/a.pdf`") && e.to_string().contains("convert it to markdown"), "{e}");
        let e = to_text("scan.PDF", &tiny_pdf(&[])).unwrap_err();
        assert_eq!(e, DocumentError::PdfNoText { path: "scan.PDF".into() });
    }

    #[test]
    fn other_types_are_refused() {
        assert!(matches!(to_text("a.docx", b"PK"), Err(DocumentError::Unsupported { .. })));
        assert!(matches!(to_text("README", b"x"), Err(DocumentError::Unsupported { .. })));
    }
}
