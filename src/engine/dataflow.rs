//! Building and driving the timely dataflow: one operator per plan step, a sink that commits
//! each leaf as soon as its timestamp is complete, and an exchange of reports to worker 0.

use crate::engine::commit::{self, Commit, RejectRow};
use crate::engine::dispatch::Dispatcher;
use crate::engine::report::{Progress, Report, StepCounts};
use crate::engine::{EngineError, Job, RunOptions};
use crate::operators::batch::{self, row_json};
use crate::operators::{Aggregate, Answer, Calls, OpError, Operator, Output, TeacherStep, Transform};
use crate::teacher::FinishReason;
use arrow::record_batch::RecordBatch;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator as _;
use timely::dataflow::operators::{Capability, CapabilitySet, Concatenate, Exchange, Input, Inspect, Probe};
use timely::dataflow::{Scope, Stream};

/// Timestamps are leaf indices.
type Time = u64;
type Rows = Vec<RecordBatch>;

/// What the operators of one worker share: rejects and counters per leaf, the first error.
struct Shared {
    job: Arc<Job>,
    progress: Arc<Progress>,
    rejects: RefCell<HashMap<Time, Vec<RejectRow>>>,
    counts: RefCell<HashMap<Time, Vec<StepCounts>>>,
    error: RefCell<Option<EngineError>>,
}

impl Shared {
    fn count(&self, t: Time, step: usize, f: impl FnOnce(&mut StepCounts)) {
        let mut counts = self.counts.borrow_mut();
        let leaf = counts.entry(t).or_insert_with(|| vec![StepCounts::default(); self.job.steps.len()]);
        f(&mut leaf[step]);
    }

    fn fail(&self, e: OpError) {
        self.error.borrow_mut().get_or_insert(EngineError::Operator(e));
    }

    /// Record an operator's output for leaf `t` at global step `step`; returns the rows.
    fn took(&self, t: Time, step: usize, name: &str, input: &RecordBatch, out: Output) -> RecordBatch {
        let (n_out, n_rej) = (out.rows.num_rows() as u64, out.rejects.len() as u64);
        self.count(t, step, |c| {
            c.rows_out += n_out;
            c.rows_rejected += n_rej;
        });
        self.progress.add(step, 1, n_out);
        self.progress.add(step, 2, n_rej);
        if !out.rejects.is_empty() {
            let ids = batch::row_ids(input, name).ok();
            let mut rejects = self.rejects.borrow_mut();
            let list = rejects.entry(t).or_default();
            for r in out.rejects {
                let id = ids.map(|ids| ids.value(r.row).to_string()).unwrap_or_default();
                let row = serde_json::Value::Object(row_json(input, r.row)).to_string();
                list.push(RejectRow { id, step: name.to_string(), reason: r.reason, row });
            }
        }
        out.rows
    }

    fn rows_in(&self, t: Time, step: usize, n: usize) {
        self.count(t, step, |c| c.rows_in += n as u64);
        self.progress.add(step, 0, n as u64);
    }
}

/// A step that transforms batches as they come.
fn transform<'s>(
    src: Stream<'s, Time, Rows>,
    name: String,
    step: usize,
    t: Arc<dyn Transform>,
    shared: Rc<Shared>,
) -> Stream<'s, Time, Rows> {
    src.unary(Pipeline, &name.clone(), move |_cap, _info| {
        move |input, output| {
            input.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                let mut session = output.session(&cap);
                for b in data.drain(..) {
                    shared.rows_in(time, step, b.num_rows());
                    match t.apply(&b) {
                        Ok(out) => {
                            let rows = shared.took(time, step, &name, &b, out);
                            if rows.num_rows() > 0 {
                                session.give(rows);
                            }
                        }
                        Err(e) => shared.fail(e),
                    }
                }
            });
        }
    })
}

/// A step over all rows of a leaf, run when the leaf is complete upstream.
fn aggregate<'s>(
    src: Stream<'s, Time, Rows>,
    name: String,
    step: usize,
    a: Arc<dyn Aggregate>,
    schema: arrow::datatypes::SchemaRef,
    shared: Rc<Shared>,
) -> Stream<'s, Time, Rows> {
    src.unary_frontier(Pipeline, &name.clone(), move |_cap, _info| {
        let mut stash: BTreeMap<Time, (Capability<Time>, Rows)> = BTreeMap::new();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                let entry = stash.entry(time).or_insert_with(|| (cap.delayed(&time, 0), Vec::new()));
                entry.1.append(data);
            });
            let ready: Vec<Time> = stash.keys().copied().filter(|t| !frontier.less_equal(t)).collect();
            for time in ready {
                let Some((cap, batches)) = stash.remove(&time) else { continue };
                // The batches' own schema: the plan's is the same by construction, and an empty
                // leaf has no batch to ask.
                let schema = batches.first().map(|b| b.schema()).unwrap_or_else(|| schema.clone());
                let all = batch::concat(&schema, &batches, &name).and_then(|b| batch::sort_by_id(&b, &name));
                let result = all.and_then(|b| {
                    shared.rows_in(time, step, b.num_rows());
                    a.finish(&b).map(|out| shared.took(time, step, &name, &b, out))
                });
                match result {
                    Ok(rows) if rows.num_rows() > 0 => output.session(&cap).give(rows),
                    Ok(_) => {}
                    Err(e) => shared.fail(e),
                }
            }
        }
    })
}

/// A step that calls the teacher per row; answers arrive asynchronously.
fn teacher<'s>(
    src: Stream<'s, Time, Rows>,
    name: String,
    step: usize,
    depth: u32,
    t: Arc<dyn TeacherStep>,
    shared: Rc<Shared>,
    dispatcher: Dispatcher,
) -> Stream<'s, Time, Rows> {
    let scope: Scope<'s, Time> = src.scope();
    src.unary_frontier(Pipeline, &name.clone(), move |_cap, info| {
        let activator = Arc::new(scope.worker().sync_activator_for(info.address.to_vec()));
        let (tx, rx) = std::sync::mpsc::channel::<(Time, RecordBatch, Vec<Answer>)>();
        // Per leaf: a capability to emit at, and how many rows still wait for answers.
        let mut held: HashMap<Time, (Capability<Time>, usize)> = HashMap::new();
        move |(input, _frontier), output| {
            input.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                for b in data.drain(..) {
                    shared.rows_in(time, step, b.num_rows());
                    for row in 0..b.num_rows() {
                        match t.calls(&b, row) {
                            Ok(Calls::Send(calls)) => {
                                let n = calls.len() as u64;
                                shared.count(time, step, |c| c.requests += n);
                                shared.progress.add(step, 3, n);
                                held.entry(time).or_insert_with(|| (cap.delayed(&time, 0), 0)).1 += 1;
                                let (tx, activator, one) = (tx.clone(), Arc::clone(&activator), b.slice(row, 1));
                                dispatcher.submit(depth, calls, move |answers| {
                                    // The receiver is gone only when the dataflow is torn down.
                                    let _ = tx.send((time, one, answers));
                                    let _ = activator.activate();
                                });
                            }
                            Ok(Calls::Reject(reason)) => {
                                let out =
                                    Output { rows: batch::empty(b.schema_ref()), rejects: vec![crate::operators::Reject { row, reason }] };
                                shared.took(time, step, &name, &b, out);
                            }
                            Err(e) => shared.fail(e),
                        }
                    }
                }
            });
            while let Ok((time, one, answers)) = rx.try_recv() {
                let tokens: u64 = answers.iter().map(|a| if let Answer::Complete(Ok(r)) = a { r.usage.completion_tokens } else { 0 }).sum();
                shared.progress.add(step, 4, tokens);
                let unparsed = t.unparsed(&answers);
                shared.count(time, step, |c| {
                    c.unparsed += unparsed;
                    for a in &answers {
                        if let Answer::Complete(Ok(r)) = a {
                            c.completions += r.choices.len() as u64;
                            c.truncated += r.choices.iter().filter(|ch| ch.finish_reason == FinishReason::Length).count() as u64;
                            c.tokens_in += r.usage.prompt_tokens;
                            c.tokens_out += r.usage.completion_tokens;
                        }
                    }
                });
                match t.assemble(&one, 0, answers) {
                    Ok(out) => {
                        let rows = shared.took(time, step, &name, &one, out);
                        if rows.num_rows() > 0 {
                            if let Some((cap, _)) = held.get(&time) {
                                output.session(cap).give(rows);
                            }
                        }
                    }
                    Err(e) => shared.fail(e),
                }
                if let Some(entry) = held.get_mut(&time) {
                    entry.1 -= 1;
                    if entry.1 == 0 {
                        held.remove(&time);
                    }
                }
            }
        }
    })
}

/// The leaves this worker owns: leaf `i` belongs to worker `i % peers`.
fn owned(job: &Job, index: usize, peers: usize) -> Vec<Time> {
    (0..job.leaves.len()).filter(|i| i % peers == index).map(|i| i as Time).collect()
}

/// Commit each owned leaf when complete; emit its report, and the process's at the end.
fn sink<'s>(
    src: Stream<'s, Time, Rows>,
    shared: Rc<Shared>,
    runtime: tokio::runtime::Handle,
    mine: Vec<Time>,
    reports_process: bool,
) -> Stream<'s, Time, Vec<String>> {
    let scope: Scope<'s, Time> = src.scope();
    src.unary_frontier(Pipeline, "commit", move |cap, info| {
        let activator = Arc::new(scope.worker().sync_activator_for(info.address.to_vec()));
        let (tx, rx) = std::sync::mpsc::channel::<(Time, String)>();
        let mut caps = CapabilitySet::from_elem(cap);
        let mut stash: HashMap<Time, Rows> = HashMap::new();
        let mut waiting: Vec<Time> = mine.clone();
        let mut committing: HashMap<Time, Capability<Time>> = HashMap::new();
        let mut process_sent = !reports_process;
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                if let Some(&time) = cap.least() {
                    stash.entry(time).or_default().append(data);
                }
            });
            let job = &shared.job;
            let (ready, later): (Vec<Time>, Vec<Time>) = waiting.iter().partition(|t| !frontier.less_equal(*t));
            waiting = later;
            for time in ready {
                let leaf = job.leaves[time as usize].clone();
                let plan = &job.plans[leaf.plan];
                let schema = plan.steps[plan.output].schema_out.clone();
                let batches = stash.remove(&time).unwrap_or_default();
                let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
                let rows = match batch::concat(&schema, &batches, "commit").and_then(|b| batch::sort_by_id(&b, "commit")) {
                    Ok(r) => r,
                    Err(e) => {
                        shared.fail(e);
                        continue;
                    }
                };
                let mut rejects = shared.rejects.borrow_mut().remove(&time).unwrap_or_default();
                rejects.sort_by(|a, b| a.id.cmp(&b.id).then(a.step.cmp(&b.step)));
                let steps = shared.counts.borrow_mut().remove(&time).unwrap_or_else(|| vec![StepCounts::default(); job.steps.len()]);
                // The leaf's record keeps its own pipeline's counters only: it may outlive this
                // run's set of pipelines (`increment`).
                let offset = job.step_offset(leaf.plan);
                let steps = steps[offset..offset + plan.steps.len()].to_vec();
                let fingerprint = plan.fingerprint();
                let c = Commit { leaf, pipeline: plan.name.clone(), fingerprint, run_id: job.run_id.clone(), rows, rejects, steps };
                committing.insert(time, caps.delayed(&time));
                let (tx, activator, out, progress) = (tx.clone(), Arc::clone(&activator), job.output.clone(), Arc::clone(&shared.progress));
                runtime.spawn(async move {
                    let done = commit::commit(&out, c).await;
                    progress.leaves_done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let report = serde_json::to_string(&Report::Leaf(done)).unwrap_or_default();
                    let _ = tx.send((time, report));
                    let _ = activator.activate();
                });
            }
            while let Ok((time, report)) = rx.try_recv() {
                if let Some(cap) = committing.remove(&time) {
                    output.session(&cap).give(report);
                }
            }
            if frontier.is_empty() && committing.is_empty() && waiting.is_empty() {
                if !process_sent {
                    process_sent = true;
                    if let Some(cap) = caps.first() {
                        let stats = (job.teacher_stats)();
                        output.session(&cap).give(serde_json::to_string(&Report::Process(stats)).unwrap_or_default());
                    }
                }
                caps = CapabilitySet::new();
            } else if !frontier.is_empty() {
                // Hold the capability while commits are in flight: the process report goes out
                // with it once they are done.
                caps.downgrade(&frontier.frontier());
            }
        }
    })
}

/// Build the dataflow on every worker, feed the leaves, and wait for the end.
pub fn execute(
    job: Arc<Job>,
    opts: &RunOptions,
    runtime: tokio::runtime::Handle,
    progress: Arc<Progress>,
) -> Result<Vec<crate::engine::Report>, EngineError> {
    let communication = if opts.hosts.len() > 1 {
        timely::CommunicationConfig::Cluster {
            threads: opts.workers.max(1),
            process: opts.process,
            addresses: opts.hosts.clone(),
            report: false,
            zerocopy: false,
        }
    } else if opts.workers > 1 {
        timely::CommunicationConfig::Process(opts.workers)
    } else {
        timely::CommunicationConfig::Thread
    };
    let config = timely::Config { communication, worker: timely::WorkerConfig::default() };
    let dispatcher = Dispatcher::new(Arc::clone(&job.teacher), runtime.clone(), opts.max_in_flight);
    let per_process = opts.workers.max(1);
    // Set by the first worker that fails, so the others stop waiting for its progress.
    let abort = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let guards = timely::execute(config, move |worker| -> Result<Vec<String>, String> {
        let (index, peers) = (worker.index(), worker.peers());
        let shared = Rc::new(Shared {
            job: Arc::clone(&job),
            progress: Arc::clone(&progress),
            rejects: RefCell::default(),
            counts: RefCell::default(),
            error: RefCell::default(),
        });
        let collected: Rc<RefCell<Vec<String>>> = Rc::default();
        let mine = owned(&job, index, peers);
        let (mut inputs, probe) = worker.dataflow::<Time, _, _>(|scope| {
            let mut inputs = Vec::new();
            let mut outputs = Vec::new();
            for (p, plan) in job.plans.iter().enumerate() {
                let (handle, seeds) = scope.new_input::<Rows>();
                inputs.push(handle);
                let offset = job.step_offset(p);
                let mut streams: Vec<Stream<'_, Time, Rows>> = Vec::new();
                for (s, ps) in plan.steps.iter().enumerate() {
                    let src = match ps.input {
                        None => seeds.clone(),
                        Some(j) => streams[j].clone(),
                    };
                    let depth = depth_of(plan, s);
                    let out = match &ps.operator {
                        Operator::Transform(t) => transform(src, ps.name.clone(), offset + s, Arc::clone(t), Rc::clone(&shared)),
                        Operator::Aggregate(a) => {
                            aggregate(src, ps.name.clone(), offset + s, Arc::clone(a), ps.schema_in.clone(), Rc::clone(&shared))
                        }
                        Operator::Teacher(t) => {
                            teacher(src, ps.name.clone(), offset + s, depth, Arc::clone(t), Rc::clone(&shared), dispatcher.clone())
                        }
                    };
                    streams.push(out);
                }
                outputs.push(streams[plan.output].clone());
            }
            let all = scope.concatenate(outputs);
            let reports = sink(all, Rc::clone(&shared), runtime.clone(), mine.clone(), index % per_process == 0);
            let sink_for = Rc::clone(&collected);
            let (probe, _) = reports
                .exchange(|_| 0)
                .inspect(move |r: &String| {
                    sink_for.borrow_mut().push(r.clone());
                })
                .probe();
            (inputs, probe)
        });
        for &t in &mine {
            let leaf = &job.leaves[t as usize];
            let input = &mut inputs[leaf.plan];
            input.advance_to(t);
            input.send(leaf.seeds.clone());
        }
        let end = job.leaves.len() as Time;
        for input in inputs.iter_mut() {
            input.advance_to(end);
        }
        drop(inputs);
        while !probe.done() {
            worker.step_or_park(Some(Duration::from_millis(200)));
            if shared.error.borrow().is_some() {
                abort.store(true, std::sync::atomic::Ordering::SeqCst);
                break;
            }
            if abort.load(std::sync::atomic::Ordering::SeqCst) {
                return Err("stopped: another worker failed".to_string());
            }
        }
        if let Some(e) = shared.error.borrow_mut().take() {
            return Err(e.to_string());
        }
        let out = collected.borrow().clone();
        Ok(out)
    })
    .map_err(EngineError::Dataflow)?;
    let mut reports = Vec::new();
    let results: Vec<Result<Vec<String>, String>> = guards.join().into_iter().map(|r| r.and_then(|inner| inner)).collect();
    // Report the failure itself, not a worker that stopped because of it.
    if let Some(e) = results.iter().filter_map(|r| r.as_ref().err()).min_by_key(|e| e.starts_with("stopped:")) {
        return Err(EngineError::Dataflow(e.clone()));
    }
    for result in results {
        let lines = result.map_err(EngineError::Dataflow)?;
        for line in lines {
            let r: Report = serde_json::from_str(&line).map_err(|e| EngineError::Dataflow(format!("bad report from a worker: {e}")))?;
            reports.push(r);
        }
    }
    Ok(reports)
}

/// How many teacher steps lie between the seeds and step `s` (inclusive): the dispatcher runs
/// deeper work first.
fn depth_of(plan: &crate::pipeline::Plan, s: usize) -> u32 {
    let mut depth = 0;
    let mut at = Some(s);
    while let Some(i) = at {
        if matches!(plan.steps[i].operator, Operator::Teacher(_)) {
            depth += 1;
        }
        at = plan.steps[i].input;
    }
    depth
}
