//! A constraint as a token-level automaton: which tokens of a vocabulary may come next.
//!
//! The constraint's regex compiles once into a byte-level DFA (regex-automata's dense DFA,
//! anchored at the start, `\z` at the end, every match kept so no prefix ends it early). A
//! decoding sequence holds one DFA state. [`TokenAutomaton::allowed`] walks a trie of the
//! vocabulary's token bytes from that state, pruning at the DFA's dead state, and returns the
//! set of tokens whose bytes keep the completion a prefix of some match — plus the end tokens
//! when the text so far is a whole match. Sets are cached per DFA state (a regex has few states
//! and decoding revisits them), so a constrained step usually costs one hash lookup and one
//! pass over the logits.
//!
//! Tokens are bytes, not characters: a token holding half of a UTF-8 character is allowed when
//! some continuation completes it, so byte-level BPE vocabularies work as they are.

use super::ConstraintError;
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Largest DFA (and determinisation working memory) one constraint may take.
const DFA_LIMIT: usize = 64 << 20;
/// Most cached token sets per automaton; past it the cache starts over.
const MASK_CACHE: usize = 4096;

/// A model's vocabulary as bytes, in a trie, with the ids that end a completion.
///
/// The trie is flat, in preorder: node `i`'s subtree is `i..skip[i]`, so a walk is one pass
/// over a few arrays that leaves a dead subtree with one jump instead of chasing child lists.
pub struct Vocabulary {
    size: usize,
    end: Vec<u32>,
    /// Each token's bytes (empty for tokens never written).
    bytes: Vec<Box<[u8]>>,
    /// Per node, in preorder (node 0 is the root, whose entries are unused): the byte on the
    /// edge into it, its depth, the first node after its subtree, and where its tokens start in
    /// `tokens` (they end where the next node's start).
    byte: Vec<u8>,
    depth: Vec<u16>,
    skip: Vec<u32>,
    first_token: Vec<u32>,
    /// Ids of the tokens whose bytes end at each node, node by node.
    tokens: Vec<u32>,
    /// The deepest node's depth: the longest token.
    max_depth: usize,
}

impl Vocabulary {
    /// `tokens[id]` is the token's bytes, `None` for tokens a constrained completion never
    /// writes (control tokens); `end` are the ids that end a completion (end of sequence, end
    /// of turn).
    pub fn new(tokens: &[Option<Vec<u8>>], end: &[u32]) -> Vocabulary {
        // Sorted byte strings list a trie's nodes in preorder: each token adds the nodes of its
        // bytes past the prefix it shares with the token before it.
        let mut order: Vec<(&[u8], u32)> = tokens
            .iter()
            .enumerate()
            .filter_map(|(id, b)| b.as_deref().filter(|b| !b.is_empty()).map(|b| (b, id as u32)))
            // A token longer than a depth can count is never written under a constraint.
            .filter(|(b, id)| !end.contains(id) && b.len() < usize::from(u16::MAX))
            .collect();
        order.sort_unstable();
        let (mut byte, mut depth, mut first_token, mut ids) = (vec![0u8], vec![0u16], vec![0u32], Vec::new());
        let mut previous: &[u8] = &[];
        for &(bytes, id) in &order {
            let shared = bytes.iter().zip(previous).take_while(|(a, b)| a == b).count();
            for (d, &b) in bytes.iter().enumerate().skip(shared) {
                byte.push(b);
                depth.push((d + 1) as u16);
                first_token.push(ids.len() as u32);
            }
            // Sorted, so this token's node is the last one made: its tokens stay contiguous.
            ids.push(id);
            previous = bytes;
        }
        first_token.push(ids.len() as u32);
        // A node's subtree ends at the next node no deeper than it.
        let n = byte.len();
        let mut skip = vec![n as u32; n];
        let mut open: Vec<usize> = Vec::new();
        for i in 0..n {
            while open.last().is_some_and(|&j| depth[j] >= depth[i]) {
                skip[open.pop().unwrap_or_default()] = i as u32;
            }
            open.push(i);
        }
        let max_depth = depth.iter().copied().max().unwrap_or(0) as usize;
        let bytes = tokens.iter().map(|t| t.clone().unwrap_or_default().into_boxed_slice()).collect();
        Vocabulary { size: tokens.len(), end: end.to_vec(), bytes, byte, depth, skip, first_token, tokens: ids, max_depth }
    }

    /// Number of token ids.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Ids of the tokens whose bytes end at node `i`.
    fn tokens_at(&self, i: usize) -> &[u32] {
        &self.tokens[self.first_token[i] as usize..self.first_token[i + 1] as usize]
    }
}

/// The tokens allowed in one DFA state.
#[derive(Debug, Clone, PartialEq)]
pub struct Allowed {
    bits: Vec<u64>,
    /// Whether the text so far is a whole match (end tokens are in `bits` then).
    pub end: bool,
    /// Whether the text so far is a whole match that no byte can extend: decoding stops now.
    pub complete: bool,
}

impl Allowed {
    /// Whether token `id` may come next.
    pub fn contains(&self, id: u32) -> bool {
        self.bits.get(id as usize / 64).is_some_and(|w| w >> (id % 64) & 1 == 1)
    }

    /// Sets every other token's logit to −∞. `logits`: `[V]`.
    pub fn mask(&self, logits: &mut [f32]) {
        for (chunk, &word) in logits.chunks_mut(64).zip(&self.bits) {
            if word == u64::MAX {
                continue;
            }
            for (i, l) in chunk.iter_mut().enumerate() {
                if word >> i & 1 == 0 {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        for l in logits.iter_mut().skip(self.bits.len() * 64) {
            *l = f32::NEG_INFINITY;
        }
    }

    /// How many tokens are allowed.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// A compiled constraint over one vocabulary. Share it (`Arc`) across sequences; each
/// sequence keeps its own [`StateID`].
pub struct TokenAutomaton {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
    vocab: Arc<Vocabulary>,
    masks: Mutex<HashMap<StateID, Arc<Allowed>>>,
    /// Token sets that only move toward the nearest match, for closing within a budget.
    closing: Mutex<HashMap<StateID, Arc<Allowed>>>,
    /// Bytes from a state to its nearest whole match.
    distances: Mutex<HashMap<StateID, Option<u32>>>,
}

/// Deepest search for the nearest match, in bytes.
const MAX_DISTANCE: u32 = 4096;

impl std::fmt::Debug for TokenAutomaton {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAutomaton").field("dfa_bytes", &self.dfa.memory_usage()).finish()
    }
}

impl TokenAutomaton {
    /// Compile `regex` (whole-completion match) over `vocab`.
    pub fn compile(regex: &str, vocab: Arc<Vocabulary>) -> Result<TokenAutomaton, ConstraintError> {
        let dfa = byte_dfa(regex)?;
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .map_err(|e| ConstraintError::Invalid(format!("no start state: {e}")))?;
        Ok(TokenAutomaton {
            dfa,
            start,
            vocab,
            masks: Mutex::new(HashMap::new()),
            closing: Mutex::new(HashMap::new()),
            distances: Mutex::new(HashMap::new()),
        })
    }

    /// The state before any text.
    pub fn start(&self) -> StateID {
        self.start
    }

    /// The state after token `id` (end tokens leave it as it is).
    pub fn advance(&self, state: StateID, id: u32) -> StateID {
        self.advance_bytes(state, self.vocab.bytes.get(id as usize).map_or(&[], |b| b))
    }

    /// The state after `bytes`.
    pub fn advance_bytes(&self, state: StateID, bytes: &[u8]) -> StateID {
        bytes.iter().fold(state, |s, &b| self.dfa.next_state(s, b))
    }

    /// Whether `state` can still reach a match.
    pub fn alive(&self, state: StateID) -> bool {
        !self.dfa.is_dead_state(state) && !self.dfa.is_quit_state(state)
    }

    /// Whether the text that led to `state` matches in full.
    pub fn is_match(&self, state: StateID) -> bool {
        self.alive(state) && self.dfa.is_match_state(self.dfa.next_eoi_state(state))
    }

    /// Whether `text` matches in full (for tests and checks).
    pub fn matches(&self, text: &[u8]) -> bool {
        self.is_match(self.advance_bytes(self.start, text))
    }

    /// Whether token `id` may follow the text that led to `state`: what
    /// `allowed(state).contains(id)` says, by walking that one token's bytes.
    pub fn permits(&self, state: StateID, id: u32) -> bool {
        if id as usize >= self.vocab.size {
            return false;
        }
        if self.vocab.end.contains(&id) {
            return self.is_match(state);
        }
        let bytes = self.vocab.bytes.get(id as usize).map_or(&[][..], |b| b);
        // Dead and quit states are absorbing, so a live end state means every prefix was live.
        !bytes.is_empty() && self.alive(state) && self.alive(self.advance_bytes(state, bytes))
    }

    /// Whether the text that led to `state` is a whole match no byte can extend (what
    /// `allowed(state).complete` says, without computing the token set).
    pub fn is_complete(&self, state: StateID) -> bool {
        self.is_match(state) && !(0..=255u8).any(|b| self.alive(self.dfa.next_state(state, b)))
    }

    /// The next token under the constraint from `logits`, drawn by `sample`; `None` when the
    /// choice is done (a whole match nothing can extend, or no token fits). `left` is the token
    /// budget: within [`TokenAutomaton::distance`] of it, only [`TokenAutomaton::closing`]
    /// tokens are drawn, so the reply closes its format instead of being cut.
    ///
    /// As llama.cpp's grammar sampler does, the token drawn from the unmasked logits is kept
    /// when the constraint permits it, and only otherwise drawn again from the masked logits.
    /// Greedy decoding is unchanged by this, and so is plain temperature sampling (a draw from
    /// p kept when it falls in the allowed set A, else a draw from p restricted to A, is a draw
    /// from p restricted to A); with top-p or top-k the first draw's nucleus is the unmasked
    /// one. A model that already keeps to the format pays one walk over a token's bytes, not a
    /// token set for every new state.
    pub fn pick(&self, state: StateID, logits: &[f32], left: u32, mut sample: impl FnMut(&[f32]) -> u32) -> Option<u32> {
        if self.is_complete(state) {
            return None;
        }
        let masked = |allowed: &Allowed| {
            let mut masked = logits.to_vec();
            allowed.mask(&mut masked);
            masked
        };
        if self.distance(state).is_some_and(|d| left <= d) {
            let closing = self.closing(state);
            if closing.count() > 0 {
                return Some(sample(&masked(&closing)));
            }
        }
        let first = sample(logits);
        if self.permits(state, first) {
            return Some(first);
        }
        let allowed = self.allowed(state);
        (allowed.count() > 0).then(|| sample(&masked(&allowed)))
    }

    /// The tokens allowed after the text that led to `state`.
    pub fn allowed(&self, state: StateID) -> Arc<Allowed> {
        if let Some(a) = self.masks.lock().expect("invariant: mask cache lock is never poisoned").get(&state) {
            return a.clone();
        }
        let computed = Arc::new(self.compute(state));
        let mut masks = self.masks.lock().expect("invariant: mask cache lock is never poisoned");
        if masks.len() >= MASK_CACHE {
            masks.clear();
        }
        masks.insert(state, computed.clone());
        computed
    }

    /// The fewest bytes that turn the text that led to `state` into a whole match (`None`: none
    /// within [`MAX_DISTANCE`]). Breadth-first over the DFA's byte classes, cached per state.
    pub fn distance(&self, state: StateID) -> Option<u32> {
        if let Some(d) = self.distances.lock().expect("invariant: distance cache lock is never poisoned").get(&state) {
            return *d;
        }
        let classes: Vec<u8> = self.dfa.byte_classes().representatives(0..=255).filter_map(|u| u.as_u8()).collect();
        let mut seen = std::collections::HashSet::from([state]);
        let mut frontier = vec![state];
        let mut found = None;
        for depth in 0..=MAX_DISTANCE {
            if frontier.iter().any(|&s| self.is_match(s)) {
                found = Some(depth);
                break;
            }
            let next: Vec<StateID> = frontier
                .iter()
                .flat_map(|&s| classes.iter().map(move |&b| (s, b)))
                .map(|(s, b)| self.dfa.next_state(s, b))
                .filter(|&n| self.alive(n) && seen.insert(n))
                .collect();
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        let mut cache = self.distances.lock().expect("invariant: distance cache lock is never poisoned");
        if cache.len() >= MASK_CACHE {
            cache.clear();
        }
        cache.insert(state, found);
        found
    }

    /// The tokens that bring the text strictly closer to a whole match (and the end tokens
    /// when it is one): what a sequence may write once its token budget is no more than
    /// [`TokenAutomaton::distance`], so it closes its format instead of being cut mid-way.
    pub fn closing(&self, state: StateID) -> Arc<Allowed> {
        if let Some(a) = self.closing.lock().expect("invariant: closing cache lock is never poisoned").get(&state) {
            return a.clone();
        }
        let open = self.allowed(state);
        let here = self.distance(state).unwrap_or(u32::MAX);
        let mut bits = vec![0u64; open.bits.len()];
        for id in 0..self.vocab.size as u32 {
            if !open.contains(id) {
                continue;
            }
            let closer = self.vocab.end.contains(&id) || self.distance(self.advance(state, id)).is_some_and(|d| d < here);
            if closer {
                bits[id as usize / 64] |= 1 << (id % 64);
            }
        }
        let computed = Arc::new(Allowed { bits, end: open.end, complete: open.complete });
        let mut cache = self.closing.lock().expect("invariant: closing cache lock is never poisoned");
        if cache.len() >= MASK_CACHE {
            cache.clear();
        }
        cache.insert(state, computed.clone());
        computed
    }

    fn compute(&self, state: StateID) -> Allowed {
        let v = &self.vocab;
        let mut bits = vec![0u64; v.size.div_ceil(64)];
        let mut set = |id: u32| bits[id as usize / 64] |= 1 << (id % 64);
        let mut any_byte = false;
        if self.alive(state) {
            // `states[d]`: the DFA state after the walk's current path down to depth `d`.
            let mut states = vec![state; v.max_depth + 1];
            let mut i = 1;
            while i < v.byte.len() {
                let d = v.depth[i] as usize;
                let next = self.dfa.next_state(states[d - 1], v.byte[i]);
                if !self.alive(next) {
                    i = v.skip[i] as usize;
                    continue;
                }
                any_byte = true;
                states[d] = next;
                v.tokens_at(i).iter().for_each(|&t| set(t));
                i += 1;
            }
            // A byte no token starts with can still continue the match (rare: vocabularies
            // without every single byte); then the match is not complete.
            any_byte = any_byte || (0..=255u8).any(|b| self.alive(self.dfa.next_state(state, b)));
        }
        let end = self.is_match(state);
        if end {
            v.end.iter().filter(|&&e| (e as usize) < v.size).for_each(|&e| set(e));
        }
        Allowed { bits, end, complete: end && !any_byte }
    }
}

/// Checks that `regex` parses and uses only what a constraint can express (no line anchors or
/// word boundaries), without building its DFA.
pub(super) fn check_syntax(regex: &str) -> Result<(), ConstraintError> {
    let hir = regex_syntax::ParserBuilder::new()
        .dot_matches_new_line(true)
        .build()
        .parse(regex)
        .map_err(|e| ConstraintError::Invalid(format!("bad regex: {e}")))?;
    if hir.properties().look_set().iter().any(|l| !matches!(l, regex_syntax::hir::Look::Start | regex_syntax::hir::Look::End)) {
        return Err(ConstraintError::Invalid(format!("/{regex}/ uses line anchors or word boundaries, which a constraint cannot express")));
    }
    Ok(())
}

/// The anchored, whole-match byte DFA of `regex`.
fn byte_dfa(regex: &str) -> Result<dense::DFA<Vec<u32>>, ConstraintError> {
    // Refuse what a DFA cannot do before regex-automata's less specific error.
    check_syntax(regex)?;
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .start_kind(StartKind::Anchored)
                .match_kind(MatchKind::All)
                .dfa_size_limit(Some(DFA_LIMIT))
                .determinize_size_limit(Some(DFA_LIMIT)),
        )
        .syntax(regex_automata::util::syntax::Config::new().dot_matches_new_line(true))
        .build(&format!(r"(?:{regex})\z"))
        .map_err(|e| {
            let msg = e.to_string();
            if msg.contains("limit") {
                ConstraintError::TooLarge(msg)
            } else {
                ConstraintError::Invalid(format!("/{regex}/: {msg}"))
            }
        })
}
