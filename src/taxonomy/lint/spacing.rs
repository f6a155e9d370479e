//! Token rules about spaces: colons, commas, hyphens, braces, brackets.
use super::indentation::Indent;
use super::lines::push;
use super::scanner::{Scanner, Tok, K};
use super::LintFinding;
use std::collections::VecDeque;

// --------------------------------------------------------------- token rules

/// Run the token rules; returns where the scanner stopped on malformed input, if it did.
pub(super) fn token_rules(text: &str, out: &mut Vec<LintFinding>) -> Option<super::scanner::Mark> {
    let mut sc = Scanner::new(text);
    let mut win: VecDeque<Tok> = VecDeque::new();
    let mut prev: Option<Tok> = None;
    let mut ind = Indent::new();
    loop {
        while win.len() < 4 {
            match sc.next_token() {
                Some(t) => win.push_back(t),
                None => break,
            }
        }
        let Some(cur) = win.pop_front() else { break };
        let next = win.front().copied();
        spacing(prev, cur, next, out);
        ind.token(cur, &win, out);
        if cur.k != K::BEnd {
            prev = Some(cur);
        }
    }
    sc.failed_at()
}

fn spacing(prev: Option<Tok>, cur: Tok, next: Option<Tok>, out: &mut Vec<LintFinding>) {
    // Spaces between `cur` and `next` when both are on one line.
    let after = next.filter(|n| n.s.line == cur.e.line).map(|n| (n.s.col.saturating_sub(cur.e.col), n));
    let before = prev.filter(|p| p.e.line == cur.s.line).map(|p| (cur.s.col.saturating_sub(p.e.col), p));
    let l = cur.s.line + 1;
    match cur.k {
        K::Value => {
            if let Some((sp, p)) = before {
                if sp > if p.k == K::Alias { 1 } else { 0 } {
                    push(out, l, cur.s.col, "colons", "too many spaces before colon".into());
                }
            }
            if let Some((sp, n)) = after {
                if sp > 1 {
                    push(out, n.s.line + 1, n.s.col, "colons", "too many spaces after colon".into());
                }
            }
        }
        K::Key if cur.e != cur.s => {
            if let Some((sp, n)) = after {
                if sp > 1 {
                    push(out, n.s.line + 1, n.s.col, "colons", "too many spaces after question mark".into());
                }
            }
        }
        K::FEntry => {
            match (prev, before) {
                (_, Some((sp, _))) if sp > 0 => push(out, l, cur.s.col, "commas", "too many spaces before comma".into()),
                (Some(_), None) => push(out, l, cur.s.col, "commas", "too many spaces before comma".into()),
                _ => {}
            }
            if let Some((sp, n)) = after {
                if sp > 1 {
                    push(out, n.s.line + 1, n.s.col, "commas", "too many spaces after comma".into());
                } else if sp < 1 {
                    push(out, n.s.line + 1, n.s.col + 1, "commas", "too few spaces after comma".into());
                }
            }
        }
        K::BEntry => {
            if let Some((sp, n)) = after {
                if sp > 1 {
                    push(out, n.s.line + 1, n.s.col, "hyphens", "too many spaces after hyphen".into());
                }
            }
        }
        K::FMapStart | K::FSeqStart => {
            let (rule, what, close) =
                if cur.k == K::FMapStart { ("braces", "braces", K::FMapEnd) } else { ("brackets", "brackets", K::FSeqEnd) };
            if let Some((sp, n)) = after {
                if sp > 1 {
                    let empty = if n.k == close { "empty " } else { "" };
                    push(out, n.s.line + 1, n.s.col, rule, format!("too many spaces inside {}{}", empty, what));
                }
            }
        }
        K::FMapEnd | K::FSeqEnd => {
            let (rule, open) = if cur.k == K::FMapEnd { ("braces", K::FMapStart) } else { ("brackets", K::FSeqStart) };
            if let Some((sp, p)) = before {
                if p.k != open && sp > 1 {
                    push(out, l, cur.s.col, rule, format!("too many spaces inside {}", rule));
                }
            }
        }
        _ => {}
    }
}
