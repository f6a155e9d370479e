use super::*;
use crate::operators::batch::text_batch;
use crate::teacher::{Choice, Prompt, Response, TeacherError, Usage};

fn prompt() -> PromptConfig {
    PromptConfig {
        system: Some("sys".into()),
        generation: Some("Write {{ num_samples }} questions like: {{ seed_question }}".into()),
        start_tags: vec!["[Q]".into()],
        end_tags: vec!["[/Q]".into()],
        ..PromptConfig::default()
    }
}

/// A one-question step with every optional key at its default.
fn config() -> Config {
    Config {
        prompt: Some(prompt()),
        prompts: None,
        output: vec!["question".into()],
        parse: None,
        n: Count::Fixed(1),
        set: [("num_samples".to_string(), serde_json::json!(3))].into_iter().collect(),
        sampling: SamplingConfig::default(),
        system_in_user: false,
        labels: Default::default(),
        numeric: Vec::new(),
        max_items: None,
        constrain: true,
    }
}

fn step(n: u32) -> Arc<dyn TeacherStep> {
    let config = Config {
        prompt: Some(prompt()),
        prompts: None,
        output: vec!["question".into()],
        parse: None,
        n: Count::Fixed(n),
        set: [("num_samples".to_string(), serde_json::json!(3))].into_iter().collect(),
        sampling: SamplingConfig { temperature: Some(0.7), ..SamplingConfig::default() },
        system_in_user: false,
        labels: Default::default(),
        numeric: Vec::new(),
        max_items: None,
        constrain: true,
    };
    match config.build("questions", &BuildContext::default()).unwrap() {
        Operator::Teacher(t) => t,
        other => panic!("teacher step expected, got {other:?}"),
    }
}

fn seeds() -> RecordBatch {
    text_batch(&[("seed_question", vec!["What is a river?".into(), "Why is the sea salty?".into()])]).unwrap()
}

fn answer(texts: &[&str]) -> Answer {
    Answer::Complete(Ok(Response {
        choices: texts.iter().map(|t| Choice { text: t.to_string(), finish_reason: FinishReason::Stop, logprobs: None }).collect(),
        usage: Usage::default(),
    }))
}

#[test]
fn renders_seeds_each_row_and_parses_every_item() {
    let g = step(2);
    let b = seeds();
    let Calls::Send(calls) = g.calls(&b, 1).unwrap() else { panic!("calls expected") };
    let Call::Complete(req) = &calls[0] else { panic!("completion expected") };
    assert_eq!(req.sampling.n, 2);
    assert_eq!(req.sampling.seed, Some(row_seed(42, "questions", "0001")));
    let Prompt::Chat(m) = &req.prompt else { panic!("chat") };
    assert_eq!(m[1].content, "Write 3 questions like: Why is the sea salty?");
    // Another row gets another seed.
    let Calls::Send(other) = g.calls(&b, 0).unwrap() else { panic!() };
    assert_ne!(other, calls);

    let out = g.assemble(&b, 1, vec![answer(&["[Q] A? [/Q] [Q] B? [/Q]", "[Q] C? [/Q]"])]).unwrap();
    assert!(out.rejects.is_empty());
    let q = batch::text_column(&out.rows, "question", "t").unwrap();
    assert_eq!((q.value(0), q.value(1), q.value(2)), ("A?", "B?", "C?"));
    let ids = batch::row_ids(&out.rows, "t").unwrap();
    assert_eq!((ids.value(0), ids.value(1), ids.value(2)), ("0001.0000.0000", "0001.0000.0001", "0001.0001.0000"));
    assert_eq!(batch::text_column(&out.rows, "seed_question", "t").unwrap().value(2), "Why is the sea salty?");
    assert_eq!(out.rows.schema(), g.schema_out(b.schema_ref()).unwrap());
}

#[test]
fn unparseable_and_failed_calls_reject_the_row() {
    let g = step(2);
    let b = seeds();
    let out = g.assemble(&b, 0, vec![answer(&["no tags", "still none"])]).unwrap();
    assert_eq!(out.rows.num_rows(), 0);
    assert_eq!(out.rejects, vec![Reject { row: 0, reason: "none of the 2 completion(s) had [Q]…[/Q]".into() }]);
    let failed = Answer::Complete(Err(TeacherError::Unsupported("offline".into())));
    let out = g.assemble(&b, 1, vec![failed]).unwrap();
    assert!(out.rejects[0].reason.starts_with("teacher call failed: not implemented: offline"), "{:?}", out.rejects);
}

#[test]
fn a_row_missing_a_prompt_value_is_rejected_without_a_call() {
    let g = step(1);
    let b = text_batch(&[("other", vec!["x".into()])]).unwrap();
    let Calls::Reject(reason) = g.calls(&b, 0).unwrap() else { panic!("reject expected") };
    assert!(reason.contains("the prompt needs a value the row lacks"), "{reason}");
}

#[test]
fn empty_batch_has_the_output_schema() {
    let g = step(1);
    let b = text_batch(&[("seed_question", vec![])]).unwrap();
    let schema = g.schema_out(b.schema_ref()).unwrap();
    assert_eq!(
        schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(),
        vec!["_id", "seed_question", "num_samples", "question"]
    );
}

#[test]
fn schema_mismatch_and_bad_configs_are_errors() {
    let without_ids = Arc::new(arrow::datatypes::Schema::new(vec![text_field("seed_question")]));
    assert!(matches!(step(1).schema_out(&without_ids), Err(OpError::Schema { .. })));
    let bad = |c: Config| c.build("g", &BuildContext::default()).unwrap_err().to_string();
    let base = || Config { set: BTreeMap::new(), ..config() };
    assert!(bad(Config { output: vec![], ..base() }).contains("`output` names no column"));
    assert!(bad(Config { output: vec!["a".into(), "b".into()], ..base() }).contains("2 output column(s) but 1 start/end tag pair(s)"));
    assert!(bad(Config { prompt: None, ..base() }).contains("no prompt"));
    assert!(bad(Config { n: Count::Fixed(0), ..base() }).contains("n is 0"));
    assert!(bad(Config { numeric: vec!["score".into()], ..base() }).contains("not an output column"));
    assert!(bad(Config { max_items: Some(0), ..base() }).contains("max_items is 0"));
}

#[test]
fn requests_carry_the_parse_format_as_a_constraint_and_labels_filter_items() {
    let build = |c: Config| match c.build("g", &BuildContext::default()).unwrap() {
        Operator::Teacher(t) => t,
        other => panic!("teacher step expected, got {other:?}"),
    };
    let base = || Config { max_items: Some(2), ..config() };
    let request = |g: &Arc<dyn TeacherStep>| {
        let b = seeds();
        let Calls::Send(calls) = g.calls(&b, 0).unwrap() else { panic!() };
        let Call::Complete(req) = calls.into_iter().next().unwrap() else { panic!() };
        req
    };
    let req = request(&build(base()));
    let Some(crate::teacher::constraint::Constraint::Regex(re)) = &req.sampling.constraint else { panic!("{:?}", req.sampling) };
    let check = regex::Regex::new(&format!("^(?:{re})$")).unwrap();
    assert!(check.is_match("[Q] one? [/Q]\n[Q] two? [/Q]"), "{re}");
    assert!(!check.is_match("[Q] one? [/Q] [Q] two? [/Q] [Q] three? [/Q]"), "max_items 2: {re}");
    assert!(request(&build(Config { constrain: false, ..base() })).sampling.constraint.is_none());
    // With labels, an item whose value is not a label is not an item.
    let g = build(Config { labels: [("question".to_string(), vec!["yes".to_string()])].into(), ..base() });
    let out = g.assemble(&seeds(), 0, vec![answer(&["[Q] no [/Q] [Q] yes [/Q]"])]).unwrap();
    assert_eq!(out.rows.num_rows(), 1);
}

#[test]
fn conditional_prompts_pick_by_column_and_reject_unknown_values() {
    let mut other = prompt();
    other.generation = Some("Other: {{ seed_question }}".into());
    let config = Config {
        prompt: None,
        prompts: Some(SelectConfig {
            column: "kind".into(),
            choices: [("a".to_string(), prompt()), ("b".to_string(), other)].into_iter().collect(),
        }),
        output: vec!["question".into()],
        parse: None,
        n: Count::Scaled(Scaled::Scaled),
        set: [("num_samples".to_string(), serde_json::json!(3))].into_iter().collect(),
        sampling: SamplingConfig::default(),
        system_in_user: true,
        labels: Default::default(),
        numeric: Vec::new(),
        max_items: None,
        constrain: true,
    };
    let ctx = BuildContext { scale: 4, ..BuildContext::default() };
    let Operator::Teacher(g) = config.build("cond", &ctx).unwrap() else { panic!() };
    assert_eq!(g.cost(), CallCost { requests: 1, completions: 4 });
    let b = text_batch(&[("kind", vec!["b".into(), "zzz".into()]), ("seed_question", vec!["Q1".into(), "Q2".into()])]).unwrap();
    let Calls::Send(calls) = g.calls(&b, 0).unwrap() else { panic!() };
    let Call::Complete(req) = &calls[0] else { panic!() };
    let Prompt::Chat(m) = &req.prompt else { panic!() };
    assert_eq!(m.len(), 1, "system_in_user puts everything in one user message");
    assert!(m[0].content.ends_with("Other: Q1"), "{}", m[0].content);
    let Calls::Reject(reason) = g.calls(&b, 1).unwrap() else { panic!() };
    assert!(reason.contains("no prompt for kind = \"zzz\""), "{reason}");
    let no_kind = text_batch(&[("seed_question", vec!["Q".into()])]).unwrap();
    assert!(matches!(g.schema_out(no_kind.schema_ref()), Err(OpError::Schema { .. })));
}

#[test]
fn unparsed_completions_are_counted() {
    let g = step(3);
    assert_eq!(g.unparsed(&[answer(&["[Q] a [/Q]", "nothing", "[Q] unterminated"])]), 2);
    assert_eq!(g.unparsed(&[Answer::Complete(Err(TeacherError::Unsupported("x".into())))]), 0);
}
