//! A streaming YAML 1.1 tokenizer with PyYAML's token model and positions
//! (what yamllint's token rules see). Iterative, bounded lookahead.
use std::collections::VecDeque;

// ------------------------------------------------------------------- scanner

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum K {
    StreamEnd,
    Directive,
    DocStart,
    DocEnd,
    BSeqStart,
    BMapStart,
    BEnd,
    FSeqStart,
    FMapStart,
    FSeqEnd,
    FMapEnd,
    BEntry,
    FEntry,
    Key,
    Value,
    Alias,
    Anchor,
    Tag,
    Scalar,
}

/// Position in PyYAML's convention: 0-based line and column (in chars).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mark {
    pub(super) line: usize,
    pub(super) col: usize,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Tok {
    pub(super) k: K,
    pub(super) s: Mark,
    pub(super) e: Mark,
}

#[derive(Clone, Copy)]
struct SimpleKey {
    level: usize,
    num: usize,
    required: bool,
    ci: usize,
    mark: Mark,
}

/// Scanning stopped on malformed input.
struct Stop;

type R = Result<(), Stop>;

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

pub(super) struct Scanner<'a> {
    t: &'a str,
    pos: usize,
    ci: usize,
    line: usize,
    col: usize,
    q: VecDeque<Tok>,
    taken: usize,
    done: bool,
    /// Where scanning failed, if it did.
    failed: Option<Mark>,
    flow: usize,
    indent: i64,
    indents: Vec<i64>,
    allow_key: bool,
    keys: VecDeque<SimpleKey>,
}

impl<'a> Scanner<'a> {
    pub(super) fn new(t: &'a str) -> Self {
        Scanner {
            t,
            pos: 0,
            ci: 0,
            line: 0,
            col: 0,
            q: VecDeque::new(),
            taken: 0,
            done: false,
            failed: None,
            flow: 0,
            indent: -1,
            indents: Vec::new(),
            allow_key: true,
            keys: VecDeque::new(),
        }
    }

    fn eof(&self) -> bool {
        self.pos >= self.t.len()
    }

    /// The char `k` chars ahead; '\0' means end of input (a real NUL reads as U+0001).
    fn ch(&self, k: usize) -> char {
        let rest = self.t.as_bytes().get(self.pos..).unwrap_or(&[]);
        if k == 0 {
            match rest.first() {
                None => return '\0',
                Some(&b) if b < 0x80 => return if b == 0 { '\u{1}' } else { b as char },
                _ => {}
            }
        }
        match self.t.get(self.pos..).and_then(|s| s.chars().nth(k)) {
            None => '\0',
            Some('\0') => '\u{1}',
            Some(c) => c,
        }
    }

    fn blank(&self, k: usize) -> bool {
        let c = self.ch(k);
        c == '\0' || c == ' ' || c == '\t' || is_break(c)
    }

    fn fwd(&mut self) {
        let c = self.ch(0);
        if self.eof() {
            return;
        }
        let real = self.t.get(self.pos..).and_then(|s| s.chars().next()).unwrap_or(' ');
        self.pos += real.len_utf8();
        self.ci += 1;
        if c == '\n' || c == '\u{85}' || c == '\u{2028}' || c == '\u{2029}' || (c == '\r' && self.ch(0) != '\n') {
            self.line += 1;
            self.col = 0;
        } else if c != '\u{feff}' {
            self.col += 1;
        }
    }

    fn fwd_n(&mut self, n: usize) {
        for _ in 0..n {
            self.fwd();
        }
    }

    fn mark(&self) -> Mark {
        Mark { line: self.line, col: self.col }
    }

    fn line_break(&mut self) {
        if self.ch(0) == '\r' && self.ch(1) == '\n' {
            self.fwd_n(2);
        } else if is_break(self.ch(0)) {
            self.fwd();
        }
    }

    fn emit(&mut self, k: K, s: Mark) {
        let e = self.mark();
        self.q.push_back(Tok { k, s, e });
    }

    /// Where scanning stopped on malformed input (after `next_token` returned `None`).
    pub(super) fn failed_at(&self) -> Option<Mark> {
        self.failed
    }

    /// Next token, or None at the end (or after a scanning error).
    pub(super) fn next_token(&mut self) -> Option<Tok> {
        while self.need_more() {
            if self.fetch().is_err() {
                self.done = true;
                self.failed = Some(self.mark());
            }
        }
        let t = self.q.pop_front()?;
        self.taken += 1;
        Some(t)
    }

    fn need_more(&mut self) -> bool {
        if self.done {
            return false;
        }
        if self.q.is_empty() {
            return true;
        }
        if self.stale_keys().is_err() {
            self.done = true;
            self.failed = Some(self.mark());
            return false;
        }
        self.keys.front().map(|k| k.num) == Some(self.taken)
    }

    fn stale_keys(&mut self) -> R {
        while let Some(k) = self.keys.front() {
            if k.mark.line != self.line || self.ci - k.ci > 1024 {
                if k.required {
                    return Err(Stop);
                }
                self.keys.pop_front();
            } else {
                break;
            }
        }
        Ok(())
    }

    fn save_key(&mut self) -> R {
        if self.allow_key {
            self.remove_key()?;
            let required = self.flow == 0 && self.indent == self.col as i64;
            let num = self.taken + self.q.len();
            let k = SimpleKey { level: self.flow, num, required, ci: self.ci, mark: self.mark() };
            self.keys.push_back(k);
        }
        Ok(())
    }

    fn remove_key(&mut self) -> R {
        if let Some(k) = self.keys.back() {
            if k.level == self.flow {
                if k.required {
                    return Err(Stop);
                }
                self.keys.pop_back();
            }
        }
        Ok(())
    }

    fn roll_indent(&mut self, col: usize, at: Option<usize>, k: K, m: Mark) {
        if self.flow > 0 || self.indent >= col as i64 {
            return;
        }
        self.indents.push(self.indent);
        self.indent = col as i64;
        let t = Tok { k, s: m, e: m };
        match at.and_then(|n| n.checked_sub(self.taken)) {
            Some(i) if i <= self.q.len() => self.q.insert(i, t),
            _ => self.q.push_back(t),
        }
    }

    fn unwind_indent(&mut self, col: i64) {
        if self.flow > 0 {
            return;
        }
        while self.indent > col {
            let m = self.mark();
            self.indent = self.indents.pop().unwrap_or(-1);
            self.q.push_back(Tok { k: K::BEnd, s: m, e: m });
        }
    }

    fn skip_to_token(&mut self) {
        loop {
            while self.ch(0) == ' ' {
                self.fwd();
            }
            if self.ch(0) == '#' {
                while !self.eof() && !is_break(self.ch(0)) {
                    self.fwd();
                }
            }
            if !self.eof() && is_break(self.ch(0)) {
                self.line_break();
                if self.flow == 0 {
                    self.allow_key = true;
                }
            } else {
                break;
            }
        }
    }

    fn doc_marker(&self, c: char) -> bool {
        self.col == 0 && self.ch(0) == c && self.ch(1) == c && self.ch(2) == c && self.blank(3)
    }

    fn fetch(&mut self) -> R {
        self.skip_to_token();
        self.stale_keys()?;
        self.unwind_indent(self.col as i64);
        let s = self.mark();
        if self.eof() {
            self.unwind_indent(-1);
            self.remove_key()?;
            self.allow_key = false;
            self.emit(K::StreamEnd, s);
            self.done = true;
            return Ok(());
        }
        let c = self.ch(0);
        let flow = self.flow > 0;
        match c {
            '%' if self.col == 0 => {
                self.unwind_indent(-1);
                self.remove_key()?;
                self.allow_key = false;
                while !self.eof() && !is_break(self.ch(0)) {
                    self.fwd();
                }
                self.emit(K::Directive, s);
            }
            '-' | '.' if self.doc_marker(c) => {
                self.unwind_indent(-1);
                self.remove_key()?;
                self.allow_key = false;
                self.fwd_n(3);
                self.emit(if c == '-' { K::DocStart } else { K::DocEnd }, s);
            }
            '[' | '{' => {
                self.save_key()?;
                self.flow += 1;
                self.allow_key = true;
                self.fwd();
                self.emit(if c == '[' { K::FSeqStart } else { K::FMapStart }, s);
            }
            ']' | '}' => {
                self.remove_key()?;
                self.flow = self.flow.saturating_sub(1);
                self.allow_key = false;
                self.fwd();
                self.emit(if c == ']' { K::FSeqEnd } else { K::FMapEnd }, s);
            }
            ',' => {
                self.allow_key = true;
                self.remove_key()?;
                self.fwd();
                self.emit(K::FEntry, s);
            }
            '-' if self.blank(1) => {
                if !flow {
                    if !self.allow_key {
                        return Err(Stop);
                    }
                    self.roll_indent(self.col, None, K::BSeqStart, s);
                }
                self.allow_key = true;
                self.remove_key()?;
                self.fwd();
                self.emit(K::BEntry, s);
            }
            '?' if flow || self.blank(1) => {
                if !flow {
                    if !self.allow_key {
                        return Err(Stop);
                    }
                    self.roll_indent(self.col, None, K::BMapStart, s);
                }
                self.allow_key = !flow;
                self.remove_key()?;
                self.fwd();
                self.emit(K::Key, s);
            }
            ':' if flow || self.blank(1) => self.fetch_value(s)?,
            '*' | '&' => {
                self.save_key()?;
                self.allow_key = false;
                self.fwd();
                let mut n = 0;
                while matches!(self.ch(0), '0'..='9' | 'a'..='z' | 'A'..='Z' | '-' | '_') {
                    self.fwd();
                    n += 1;
                }
                let nc = self.ch(0);
                if n == 0 || !(self.blank(0) || "?:,]}%@`".contains(nc)) {
                    return Err(Stop);
                }
                self.emit(if c == '*' { K::Alias } else { K::Anchor }, s);
            }
            '!' => {
                self.save_key()?;
                self.allow_key = false;
                self.fwd();
                if self.ch(0) == '<' {
                    while !self.eof() && self.ch(0) != '>' && !self.blank(0) {
                        self.fwd();
                    }
                    if self.ch(0) != '>' {
                        return Err(Stop);
                    }
                    self.fwd();
                } else {
                    while self.ch(0).is_ascii_alphanumeric() || "-;/?:@&=+$,_.!~*'()[]%".contains(self.ch(0)) {
                        self.fwd();
                    }
                }
                if !self.blank(0) {
                    return Err(Stop);
                }
                self.emit(K::Tag, s);
            }
            '|' | '>' if !flow => {
                self.allow_key = true;
                self.remove_key()?;
                self.block_scalar(s)?;
            }
            '\'' | '"' => {
                self.save_key()?;
                self.allow_key = false;
                self.quoted(c, s)?;
            }
            _ => {
                let plain_start = (!c.is_whitespace() || c == '\u{85}' || c == '\u{a0}') && !"-?:,[]{}#&*!|>'\"%@`".contains(c)
                    || (!self.blank(1) && (c == '-' || (!flow && (c == '?' || c == ':'))));
                if !plain_start || c == '\t' || c == '\u{1}' {
                    return Err(Stop);
                }
                self.save_key()?;
                self.allow_key = false;
                self.plain(s)?;
            }
        }
        Ok(())
    }

    fn fetch_value(&mut self, s: Mark) -> R {
        let key = self.keys.back().copied().filter(|k| k.level == self.flow);
        if let Some(k) = key {
            self.keys.pop_back();
            let t = Tok { k: K::Key, s: k.mark, e: k.mark };
            let i = k.num.saturating_sub(self.taken).min(self.q.len());
            self.q.insert(i, t);
            self.roll_indent(k.mark.col, Some(k.num), K::BMapStart, k.mark);
            self.allow_key = false;
        } else {
            if self.flow == 0 {
                if !self.allow_key {
                    return Err(Stop);
                }
                self.roll_indent(self.col, None, K::BMapStart, s);
            }
            self.allow_key = self.flow == 0;
            self.remove_key()?;
        }
        self.fwd();
        self.emit(K::Value, s);
        Ok(())
    }

    fn block_scalar(&mut self, s: Mark) -> R {
        self.fwd();
        let mut incr = 0i64;
        for _ in 0..2 {
            let c = self.ch(0);
            if c == '+' || c == '-' {
                self.fwd();
            } else if let Some(d) = c.to_digit(10) {
                if d == 0 || incr != 0 {
                    return Err(Stop);
                }
                incr = d as i64;
                self.fwd();
            }
        }
        while self.ch(0) == ' ' {
            self.fwd();
        }
        if self.ch(0) == '#' {
            while !self.eof() && !is_break(self.ch(0)) {
                self.fwd();
            }
        }
        if !self.eof() && !is_break(self.ch(0)) {
            return Err(Stop);
        }
        let mut end = self.mark();
        self.line_break();
        let min = (self.indent + 1).max(1);
        let ind = if incr > 0 {
            min + incr - 1
        } else {
            let mut max = 0i64;
            while self.ch(0) == ' ' || (!self.eof() && is_break(self.ch(0))) {
                if self.ch(0) == ' ' {
                    self.fwd();
                    max = max.max(self.col as i64);
                } else {
                    self.line_break();
                }
            }
            min.max(max)
        };
        loop {
            while (self.col as i64) < ind && self.ch(0) == ' ' {
                self.fwd();
            }
            if !self.eof() && is_break(self.ch(0)) {
                self.line_break();
                continue;
            }
            if self.col as i64 != ind || self.eof() {
                break;
            }
            while !self.eof() && !is_break(self.ch(0)) {
                self.fwd();
            }
            end = self.mark();
            self.line_break();
        }
        self.q.push_back(Tok { k: K::Scalar, s, e: end });
        Ok(())
    }

    fn quoted(&mut self, q: char, s: Mark) -> R {
        self.fwd();
        loop {
            if self.eof() {
                return Err(Stop);
            }
            let c = self.ch(0);
            if c == q {
                if q == '\'' && self.ch(1) == '\'' {
                    self.fwd_n(2);
                    continue;
                }
                self.fwd();
                break;
            }
            if q == '"' && c == '\\' {
                self.fwd();
                if is_break(self.ch(0)) {
                    self.line_break();
                } else {
                    self.fwd();
                }
            } else if is_break(c) {
                self.line_break();
            } else {
                self.fwd();
                continue;
            }
            if self.doc_marker('-') || self.doc_marker('.') {
                return Err(Stop);
            }
        }
        self.emit(K::Scalar, s);
        Ok(())
    }

    fn plain(&mut self, s: Mark) -> R {
        let flow = self.flow > 0;
        let ind = self.indent + 1;
        let mut end = s;
        loop {
            if self.ch(0) == '#' {
                break;
            }
            let mut n = 0;
            loop {
                let c = self.ch(0);
                if self.blank(0)
                    || (c == ':' && (self.blank(1) || (flow && ",[]{}".contains(self.ch(1)))))
                    || (flow && ",?[]{}".contains(c))
                {
                    break;
                }
                self.fwd();
                n += 1;
            }
            if n == 0 {
                break;
            }
            end = self.mark();
            let mut spaces = false;
            while self.ch(0) == ' ' {
                self.fwd();
                spaces = true;
            }
            if !self.eof() && is_break(self.ch(0)) {
                self.line_break();
                self.allow_key = true;
                spaces = true;
                loop {
                    if self.doc_marker('-') || self.doc_marker('.') {
                        spaces = false;
                        break;
                    }
                    if self.ch(0) == ' ' {
                        self.fwd();
                    } else if !self.eof() && is_break(self.ch(0)) {
                        self.line_break();
                    } else {
                        break;
                    }
                }
            }
            if !spaces || self.ch(0) == '#' || (!flow && (self.col as i64) < ind) {
                break;
            }
        }
        if end == s {
            return Err(Stop);
        }
        self.q.push_back(Tok { k: K::Scalar, s, e: end });
        Ok(())
    }
}
