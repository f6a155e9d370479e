//! The indentation rule (spaces: consistent, indent-sequences: consistent).
use super::lines::push;
use super::scanner::{Tok, K};
use super::LintFinding;
use std::collections::VecDeque;

// --------------------------------------------------------------- indentation

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum P {
    Root,
    BMap,
    FMap,
    BSeq,
    FSeq,
    BEnt,
    Key,
    Val,
}

#[derive(Clone, Copy, Debug)]
struct Parent {
    p: P,
    indent: i64,
    line_indent: i64,
    /// For `Key`: an explicit `? ` key.
    explicit: bool,
}

pub(super) struct Indent {
    stack: Vec<Parent>,
    spaces: Option<i64>,
    seq_indented: Option<bool>,
    last_line: Option<usize>,
    line_indent: i64,
}

fn is_content(k: K) -> bool {
    matches!(k, K::Scalar | K::Alias | K::Anchor | K::Tag | K::BMapStart | K::BSeqStart | K::FMapStart | K::FSeqStart)
}

impl Indent {
    pub(super) fn new() -> Self {
        let root = Parent { p: P::Root, indent: 0, line_indent: 0, explicit: false };
        Indent { stack: vec![root], spaces: None, seq_indented: None, last_line: None, line_indent: 0 }
    }

    fn top(&self) -> Parent {
        self.stack.last().copied().unwrap_or(Parent { p: P::Root, indent: 0, line_indent: 0, explicit: false })
    }

    fn pop_while(&mut self, f: impl Fn(P) -> bool) {
        while self.stack.len() > 1 && f(self.top().p) {
            self.stack.pop();
        }
    }

    fn push(&mut self, p: P, indent: i64) {
        self.stack.push(Parent { p, indent, line_indent: self.line_indent, explicit: false });
    }

    fn detect(&mut self, base: i64, col: usize) -> i64 {
        let sp = *self.spaces.get_or_insert(col as i64 - base);
        base + sp
    }

    pub(super) fn token(&mut self, t: Tok, ahead: &VecDeque<Tok>, out: &mut Vec<LintFinding>) {
        let flow_stop = |p: P| !matches!(p, P::FSeq | P::FMap);
        match t.k {
            K::BEnd => {
                while self.stack.len() > 1 {
                    let p = self.stack.pop().map(|x| x.p);
                    if matches!(p, Some(P::BMap) | Some(P::BSeq)) {
                        break;
                    }
                }
                return;
            }
            K::Key => self.pop_while(|p| !matches!(p, P::BMap | P::FMap | P::FSeq)),
            K::Value => self.pop_while(|p| !matches!(p, P::Key | P::BMap | P::FMap | P::FSeq)),
            K::BEntry => self.pop_while(|p| p == P::BEnt),
            K::FEntry | K::FMapEnd | K::FSeqEnd => self.pop_while(flow_stop),
            K::DocStart | K::DocEnd | K::StreamEnd | K::Directive => self.stack.truncate(1),
            _ => {}
        }
        let first = self.last_line.is_none_or(|l| t.s.line > l);
        if first && t.k != K::StreamEnd {
            let top = self.top();
            let expected = match t.k {
                K::FMapEnd | K::FSeqEnd => top.line_indent,
                K::Value if top.p == P::Key => {
                    let n = self.stack.len();
                    self.stack.get(n.wrapping_sub(2)).map_or(0, |x| x.indent)
                }
                _ => top.indent,
            };
            let found = t.s.col as i64;
            if found != expected {
                let msg = format!("wrong indentation: expected {} but found {}", expected, found);
                push(out, t.s.line + 1, t.s.col + 1, "indentation", msg);
            }
            self.line_indent = found;
        }
        self.last_line = Some(t.e.line);
        let next = ahead.front().copied();
        let same_line = |n: &Tok| n.s.line == t.e.line;
        match t.k {
            K::BMapStart => self.push(P::BMap, t.s.col as i64),
            K::BSeqStart => self.push(P::BSeq, t.s.col as i64),
            K::FMapEnd | K::FSeqEnd if self.stack.len() > 1 => {
                self.stack.pop();
            }
            K::BEntry => {
                if self.top().p != P::BSeq {
                    self.push(P::BSeq, t.s.col as i64);
                }
                let base = self.top().indent;
                let i = match next {
                    Some(n) if same_line(&n) => n.s.col as i64,
                    Some(n) if is_content(n.k) => self.detect(base, n.s.col),
                    _ => base,
                };
                self.push(P::BEnt, i);
            }
            K::Key => {
                let base = self.top().indent;
                let i = match next {
                    Some(n) if t.s != t.e && !same_line(&n) && is_content(n.k) => self.detect(base, n.s.col),
                    _ => base,
                };
                self.push(P::Key, i);
                if let Some(k) = self.stack.last_mut() {
                    k.explicit = t.s != t.e;
                }
            }
            K::Value => {
                let explicit = self.top().p == P::Key && self.top().explicit;
                let base = if self.top().p == P::Key {
                    let n = self.stack.len();
                    self.stack.get(n.wrapping_sub(2)).map_or(0, |x| x.indent)
                } else {
                    self.top().indent
                };
                let n = ahead.iter().find(|n| !matches!(n.k, K::Anchor | K::Tag)).copied();
                let i = match n {
                    Some(n) if same_line(&n) && explicit && is_content(n.k) => self.detect(base, n.s.col),
                    Some(n) if same_line(&n) => n.s.col as i64,
                    Some(n) if matches!(n.k, K::BEntry | K::BSeqStart) => {
                        let indented = *self.seq_indented.get_or_insert(n.s.col as i64 > base);
                        if indented {
                            self.detect(base, n.s.col)
                        } else {
                            base
                        }
                    }
                    Some(n) if is_content(n.k) => self.detect(base, n.s.col),
                    _ => base,
                };
                self.push(P::Val, i);
            }
            K::FMapStart | K::FSeqStart => {
                let i = match next {
                    Some(n) if same_line(&n) => n.s.col as i64,
                    Some(n) => self.detect(self.line_indent, n.s.col),
                    None => self.line_indent,
                };
                self.push(if t.k == K::FMapStart { P::FMap } else { P::FSeq }, i);
            }
            _ => {}
        }
    }
}
