//! Token-aware chunking of a document's text into pieces the teacher reads one at a time.
//!
//! The reference chunks each document to at most 500 tokens of the teacher's tokenizer (docling's
//! hybrid chunker); we do the same with any [`TokenCount`]: the teacher's own [`Tokenizer`] when
//! it is known (the embedded model), else [`WordEstimate`]. The text is cut at the strongest
//! markdown boundary that makes pieces fit — sections (ATX headings, outside code fences), then
//! blank-line paragraphs, then sentences (and list or table lines), then words — and the pieces
//! are packed greedily. A chunk is always a slice of the input (formatting kept) that starts and
//! ends at a word boundary; consecutive chunks share about `overlap_tokens` of trailing text
//! (starting at a sentence when one is near), and a new section starts a new chunk when the
//! current one is at least half full. Only a single word longer than `max_tokens` (a URL, a
//! base64 blob) is cut inside, at character boundaries, so that the bound holds for every chunk.
//! Deterministic: the same text, counter and options give the same chunks.
//!
//! Token counts are not additive (a BPE merge can span the place two pieces meet), so every
//! candidate chunk is counted whole before it is accepted: the bound is exact, not estimated.
//!
//! [`Tokenizer`]: crate::model::Tokenizer

use std::ops::Range;

/// Counts the tokens of a text as some teacher would.
pub trait TokenCount {
    /// Number of tokens of `text`.
    fn count(&self, text: &str) -> usize;
}

/// The teacher's real tokenizer. A text it fails to encode counts as its byte length, an upper
/// bound for byte-level BPE, so a chunk never overshoots because of an encoding error.
impl TokenCount for crate::model::Tokenizer {
    fn count(&self, text: &str) -> usize {
        self.encode(text).map(|ids| ids.len()).unwrap_or(text.len())
    }
}

/// An estimate for teachers whose tokenizer is unknown (HTTP): 4 tokens per 3 words, rounded up,
/// the usual rule of thumb for English with a 32k–50k vocabulary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WordEstimate;

impl TokenCount for WordEstimate {
    fn count(&self, text: &str) -> usize {
        (text.split_whitespace().count() * 4).div_ceil(3)
    }
}

/// Any function of the text is a counter (handy in tests and for ad-hoc budgets).
impl<F: Fn(&str) -> usize> TokenCount for F {
    fn count(&self, text: &str) -> usize {
        self(text)
    }
}

/// How to chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOptions {
    /// Most tokens in one chunk, as counted by the [`TokenCount`] (default 500, the reference's).
    /// At least 1 is used.
    pub max_tokens: usize,
    /// Tokens of trailing text that a chunk repeats from the one before it (default 50; 0 for
    /// none). At most half of `max_tokens` is used.
    pub overlap_tokens: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions { max_tokens: 500, overlap_tokens: 50 }
    }
}

/// Chunks of `text`, in order; none for text that is empty or only whitespace.
pub fn chunk(text: &str, counter: &dyn TokenCount, opts: &ChunkOptions) -> Vec<String> {
    chunk_spans(text, counter, opts).into_iter().map(|r| text[r].to_string()).collect()
}

/// Byte ranges of the chunks of `text` (what [`chunk`] returns, as slices of `text`); a range
/// starts where the previous one's overlap begins, so consecutive ranges overlap.
pub fn chunk_spans(text: &str, counter: &dyn TokenCount, opts: &ChunkOptions) -> Vec<Range<usize>> {
    let max = opts.max_tokens.max(1);
    let ctx = Ctx { text, counter, max, overlap: opts.overlap_tokens.min(max / 2) };
    let mut atoms = Vec::new();
    for (section, heading) in sections(text) {
        ctx.collect(section, Level::Paragraph, heading, &mut atoms);
    }
    ctx.pack(&atoms)
}

/// A piece that fits in a chunk: the unit of packing.
#[derive(Debug, Clone)]
struct Atom {
    range: Range<usize>,
    /// First piece of a section that opens with a heading.
    section: bool,
}

/// The boundary a range is split at next, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Paragraph,
    Sentence,
    Word,
    Char,
}

struct Ctx<'a> {
    text: &'a str,
    counter: &'a dyn TokenCount,
    max: usize,
    overlap: usize,
}

impl Ctx<'_> {
    fn count(&self, r: Range<usize>) -> usize {
        self.counter.count(&self.text[r])
    }

    /// Push the atoms of `range`: itself when it fits, else its pieces at `level`, recursively.
    fn collect(&self, range: Range<usize>, level: Level, section: bool, out: &mut Vec<Atom>) {
        if range.is_empty() {
            return;
        }
        if self.count(range.clone()) <= self.max {
            out.push(Atom { range, section });
            return;
        }
        let (pieces, next) = match level {
            Level::Paragraph => (paragraphs(self.text, range.clone()), Level::Sentence),
            Level::Sentence => (sentences(self.text, range.clone()), Level::Word),
            Level::Word => (words(self.text, range.clone()), Level::Char),
            Level::Char => return self.cut_word(range, section, out),
        };
        for (i, piece) in pieces.into_iter().enumerate() {
            self.collect(piece, next, section && i == 0, out);
        }
    }

    /// Cut one oversized word into the longest char-aligned pieces that fit (at least one char).
    fn cut_word(&self, range: Range<usize>, section: bool, out: &mut Vec<Atom>) {
        let mut start = range.start;
        while start < range.end {
            // Char boundaries after `start`, up to the end of the word.
            let ends: Vec<usize> = self.text[start..range.end].char_indices().skip(1).map(|(i, _)| start + i).chain([range.end]).collect();
            let fits = |i: usize| self.count(start..ends[i]) <= self.max;
            let end = match last_true(ends.len(), fits) {
                Some(i) => ends[i],
                None => ends[0],
            };
            out.push(Atom { range: start..end, section: section && start == range.start });
            start = end;
        }
    }

    /// Greedy packing of atoms into chunk ranges, with overlap.
    fn pack(&self, atoms: &[Atom]) -> Vec<Range<usize>> {
        let mut spans = Vec::new();
        // The chunk being filled: its range and token count.
        let mut cur: Option<(Range<usize>, usize)> = None;
        for atom in atoms {
            let Some((open, tokens)) = cur.take() else {
                cur = Some((atom.range.clone(), self.count(atom.range.clone())));
                continue;
            };
            // A section that starts when the chunk is half full starts a chunk of its own.
            if !(atom.section && tokens * 2 >= self.max) {
                let grown = self.count(open.start..atom.range.end);
                if grown <= self.max {
                    cur = Some((open.start..atom.range.end, grown));
                    continue;
                }
            }
            let next = match self.overlap_start(&open, &atom.range) {
                Some((start, tokens)) => (start..atom.range.end, tokens),
                None => (atom.range.clone(), self.count(atom.range.clone())),
            };
            spans.push(open);
            cur = Some(next);
        }
        spans.extend(cur.map(|(r, _)| r));
        spans
    }

    /// Where the chunk after `prev` starts so that it repeats at most `overlap` tokens of `prev`'s
    /// tail (whole words, never all of `prev`) and still fits with `atom`; with its token count.
    /// A sentence start is preferred when it keeps at least half the overlap, so that a chunk
    /// rarely opens mid-sentence.
    fn overlap_start(&self, prev: &Range<usize>, atom: &Range<usize>) -> Option<(usize, usize)> {
        if self.overlap == 0 {
            return None;
        }
        let starts: Vec<usize> = words(self.text, prev.clone()).into_iter().skip(1).map(|w| w.start).collect();
        // Earlier starts mean more overlap; find the earliest that still fits both budgets.
        let fits = |at: usize| self.count(at..prev.end) <= self.overlap && self.count(at..atom.end) <= self.max;
        let earliest = starts[first_true(starts.len(), |i| fits(starts[i]))?];
        let sentence = sentences(self.text, prev.clone())
            .into_iter()
            .map(|r| r.start)
            .find(|&at| at >= earliest && at > prev.start && self.count(at..prev.end) * 2 >= self.overlap && fits(at));
        let start = sentence.unwrap_or(earliest);
        Some((start, self.count(start..atom.end)))
    }
}

/// The smallest `i < n` with `pred(i)`, for a predicate that is false then true; checked, so
/// the answer satisfies `pred` even where counts are not quite monotone.
fn first_true(n: usize, pred: impl Fn(usize) -> bool) -> Option<usize> {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    (lo < n && pred(lo)).then_some(lo).or_else(|| (n > 0 && pred(n - 1)).then(|| n - 1))
}

/// The largest `i < n` with `pred(i)`, for a predicate that is true then false; checked.
fn last_true(n: usize, pred: impl Fn(usize) -> bool) -> Option<usize> {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    (lo > 0 && pred(lo - 1)).then(|| lo - 1).or_else(|| (n > 0 && pred(0)).then_some(0))
}

/// `range` without leading and trailing whitespace; `None` when nothing is left.
fn trim(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let s = &text[range.clone()];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    (lead < s.len()).then(|| range.start + lead..range.end - trail)
}

/// Lines of `range` as `(range including its '\n', inside a code fence)`.
fn lines(text: &str, range: Range<usize>) -> Vec<(Range<usize>, bool)> {
    let mut out = Vec::new();
    let mut fenced = false;
    let mut start = range.start;
    while start < range.end {
        let end = text[start..range.end].find('\n').map(|i| start + i + 1).unwrap_or(range.end);
        let line = text[start..end].trim_start();
        let fence = line.starts_with("```") || line.starts_with("~~~");
        out.push((start..end, fenced || fence));
        if fence {
            fenced = !fenced;
        }
        start = end;
    }
    out
}

/// An ATX heading: up to 3 spaces, 1–6 `#`, then a space or the end of the line.
fn is_heading(line: &str) -> bool {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let rest = &line[indent..];
    let hashes = rest.len() - rest.trim_start_matches('#').len();
    indent <= 3 && (1..=6).contains(&hashes) && rest[hashes..].chars().next().is_none_or(char::is_whitespace)
}

/// The sections of `text` (a new one at each heading outside code fences), trimmed, each with
/// whether it opens with a heading.
fn sections(text: &str) -> Vec<(Range<usize>, bool)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (line, fenced) in lines(text, 0..text.len()) {
        if !fenced && is_heading(&text[line.clone()]) && line.start > start {
            out.extend(trim(text, start..line.start));
            start = line.start;
        }
    }
    out.extend(trim(text, start..text.len()));
    out.into_iter().map(|r| (r.clone(), is_heading(&text[r]))).collect()
}

/// The blank-line paragraphs of `range` (fenced code counts as one), trimmed; a paragraph that is
/// only a heading line is joined to the one after it, so a heading never ends a chunk alone.
fn paragraphs(text: &str, range: Range<usize>) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut start = range.start;
    for (line, fenced) in lines(text, range.clone()) {
        if !fenced && text[line.clone()].trim().is_empty() {
            out.extend(trim(text, start..line.end));
            start = line.end;
        }
    }
    out.extend(trim(text, start..range.end));
    let mut joined: Vec<Range<usize>> = Vec::with_capacity(out.len());
    let mut heading: Option<Range<usize>> = None;
    for p in out {
        let start = heading.take().map(|h| h.start).unwrap_or(p.start);
        if is_heading(&text[p.clone()]) && !text[p.clone()].contains('\n') {
            heading = Some(start..p.end);
        } else {
            joined.push(start..p.end);
        }
    }
    joined.extend(heading);
    joined
}

/// Sentences of `range`: a cut after `.`, `!` or `?` (and closing quotes or brackets) followed by
/// whitespace, and before a line that starts a list item or table row; trimmed.
fn sentences(text: &str, range: Range<usize>) -> Vec<Range<usize>> {
    let s = &text[range.clone()];
    let bytes = s.as_bytes();
    let mut cuts = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'.' | b'!' | b'?' => {
                let mut j = i + 1;
                while j < bytes.len() && matches!(bytes[j], b'.' | b'!' | b'?' | b'"' | b'\'' | b')' | b']') {
                    j += 1;
                }
                // Closing curly quotes are multi-byte; step over them too.
                while let Some(c) = s[j..].chars().next().filter(|c| matches!(c, '\u{2019}' | '\u{201D}')) {
                    j += c.len_utf8();
                }
                if s[j..].chars().next().is_some_and(char::is_whitespace) {
                    cuts.push(j);
                }
                i = j;
            }
            b'\n' => {
                if starts_item(&s[i + 1..]) {
                    cuts.push(i);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts.into_iter().chain([s.len()]) {
        out.extend(trim(text, range.start + start..range.start + cut));
        start = cut;
    }
    out
}

/// A line that begins a list item (`- `, `* `, `+ `, `1. `, `1) `) or a table row (`|`).
fn starts_item(line: &str) -> bool {
    let l = line.trim_start_matches([' ', '\t']);
    let digits = l.len() - l.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    l.starts_with('|')
        || ["- ", "* ", "+ "].iter().any(|m| l.starts_with(m))
        || digits > 0 && (l[digits..].starts_with(". ") || l[digits..].starts_with(") "))
}

/// The whitespace-separated words of `range`.
fn words(text: &str, range: Range<usize>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text[range.clone()].char_indices() {
        let at = range.start + i;
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push(s..at);
                start = None;
            }
            (false, None) => start = Some(at),
            _ => {}
        }
    }
    out.extend(start.map(|s| s..range.end));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opts(max_tokens: usize, overlap_tokens: usize) -> ChunkOptions {
        ChunkOptions { max_tokens, overlap_tokens }
    }

    fn wordlist(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    /// Checks every promise of [`chunk_spans`] on one input; returns the spans.
    fn check(text: &str, counter: &dyn TokenCount, o: &ChunkOptions) -> Vec<Range<usize>> {
        let spans = chunk_spans(text, counter, o);
        let chunks = chunk(text, counter, o);
        assert_eq!(chunks.len(), spans.len());
        let mut covered: Vec<&str> = Vec::new();
        let mut prev_end = 0;
        for (i, (span, c)) in spans.iter().zip(&chunks).enumerate() {
            assert_eq!(&text[span.clone()], c);
            assert!(!c.trim().is_empty(), "chunk {i} is empty");
            assert_eq!(c.trim(), c, "chunk {i} has surrounding whitespace");
            let n = counter.count(c);
            assert!(n <= o.max_tokens.max(1), "chunk {i} has {n} > {} tokens: {c:?}", o.max_tokens);
            // The overlap is the part of this chunk that the previous one already had.
            let shared = if i > 0 && span.start < prev_end { wordlist(&text[span.start..prev_end]).len() } else { 0 };
            if shared > 0 {
                assert!(counter.count(&text[span.start..prev_end]) <= o.overlap_tokens, "chunk {i}: overlap too long");
                assert!(span.start > spans[i - 1].start, "chunk {i} repeats all of chunk {}", i - 1);
            }
            covered.extend(&wordlist(c)[shared..]);
            prev_end = span.end;
        }
        assert_eq!(covered, wordlist(text), "chunks minus overlaps are not the input's words");
        assert_eq!(chunk_spans(text, counter, o), spans, "not deterministic");
        spans
    }

    /// Markdown-ish text: sections with headings, paragraphs, sentences, list items, odd spacing.
    fn markdown() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            "[a-z]{1,9}",
            "[A-Z][a-z]{0,8}[.!?,;:]?",
            "[0-9]{1,4}(\\.[0-9]{1,2})?",
            Just("é".to_string()),
            Just("naïve".to_string()),
            Just("(e.g.".to_string()),
            Just("\"quoted.\"".to_string())
        ];
        let sentence = prop::collection::vec(word, 1..25).prop_map(|w| format!("{}.", w.join(" ")));
        let paragraph = (prop::collection::vec(sentence, 1..8), 0..4usize).prop_map(|(s, style)| match style {
            0 => s.join(" "),
            1 => s.join("\n"),
            2 => s.iter().map(|x| format!("- {x}")).collect::<Vec<_>>().join("\n"),
            _ => s.join("  \t"),
        });
        let section = (0..4usize, "[A-Za-z ]{1,20}", prop::collection::vec(paragraph, 0..5)).prop_map(|(level, title, paras)| {
            let head = if level == 0 { String::new() } else { format!("{} {}\n\n", "#".repeat(level), title.trim()) };
            format!("{head}{}", paras.join("\n\n"))
        });
        prop::collection::vec(section, 0..6).prop_map(|s| s.join("\n\n\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn word_estimate_chunks_fit_cover_and_overlap(text in markdown(), max in 4usize..300, overlap in 0usize..80) {
            check(&text, &WordEstimate, &opts(max, overlap));
        }

        #[test]
        fn char_counter_chunks_fit_cover_and_overlap(text in markdown(), max in 12usize..200, overlap in 0usize..60) {
            // Not additive: the count of a join is not the sum of the counts of its parts.
            let chars = |s: &str| s.chars().count().div_ceil(4);
            check(&text, &chars, &opts(max, overlap));
        }
    }

    #[test]
    fn empty_and_blank_text_has_no_chunks() {
        for text in ["", "   ", "\n\n\t\n"] {
            assert!(chunk(text, &WordEstimate, &ChunkOptions::default()).is_empty(), "{text:?}");
        }
    }

    #[test]
    fn short_text_is_one_chunk_kept_as_written() {
        let text = "# Title\n\nOne paragraph.\n\n## Sub\n\n- a\n- b\n";
        assert_eq!(chunk(text, &WordEstimate, &ChunkOptions::default()), vec![text.trim_end().to_string()]);
    }

    #[test]
    fn sections_and_paragraphs_are_preferred_cuts() {
        let para = |n: usize, w: &str| vec![w; n].join(" ") + ".";
        // Two sections of 30 words (40 tokens each) under a 60-token budget: one chunk each.
        let text = format!("# A\n\n{}\n\n# B\n\n{}", para(30, "x"), para(30, "y"));
        let chunks = check(&text, &WordEstimate, &opts(60, 0));
        assert_eq!(chunks.len(), 2);
        assert!(text[chunks[1].clone()].starts_with("# B"), "{:?}", &text[chunks[1].clone()]);
        // Paragraphs: a cut falls between them, not inside one.
        let text = format!("{}\n\n{}\n\n{}", para(20, "a"), para(20, "b"), para(20, "c"));
        let spans = check(&text, &WordEstimate, &opts(60, 0));
        assert_eq!(
            spans.iter().map(|r| &text[r.clone()]).collect::<Vec<_>>(),
            vec![format!("{}\n\n{}", para(20, "a"), para(20, "b")), para(20, "c")]
        );
    }

    #[test]
    fn a_heading_is_never_left_alone_at_the_end_of_a_chunk() {
        let body = vec!["word"; 40].join(" ") + ".";
        let text = format!("intro.\n\n## Heading\n\n{body}\n\n{body}");
        for span in check(&text, &WordEstimate, &opts(60, 0)) {
            assert!(!text[span].ends_with("## Heading"));
        }
    }

    #[test]
    fn long_sentences_fall_back_to_words_and_overlap_is_about_the_budget() {
        let text = (0..1000).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        let spans = check(&text, &WordEstimate, &opts(100, 20));
        for pair in spans.windows(2) {
            let shared = WordEstimate.count(&text[pair[1].start..pair[0].end]);
            assert!((18..=20).contains(&shared), "overlap {shared} tokens");
            assert!(WordEstimate.count(&text[pair[0].clone()]) >= 98);
        }
    }

    #[test]
    fn overlap_starts_at_a_sentence_when_one_is_near() {
        // Sentences of 6 words (8 tokens): a 20-token overlap holds two whole sentences.
        let text = (0..100).map(|i| format!("S{i} w w w w w.")).collect::<Vec<_>>().join(" ");
        let spans = check(&text, &WordEstimate, &opts(60, 20));
        assert!(spans.len() > 5);
        for pair in spans.windows(2) {
            assert!(text[pair[1].clone()].starts_with('S'), "{:?}", &text[pair[1].clone()]);
            let shared = WordEstimate.count(&text[pair[1].start..pair[0].end]);
            assert!((10..=20).contains(&shared), "overlap {shared} tokens");
        }
    }

    #[test]
    fn an_oversized_word_is_cut_at_char_boundaries() {
        let chars = |s: &str| s.chars().count();
        let text = format!("short {} tail", "é".repeat(25));
        let chunks = chunk(&text, &chars, &opts(10, 0));
        assert!(chunks.iter().all(|c| c.chars().count() <= 10), "{chunks:?}");
        assert_eq!(chunks.concat().replace(' ', ""), text.replace(' ', ""));
    }

    #[test]
    fn code_fences_hide_headings_and_blank_lines() {
        let text = "before.\n\n```\n# not a heading\n\nstill code\n```\n\nafter.";
        let secs = sections(text);
        assert_eq!(secs.len(), 1);
        let paras: Vec<&str> = paragraphs(text, 0..text.len()).into_iter().map(|r| &text[r]).collect();
        assert_eq!(paras, vec!["before.", "```\n# not a heading\n\nstill code\n```", "after."]);
    }

    #[test]
    fn sentences_cut_after_terminators_and_before_list_items() {
        let text = "It rained. \"Really?\" Yes (truly.) Pi is 3.14 today\n- item one\n- item two";
        let got: Vec<&str> = sentences(text, 0..text.len()).into_iter().map(|r| &text[r]).collect();
        assert_eq!(got, vec!["It rained.", "\"Really?\"", "Yes (truly.)", "Pi is 3.14 today", "- item one", "- item two"]);
    }

    #[test]
    fn headings_are_atx_only() {
        assert!(is_heading("# A") && is_heading("###### A") && is_heading("   ## A") && is_heading("#"));
        assert!(!is_heading("#hashtag") && !is_heading("####### seven") && !is_heading("    # code"));
    }

    #[test]
    fn options_are_clamped() {
        // max 0 behaves as 1; overlap above half the budget is cut to half.
        let chars = |s: &str| s.chars().count();
        assert_eq!(check("a b c", &chars, &opts(0, 0)).len(), 3);
        let spans = check(&vec!["w"; 300].join(" "), &WordEstimate, &opts(40, 500));
        assert!(spans.len() > 1);
    }

    #[test]
    fn word_estimate_is_four_thirds_per_word() {
        assert_eq!(WordEstimate.count(""), 0);
        assert_eq!(WordEstimate.count("one"), 2);
        assert_eq!(WordEstimate.count("one two three"), 4);
        assert_eq!(WordEstimate.count("a b c d e f"), 8);
    }
}
