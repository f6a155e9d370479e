//! Keeping the teacher busy: one queue of teacher work for every worker, leaf and step of a
//! process, at most `max_in_flight` rows' calls outstanding (invariants 1 and 2).
//!
//! Work is taken deepest step first, then oldest first: a row that has reached a judge goes
//! ahead of more generation, so rows flow through the pipeline while generation continues
//! (the first critique call goes out long before the last generation call returns) and memory
//! stays bounded by what is in flight rather than by a whole stage.

use crate::operators::{Answer, Call};
use crate::teacher::Client;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

type Done = Box<dyn FnOnce(Vec<Answer>) + Send>;

struct Job {
    depth: u32,
    seq: u64,
    calls: Vec<Call>,
    done: Done,
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        self.depth == other.depth && self.seq == other.seq
    }
}
impl Eq for Job {}
impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Job {
    /// Max-heap order: deeper first, then lower sequence number (older) first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.depth.cmp(&other.depth).then(other.seq.cmp(&self.seq))
    }
}

#[derive(Default)]
struct State {
    queue: BinaryHeap<Job>,
    running: usize,
    seq: u64,
}

/// Counters a [`Dispatcher`] keeps.
#[derive(Debug, Default)]
pub struct DispatchStats {
    /// Rows whose calls were sent.
    pub jobs: AtomicU64,
    /// Largest number of rows in flight at once.
    pub peak_in_flight: AtomicU64,
}

/// The process-wide queue of teacher work. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    state: Arc<Mutex<State>>,
    client: Arc<dyn Client>,
    runtime: tokio::runtime::Handle,
    max_in_flight: usize,
    stats: Arc<DispatchStats>,
}

impl Dispatcher {
    /// A queue over `client`, running calls on `runtime`, at most `max_in_flight` rows at once.
    pub fn new(client: Arc<dyn Client>, runtime: tokio::runtime::Handle, max_in_flight: usize) -> Dispatcher {
        Dispatcher { state: Arc::default(), client, runtime, max_in_flight: max_in_flight.max(1), stats: Arc::default() }
    }

    /// Counters.
    pub fn stats(&self) -> &DispatchStats {
        &self.stats
    }

    /// Queue one row's `calls` from a step at `depth` (0 = first step); `done` receives the
    /// answers, in call order, on a runtime thread.
    pub fn submit(&self, depth: u32, calls: Vec<Call>, done: impl FnOnce(Vec<Answer>) + Send + 'static) {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.seq += 1;
            let seq = s.seq;
            s.queue.push(Job { depth, seq, calls, done: Box::new(done) });
        }
        self.pump();
    }

    /// Start queued jobs while there is room.
    fn pump(&self) {
        loop {
            let job = {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if s.running >= self.max_in_flight {
                    return;
                }
                let Some(job) = s.queue.pop() else { return };
                s.running += 1;
                self.stats.peak_in_flight.fetch_max(s.running as u64, AtomicOrdering::Relaxed);
                job
            };
            self.stats.jobs.fetch_add(1, AtomicOrdering::Relaxed);
            let this = self.clone();
            self.runtime.spawn(async move {
                let answers = futures::future::join_all(job.calls.iter().map(|c| call(this.client.as_ref(), c))).await;
                (job.done)(answers);
                this.state.lock().unwrap_or_else(|p| p.into_inner()).running -= 1;
                this.pump();
            });
        }
    }
}

async fn call(client: &dyn Client, c: &Call) -> Answer {
    match c {
        Call::Complete(request) => Answer::Complete(client.complete(request).await),
        Call::Score { prompt, labels } => Answer::Score(client.score(prompt, labels).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teacher::{Choice, FinishReason, Prompt, Request, Response, Sampling, TeacherError, Usage};
    use futures::future::BoxFuture;
    use std::sync::atomic::AtomicUsize;

    /// A deterministic test teacher that echoes the prompt after a short sleep and tracks how
    /// many calls are in flight at once.
    struct Slow {
        now: AtomicUsize,
        peak: AtomicUsize,
        order: Mutex<Vec<String>>,
    }

    impl Client for Slow {
        fn identity(&self) -> String {
            "slow-test-teacher".into()
        }
        fn complete<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, TeacherError>> {
            Box::pin(async move {
                let n = self.now.fetch_add(1, AtomicOrdering::SeqCst) + 1;
                self.peak.fetch_max(n, AtomicOrdering::SeqCst);
                let Prompt::Text(t) = &request.prompt else { unreachable!("tests send text") };
                self.order.lock().unwrap().push(t.clone());
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                self.now.fetch_sub(1, AtomicOrdering::SeqCst);
                Ok(Response {
                    choices: vec![Choice { text: t.clone(), finish_reason: FinishReason::Stop, logprobs: None }],
                    usage: Usage::default(),
                })
            })
        }
        fn score<'a>(&'a self, _: &'a Prompt, c: &'a [String]) -> BoxFuture<'a, Result<Vec<f64>, TeacherError>> {
            Box::pin(async move { Ok(vec![0.0; c.len()]) })
        }
    }

    fn req(t: &str) -> Vec<Call> {
        vec![Call::Complete(Request { model: String::new(), prompt: Prompt::Text(t.into()), sampling: Sampling::greedy(1) })]
    }

    #[test]
    fn bounded_in_flight_and_deeper_steps_first() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let teacher = Arc::new(Slow { now: AtomicUsize::new(0), peak: AtomicUsize::new(0), order: Mutex::new(Vec::new()) });
        let d = Dispatcher::new(teacher.clone(), rt.handle().clone(), 3);
        let (tx, rx) = std::sync::mpsc::channel();
        // Fill the queue while nothing can start: hold the lock by submitting from inside a job.
        for i in 0..10 {
            let tx = tx.clone();
            d.submit(0, req(&format!("gen{i}")), move |a| tx.send(a).unwrap());
        }
        for i in 0..3 {
            let tx = tx.clone();
            d.submit(1, req(&format!("judge{i}")), move |a| tx.send(a).unwrap());
        }
        for _ in 0..13 {
            let answers = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
            assert!(matches!(&answers[0], Answer::Complete(Ok(_))));
        }
        assert!(teacher.peak.load(AtomicOrdering::SeqCst) <= 3);
        assert_eq!(d.stats().jobs.load(AtomicOrdering::SeqCst), 13);
        // The first three generation calls started at once; the judges go ahead of the rest.
        let order = teacher.order.lock().unwrap().clone();
        let first_judge = order.iter().position(|s| s.starts_with("judge")).unwrap();
        assert!(first_judge <= 3, "{order:?}");
    }
}
