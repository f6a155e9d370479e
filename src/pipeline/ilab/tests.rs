use super::*;
use crate::operators::batch::{self, text_batch};
use crate::operators::{Answer, Call, Calls, Operator, Output};
use crate::teacher::{Choice, FinishReason, Prompt, Request, Response, Usage};
use arrow::record_batch::RecordBatch;

/// Files in memory: the pipeline under `p/`, prompts under `c/`.
struct Files(Vec<(String, String)>);

impl Source for Files {
    fn read(&self, rel: &str) -> Result<String, String> {
        self.0.iter().find(|(p, _)| p == rel).map(|(_, t)| t.clone()).ok_or_else(|| format!("cannot read {rel}: not found"))
    }
    fn display(&self, rel: &str) -> String {
        rel.to_string()
    }
}

const Q: &str = "system: Sys.\nintroduction: Intro {{ num_samples }}.\nprinciples: Rules.\nexamples: Ex.\ngeneration: Like {{ seed_question }}\nstart_tags: [\"[Q]\"]\nend_tags: [\"[/Q]\"]\n";
const JUDGE: &str = "generation: Judge {{ question }}\nstart_tags: [\"[E]\", \"[S]\"]\nend_tags: [\"[/E]\", \"[/S]\"]\n";
const OTHER: &str = "generation: Other {{ seed_question }}\nstart_tags: [\"[A]\"]\nend_tags: [\"[/A]\"]\n";
const WHOLE: &str = "generation: Rewrite {{ document }}\nstart_tags: [\"\"]\nend_tags: [\"\"]\n";
const NOTAGS: &str = "generation: Pairs about {{ document }}\n";

fn files(name: &str, pipeline: &str) -> Files {
    Files(vec![
        (format!("p/{name}"), pipeline.to_string()),
        ("c/q.yaml".into(), Q.into()),
        ("c/judge.yaml".into(), JUDGE.into()),
        ("c/other.yaml".into(), OTHER.into()),
        ("c/whole.yaml".into(), WHOLE.into()),
        ("c/notags.yaml".into(), NOTAGS.into()),
    ])
}

fn plan_ctx(name: &str, pipeline: &str, ctx: &BuildContext) -> Plan {
    match load_file(&files(name, pipeline), &format!("p/{name}"), ctx) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn plan(pipeline: &str) -> Plan {
    plan_ctx("freeform_skills.yaml", pipeline, &BuildContext::default())
}

fn err_in(name: &str, pipeline: &str) -> PipelineError {
    load_file(&files(name, pipeline), &format!("p/{name}"), &BuildContext::default()).unwrap_err()
}

fn err(pipeline: &str) -> PipelineError {
    err_in("freeform_skills.yaml", pipeline)
}

/// A pipeline of the given blocks (YAML text, indented as list items).
fn blocks(body: &str) -> String {
    format!("version: \"1.0\"\nblocks:\n{body}")
}

fn seeds() -> RecordBatch {
    text_batch(&[
        ("task_description", vec!["rivers".into(), "seas".into()]),
        ("seed_question", vec!["Longest?".into(), "Saltiest?".into()]),
        ("seed_response", vec!["Nile.".into(), "Dead Sea.".into()]),
    ])
    .unwrap()
}

/// The request of `step` for row `row`.
fn request(plan: &Plan, step: usize, b: &RecordBatch, row: usize) -> Request {
    let Operator::Teacher(t) = &plan.steps[step].operator else { panic!("teacher step expected") };
    match t.calls(b, row).unwrap() {
        Calls::Send(mut calls) => match calls.remove(0) {
            Call::Complete(r) => r,
            other => panic!("completion expected, got {other:?}"),
        },
        Calls::Reject(r) => panic!("rejected: {r}"),
    }
}

fn user_message(r: &Request) -> String {
    let Prompt::Chat(m) = &r.prompt else { panic!("chat expected") };
    assert_eq!(m.len(), 1, "the reference sends one user message: {m:?}");
    assert_eq!(m[0].role, "user");
    m[0].content.clone()
}

fn answer(texts: &[&str]) -> Answer {
    Answer::Complete(Ok(Response {
        choices: texts.iter().map(|t| Choice { text: t.to_string(), finish_reason: FinishReason::Stop, logprobs: None }).collect(),
        usage: Usage::default(),
    }))
}

/// Run a non-teacher step over `b`.
fn apply(plan: &Plan, step: usize, b: &RecordBatch) -> Output {
    match &plan.steps[step].operator {
        Operator::Transform(t) => t.apply(b).unwrap(),
        Operator::Aggregate(a) => a.finish(b).unwrap(),
        Operator::Teacher(_) => panic!("not a teacher step"),
    }
}

fn text(b: &RecordBatch, col: &str) -> Vec<String> {
    let c = b.column_by_name(col).unwrap_or_else(|| panic!("no column {col}"));
    (0..b.num_rows()).map(|r| batch::text_value(c.as_ref(), r).unwrap_or_default()).collect()
}

fn kinds(plan: &Plan) -> Vec<&str> {
    plan.steps.iter().map(|s| s.kind.as_str()).collect()
}

fn columns(plan: &Plan) -> Vec<String> {
    plan.steps[plan.output].schema_out.fields().iter().map(|f| f.name().clone()).filter(|n| n != "_id").collect()
}

const GEN_Q: &str = "  - name: gen_questions\n    type: LLMBlock\n    config:\n      config_path: ../c/q.yaml\n      output_cols: [question]\n      batch_kwargs:\n        num_samples: 30\n";

#[test]
fn llm_block_renders_one_user_message_with_the_reference_defaults() {
    let p = plan(&blocks(GEN_Q));
    assert_eq!(kinds(&p), ["generate"]);
    let r = request(&p, 0, &seeds(), 1);
    // system + introduction + principles + examples + generation, one per line.
    assert_eq!(user_message(&r), "Sys.\nIntro 30.\nRules.\nEx.\nLike Saltiest?");
    assert_eq!((r.sampling.temperature, r.sampling.max_tokens, r.sampling.n), (0.0, DEFAULT_MAX_TOKENS, 1));
    assert_eq!(columns(&p), ["task_description", "seed_question", "seed_response", "num_samples", "question"]);
    let Operator::Teacher(t) = &p.steps[0].operator else { unreachable!() };
    let out = t.assemble(&seeds(), 0, vec![answer(&["[Q] A? [/Q]\n[Q] B? [/Q]"])]).unwrap();
    assert_eq!(text(&out.rows, "question"), ["A?", "B?"]);
    assert_eq!(text(&out.rows, "num_samples"), ["30", "30"]);
}

#[test]
fn gen_kwargs_map_to_sampling_and_n() {
    let p = plan(&blocks(
        "  - name: g\n    type: LLMBlock\n    config:\n      config_path: ../c/q.yaml\n      output_cols: [question]\n      batch_kwargs: {num_samples: 2}\n      gen_kwargs:\n        temperature: 0.7\n        max_tokens: 100\n        top_p: 0.9\n        stop: \"[END]\"\n        n: 3\n        seed: 42\n        model: teacher\n",
    ));
    let s = request(&p, 0, &seeds(), 0).sampling;
    assert_eq!((s.temperature, s.max_tokens, s.top_p, s.n, s.stop), (0.7, 100, 0.9, 3, vec!["[END]".to_string()]));
    assert!(p.notes.iter().any(|n| n.contains("gen_kwargs.seed is ignored")), "{:?}", p.notes);
    assert!(p.notes.iter().any(|n| n.contains("gen_kwargs.model is ignored")), "{:?}", p.notes);
    let text = p.explain();
    assert!(text.contains("teacher: 1 request(s), 3 completion(s) per input row"), "{text}");
    assert!(text.contains("note: g: gen_kwargs.seed is ignored"), "{text}");
}

#[test]
fn scaled_n_and_iter_block_multiply_completions() {
    let ctx = BuildContext { scale: 4, ..BuildContext::default() };
    let scaled = "  - name: g\n    type: LLMBlock\n    config:\n      config_path: ../c/q.yaml\n      output_cols: [question]\n      batch_kwargs: {num_samples: 2}\n      gen_kwargs: {n: scaled}\n";
    let p = plan_ctx("freeform_skills.yaml", &blocks(scaled), &ctx);
    assert_eq!(request(&p, 0, &seeds(), 0).sampling.n, 4);

    let iter = "  - name: it\n    type: IterBlock\n    config:\n      num_iters: 3\n      block_type: LLMBlock\n      config_path: ../c/q.yaml\n      output_cols: [question]\n      batch_kwargs: {num_samples: 2}\n      gen_kwargs: {n: 2}\n";
    let p = plan_ctx("freeform_skills.yaml", &blocks(iter), &ctx);
    assert_eq!(kinds(&p), ["generate"]);
    assert_eq!(request(&p, 0, &seeds(), 0).sampling.n, 6);
    let p = plan_ctx("freeform_skills.yaml", &blocks(&iter.replace("n: 2", "n: scaled")), &ctx);
    assert_eq!(request(&p, 0, &seeds(), 0).sampling.n, 12);
    let p = plan_ctx("freeform_skills.yaml", &blocks(&iter.replace("      gen_kwargs: {n: 2}\n", "")), &ctx);
    assert_eq!(request(&p, 0, &seeds(), 0).sampling.n, 3);

    let e = err(&blocks(&iter.replace("block_type: LLMBlock", "block_type: FilterByValueBlock")));
    assert_eq!((e.line, e.key_path.as_str()), (7, "blocks[0].config.block_type"), "{e}");
    assert!(e.message.contains("IterBlock over FilterByValueBlock is not supported"), "{e}");
    let e = err(&blocks(&iter.replace("num_iters: 3", "num_iters: 0")));
    assert_eq!(e.key_path, "blocks[0].config.num_iters", "{e}");
    // The inner block's keys are checked like an LLMBlock's, in place.
    let e = err(&blocks(&iter.replace("      gen_kwargs: {n: 2}\n", "      gen_kwarg: {n: 2}\n")));
    assert_eq!((e.line, e.key_path.as_str()), (11, "blocks[0].config.gen_kwarg"), "{e}");
}

#[test]
fn custom_regex_parser_with_cleanup_tags() {
    let p = plan_ctx(
        "knowledge.yaml",
        &blocks(concat!(
            "  - name: gen_knowledge\n    type: LLMBlock\n    config:\n      config_path: ../c/notags.yaml\n      output_cols: [question, response]\n",
            "      parser_kwargs:\n        parser_name: custom\n",
            "        parsing_pattern: '\\[(?:Question|QUESTION)\\]\\s*(.*?)\\s*\\[(?:Answer|ANSWER)\\]\\s*(.*?)\\s*(?=\\[(?:Question|QUESTION)\\]|$)'\n",
            "        parser_cleanup_tags: [\"[END]\", \"[End]\"]\n",
        )),
        &BuildContext::default(),
    );
    let b = text_batch(&[("document", vec!["doc".into()])]).unwrap();
    let Operator::Teacher(t) = &p.steps[0].operator else { panic!() };
    let out = t.assemble(&b, 0, vec![answer(&["[Question] Why?\n[Answer] Because. [END]\n[QUESTION] How? [ANSWER] So.\n"])]).unwrap();
    assert_eq!(text(&out.rows, "question"), ["Why?", "How?"]);
    assert_eq!(text(&out.rows, "response"), ["Because. ", "So."]);

    // One column: the reference strips but does not clean up.
    let one = concat!(
        "  - name: g\n    type: LLMBlock\n    config:\n      config_path: ../c/notags.yaml\n      output_cols: [question]\n",
        "      parser_kwargs: {parser_name: custom, parsing_pattern: 'Q: (.*?)$', parser_cleanup_tags: [\"[END]\"]}\n",
    );
    let p = plan_ctx("knowledge.yaml", &blocks(one), &BuildContext::default());
    let Operator::Teacher(t) = &p.steps[0].operator else { panic!() };
    let out = t.assemble(&b, 0, vec![answer(&["Q: one [END]"])]).unwrap();
    assert_eq!(text(&out.rows, "question"), ["one [END]"]);
    assert!(p.notes.iter().any(|n| n.contains("parser_cleanup_tags are not applied")), "{:?}", p.notes);

    let e = err_in("knowledge.yaml", &blocks(&one.replace("parsing_pattern: 'Q: (.*?)$', ", "")));
    assert_eq!(e.key_path, "blocks[0].config.parser_kwargs.parser_name", "{e}");
    let e = err_in("knowledge.yaml", &blocks(&one.replace("(.*?)$", "(unclosed")));
    assert!(e.message.contains("bad regex"), "{e}");
    assert_eq!(e.line, 3, "{e}");
}

#[test]
fn default_parsing_uses_the_prompt_tags_one_pair_per_column() {
    // Empty tags take the whole completion.
    let p = plan_ctx(
        "knowledge.yaml",
        &blocks("  - name: spell\n    type: LLMBlock\n    config:\n      config_path: ../c/whole.yaml\n      output_cols: [spellcheck]\n"),
        &BuildContext::default(),
    );
    let b = text_batch(&[("document", vec!["doc".into()])]).unwrap();
    let Operator::Teacher(t) = &p.steps[0].operator else { panic!() };
    assert_eq!(text(&t.assemble(&b, 0, vec![answer(&["  all of it \n"])]).unwrap().rows, "spellcheck"), ["all of it"]);

    // More pairs than columns: the first ones, as `zip` does.
    let p = plan(&blocks(
        "  - name: e\n    type: LLMBlock\n    config:\n      config_path: ../c/judge.yaml\n      output_cols: [evaluation]\n",
    ));
    assert!(p.notes.iter().any(|n| n.contains("the first 1 are used")), "{:?}", p.notes);
    // Fewer: an error at the prompt file's key.
    let e = err(&blocks(
        "  - name: e\n    type: LLMBlock\n    config:\n      config_path: ../c/q.yaml\n      output_cols: [question, answer]\n",
    ));
    assert_eq!((e.line, e.key_path.as_str()), (6, "blocks[0].config.config_path"), "{e}");
    assert!(e.message.contains("1 start/end tag pair(s) for 2 output column(s)"), "{e}");
    // Another parser name means tags in the reference.
    let p = plan(&blocks("  - name: e\n    type: LLMBlock\n    config:\n      config_path: ../c/q.yaml\n      output_cols: [question]\n      parser_kwargs: {parser_name: tags}\n      batch_kwargs: {num_samples: 1}\n"));
    assert!(p.notes.iter().any(|n| n.contains("parsed by tags")), "{:?}", p.notes);
}

#[test]
fn conditional_llm_block_picks_the_prompt_by_column() {
    let cond = concat!(
        "  - name: c\n    type: ConditionalLLMBlock\n    config:\n      selector_column_name: task_description\n",
        "      config_paths:\n        - [../c/q.yaml, rivers]\n        - [../c/other.yaml, seas]\n      output_cols: [question]\n      batch_kwargs: {num_samples: 1}\n",
    );
    let p = plan(&blocks(cond));
    let b = seeds();
    assert!(user_message(&request(&p, 0, &b, 0)).starts_with("Sys.\nIntro 1."));
    assert_eq!(user_message(&request(&p, 0, &b, 1)), "Other Saltiest?");
    let Operator::Teacher(t) = &p.steps[0].operator else { panic!() };
    // Every row is parsed with the first config's tags, as in the reference.
    let out = t.assemble(&b, 1, vec![answer(&["[Q] from q tags [/Q] [A] not these [/A]"])]).unwrap();
    assert_eq!(text(&out.rows, "question"), ["from q tags"]);
    let other = text_batch(&[("task_description", vec!["lakes".into()]), ("seed_question", vec!["?".into()])]).unwrap();
    let Calls::Reject(reason) = t.calls(&other, 0).unwrap() else { panic!("reject expected") };
    assert!(reason.contains("no prompt for task_description = \"lakes\""), "{reason}");

    // One entry with the value `All`: that prompt for every row.
    let all = cond.replace("        - [../c/q.yaml, rivers]\n        - [../c/other.yaml, seas]\n", "        - [../c/other.yaml, All]\n");
    let p = plan(&blocks(&all));
    assert_eq!(user_message(&request(&p, 0, &other, 0)), "Other ?");

    let e = err(&blocks(&cond.replace("[../c/other.yaml, seas]", "[../c/other.yaml]")));
    assert_eq!(e.key_path, "blocks[0].config.config_paths[1]", "{e}");
    let e = err(&blocks(&cond.replace("      selector_column_name: task_description\n", "")));
    assert!(e.message.contains("needs `selector_column_name`"), "{e}");
    let e = err(&blocks(&cond.replace("task_description\n", "nope\n")));
    assert!(e.message.contains("no column `nope`"), "{e}");
}

#[test]
fn log_prob_block_runs_as_an_llm_block_and_messages_block_is_refused() {
    let p = plan(&blocks(&GEN_Q.replace("LLMBlock", "LLMLogProbBlock")));
    assert_eq!(kinds(&p), ["generate"]);
    assert!(p.notes[0].contains("LLMLogProbBlock generates text like an LLMBlock"), "{:?}", p.notes);
    let e = err(&blocks("  - name: m\n    type: LLMMessagesBlock\n    config: {input_col: messages, output_col: out}\n"));
    assert_eq!((e.line, e.key_path.as_str()), (4, "blocks[0].type"), "{e}");
    assert!(e.message.starts_with("LLMMessagesBlock is not supported yet"), "{e}");
    let e = err(&blocks("  - name: s\n    type: SamplePopulatorBlock\n    config: {config_paths: [a.yaml], column_name: x}\n"));
    assert!(e.message.starts_with("SamplePopulatorBlock is not supported yet"), "{e}");
    let e = err(&blocks("  - name: s\n    type: MadeUpBlock\n    config: {}\n"));
    assert!(e.message.contains("unknown block type \"MadeUpBlock\"; known: LLMBlock"), "{e}");
}

fn judge_then(filter: &str) -> Plan {
    plan(&blocks(&format!(
        "  - name: e\n    type: LLMBlock\n    config:\n      config_path: ../c/judge.yaml\n      output_cols: [evaluation, score]\n  - name: f\n    type: FilterByValueBlock\n    config:\n{filter}"
    )))
}

fn scores(values: &[&str]) -> RecordBatch {
    text_batch(&[("score", values.iter().map(|s| s.to_string()).collect())]).unwrap()
}

#[test]
fn filter_block_casts_like_the_reference() {
    // eq 1.0 as float: a score that does not convert becomes 0.0 and fails, so the row goes
    // either way; the reason says why.
    let p = judge_then("      filter_column: score\n      filter_value: 1.0\n      operation: eq\n      convert_dtype: float\n");
    assert_eq!(kinds(&p), ["generate", "filter"]);
    let out = apply(&p, 1, &scores(&["1", " 1.0 ", "0", "abc"]));
    assert_eq!(out.rows.num_rows(), 2);
    assert_eq!(out.rejects[1].reason, "cannot read \"abc\" as float (column score)");
    // le 1: 0.0 passes, so an unconvertible score is kept as 0.0, as in the reference.
    let p = judge_then("      filter_column: score\n      filter_value: 1\n      operation: le\n      convert_dtype: int\n");
    let out = apply(&p, 1, &scores(&["2", "abc"]));
    assert_eq!(out.rows.num_rows(), 1);
    assert_eq!(text(&out.rows, "score"), ["0"]);
    // A given default_value, a list, and the dunder names of Python's operator module.
    let p = judge_then("      filter_column: score\n      filter_value: [2, 3]\n      operation: __ge__\n      convert_dtype: int\n      default_value: \"5\"\n");
    assert_eq!(text(&apply(&p, 1, &scores(&["1", "2", "x"])).rows, "score"), ["2", "5"]);
    // No cast: text against text.
    let p = judge_then("      filter_column: score\n      filter_value: \"YES\"\n      operation: eq\n      default_value: \"NO\"\n");
    assert_eq!(apply(&p, 1, &scores(&["YES", "NO"])).rows.num_rows(), 1);
    assert!(p.notes.iter().any(|n| n.contains("default_value has no effect without convert_dtype")), "{:?}", p.notes);
    let p = judge_then("      filter_column: evaluation\n      filter_value: [good, fine]\n      operation: contains\n");
    let b = text_batch(&[("evaluation", vec!["a good one".into(), "bad".into()])]).unwrap();
    assert_eq!(apply(&p, 1, &b).rows.num_rows(), 1);
}

#[test]
fn filter_block_errors() {
    let base = "      filter_column: score\n      filter_value: 1.0\n      operation: eq\n      convert_dtype: float\n";
    let e = err(&blocks(&format!(
        "  - name: e\n    type: LLMBlock\n    config:\n      config_path: ../c/judge.yaml\n      output_cols: [evaluation, score]\n  - name: f\n    type: FilterByValueBlock\n    config:\n{}",
        base.replace("operation: eq", "operation: is_")
    )));
    assert_eq!((e.line, e.key_path.as_str()), (13, "blocks[1].config.operation"), "{e}");
    assert!(e.message.contains("operation \"is_\" is not supported"), "{e}");
    for (from, to, key, what) in [
        ("convert_dtype: float", "convert_dtype: bool", "convert_dtype", "`bool` is not supported"),
        ("convert_dtype: float", "convert_dtype: str", "convert_dtype", "unknown convert_dtype"),
        ("operation: eq", "operation: contains", "operation", "`contains` needs text"),
        ("operation: eq\n", "operation: eq\n      default_value: zero\n", "default_value", "cannot be read as float"),
        ("operation: eq\n", "operation: eq\n      bogus: 1\n", "bogus", "unknown field `bogus`"),
    ] {
        let e = err(&blocks(&format!(
            "  - name: e\n    type: LLMBlock\n    config:\n      config_path: ../c/judge.yaml\n      output_cols: [evaluation, score]\n  - name: f\n    type: FilterByValueBlock\n    config:\n{}",
            base.replace(from, to)
        )));
        assert_eq!(e.key_path, format!("blocks[1].config.{key}"), "{e}");
        assert!(e.message.contains(what), "{e}");
    }
    // A number against a text column without a cast: the filter's own schema check, at the block.
    let e = err(&blocks(&format!(
        "  - name: e\n    type: LLMBlock\n    config:\n      config_path: ../c/judge.yaml\n      output_cols: [evaluation, score]\n  - name: f\n    type: FilterByValueBlock\n    config:\n{}",
        base.replace("      convert_dtype: float\n", "")
    )));
    assert_eq!((e.line, e.key_path.as_str()), (8, "blocks[1]"), "{e}");
    assert!(e.message.contains("add `cast: int` or `cast: float`"), "{e}");
}

#[test]
fn column_blocks_map_to_column_operators() {
    let p = plan_ctx(
        "grounded_skills.yaml",
        &blocks(concat!(
            "  - name: dup\n    type: DuplicateColumnsBlock\n    config:\n      columns_map: {seed_question: q2}\n",
            "  - name: ren\n    type: RenameColumnsBlock\n    config:\n      columns_map: {q2: question, seed_context: context}\n",
            "  - name: comb\n    type: CombineColumnsBlock\n    config:\n      columns: [context, question]\n      output_col: question\n",
            "  - name: comb2\n    type: CombineColumnsBlock\n    config:\n      columns: [context, question]\n      output_col: both\n      separator: \" | \"\n",
            "  - name: flat\n    type: FlattenColumnsBlock\n    config:\n      var_cols: [question, both]\n      value_name: text\n      var_name: which\n",
            "  - name: maj\n    type: SetToMajorityValueBlock\n    config:\n      col_name: task_description\n",
        )),
        &BuildContext::default(),
    );
    assert_eq!(kinds(&p), ["duplicate", "rename", "combine", "combine", "flatten", "majority"]);
    assert_eq!(columns(&p), ["task_description", "context", "seed_question", "seed_response", "text", "which"]);
    let b = text_batch(&[
        ("task_description", vec!["t".into()]),
        ("seed_context", vec!["C".into()]),
        ("seed_question", vec!["Q".into()]),
        ("seed_response", vec!["R".into()]),
    ])
    .unwrap();
    let mut rows = b;
    for i in 0..4 {
        rows = apply(&p, i, &rows).rows;
    }
    assert_eq!(text(&rows, "question"), ["C\n\nQ"]);
    assert_eq!(text(&rows, "both"), ["C | C\n\nQ"]);
    let flat = apply(&p, 4, &rows).rows;
    assert_eq!(text(&flat, "which"), ["question", "both"]);

    let e = err(&blocks("  - name: r\n    type: RenameColumnsBlock\n    config:\n      columns_map: {nope: x}\n"));
    assert!(e.message.contains("nope") && e.message.contains("(input: the freeform_skill seed rows)"), "{e}");
    let e = err(&blocks("  - name: f\n    type: FlattenColumnsBlock\n    config:\n      var_cols: [seed_question]\n      value_name: v\n"));
    assert!(e.message.contains("missing field `var_name`"), "{e}");
    assert_eq!(e.key_path, "blocks[0].config", "{e}");
}

#[test]
fn selector_block_is_a_lookup_template() {
    let p = plan(&blocks("  - name: s\n    type: SelectorBlock\n    config:\n      choice_map: {rivers: seed_question, seas: seed_response}\n      choice_col: task_description\n      output_col: chosen\n"));
    assert_eq!(kinds(&p), ["template"]);
    let b = text_batch(&[
        ("task_description", vec!["rivers".into(), "seas".into(), "lakes".into()]),
        ("seed_question", vec!["Q1".into(), "Q2".into(), "Q3".into()]),
        ("seed_response", vec!["R1".into(), "R2".into(), "R3".into()]),
    ])
    .unwrap();
    let out = apply(&p, 0, &b);
    assert_eq!(text(&out.rows, "chosen"), ["Q1", "R2"]);
    // The reference raises a KeyError for a value with no entry; here that row is rejected.
    assert_eq!(out.rejects.len(), 1);
    assert_eq!(out.rejects[0].row, 2);
    let e = err(&blocks("  - name: s\n    type: SelectorBlock\n    config:\n      choice_map: {a: nope}\n      choice_col: task_description\n      output_col: chosen\n"));
    assert!(e.message.contains("the template uses `nope`, which is not a column"), "{e}");
    let e = err(&blocks("  - name: s\n    type: SelectorBlock\n    config:\n      choice_map: {a: \"not a name\"}\n      choice_col: task_description\n      output_col: chosen\n"));
    assert_eq!(e.key_path, "blocks[0].config.choice_map", "{e}");
}

#[test]
fn drop_columns_and_drop_duplicates_become_steps() {
    let p = plan(&blocks(&format!("{}    drop_duplicates: [question]\n    drop_columns: [num_samples, __index_level_0__]\n", GEN_Q)));
    assert_eq!(kinds(&p), ["generate", "drop", "dedup"]);
    assert_eq!(p.steps[1].name, "gen_questions.drop_columns");
    assert_eq!(p.steps[2].name, "gen_questions.drop_duplicates");
    assert_eq!(columns(&p), ["task_description", "seed_question", "seed_response", "question"]);
    assert!(p.notes.iter().any(|n| n.contains("drop_columns __index_level_0__ are not columns here")), "{:?}", p.notes);
    // Exact, like pandas: case and spacing matter; the first row is kept.
    let b = text_batch(&[("question", vec!["A?".into(), "a?".into(), "A?".into(), "A? ".into()])]).unwrap();
    let out = apply(&p, 2, &b);
    assert_eq!(text(&out.rows, "question"), ["A?", "a?", "A? "]);
    assert_eq!(out.rejects[0].reason, "duplicate of 0000 on question");

    // Only absent columns: no step at all.
    let p = plan(&blocks(&format!("{GEN_Q}    drop_columns: [__index_level_0__]\n")));
    assert_eq!(kinds(&p), ["generate"]);
    let e = err(&blocks(&format!("{GEN_Q}    drop_duplicates: [nope]\n")));
    assert_eq!((e.line, e.key_path.as_str()), (10, "blocks[0].drop_duplicates"), "{e}");
}

#[test]
fn repeated_block_names_get_distinct_step_names() {
    let p = plan(&blocks(&format!("{GEN_Q}{}", GEN_Q.replace("[question]", "[q2]"))));
    assert_eq!(p.steps[1].name, "gen_questions (2)");
    assert!(p.notes.iter().any(|n| n.contains("appears more than once")), "{:?}", p.notes);
}

#[test]
fn llm_block_errors_point_at_the_key() {
    let cases: [(&str, &str, &str, &str); 7] = [
        ("output_cols", "output_colz", "blocks[0].config.output_colz", "unknown field `output_colz`"),
        (
            "      batch_kwargs:\n",
            "      gen_kwargs: {frequency_penalty: 1}\n      batch_kwargs:\n",
            "blocks[0].config.gen_kwargs.frequency_penalty",
            "unknown field",
        ),
        (
            "      batch_kwargs:\n",
            "      gen_kwargs: {extra_body: {}}\n      batch_kwargs:\n",
            "blocks[0].config.gen_kwargs.extra_body",
            "not supported",
        ),
        (
            "      batch_kwargs:\n",
            "      gen_kwargs: {n: lots}\n      batch_kwargs:\n",
            "blocks[0].config.gen_kwargs.n",
            "a number or \"scaled\"",
        ),
        ("num_samples: 30", "num_samples: 2.5", "blocks[0].config.batch_kwargs.num_samples", "not a whole number"),
        ("../c/q.yaml", "../c/missing.yaml", "blocks[0].config.config_path", "relative to the pipeline file"),
        ("config_path: ../c/q.yaml", "config_paths: [[../c/q.yaml, x]]", "blocks[0].config.config_paths", "belongs to ConditionalLLMBlock"),
    ];
    for (from, to, key, what) in cases {
        let e = err(&blocks(&GEN_Q.replace(from, to)));
        assert_eq!(e.key_path, key, "{e}");
        assert!(e.message.contains(what), "{e}");
        assert_eq!(e.file, "p/freeform_skills.yaml", "{e}");
    }
    let p = plan(&blocks(
        &GEN_Q.replace("      output_cols", "      model_id: m\n      model_family: mixtral\n      model_prompt: \"\"\n      output_cols"),
    ));
    assert_eq!(p.notes.len(), 3, "{:?}", p.notes);
}

#[test]
fn file_level_errors() {
    let e = err("version: \"2.0\"\nblocks: []\n");
    assert!(e.message.contains("future major version"), "{e}");
    let e = err("version: 1\nblocks: []\n");
    assert!(e.message.contains("--pipeline DIR"), "{e}");
    let e = err("version: \"1.0\"\nblocks: []\n");
    assert_eq!(e.key_path, "blocks", "{e}");
    let e = err("version: \"1.0\"\nblocks: []\nsteps: []\n");
    assert!(e.message.contains("unknown field `steps`"), "{e}");
    let e = err_in("skills.yaml", &blocks(GEN_Q));
    assert!(e.message.contains("comes from its file name"), "{e}");
    let e = err(&blocks("  - name: x\n    type: LLMBlock\n"));
    assert!(e.message.contains("missing field `config`"), "{e}");
    let p = plan(&format!(
        "{}datamixing:\n  auxiliary_instructions:\n    spellcheck: [Fix it.]\n",
        blocks(GEN_Q).replace("\"1.0\"", "\"1.1\"")
    ));
    assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
    assert_eq!(p.name, "p/freeform_skills");
    assert_eq!(p.leaf_kinds, vec![LeafKind::FreeformSkill]);
}

#[test]
fn load_dir_needs_all_three_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pipes/mine")).unwrap();
    std::fs::create_dir_all(dir.path().join("c")).unwrap();
    for (name, body) in [("q.yaml", Q), ("whole.yaml", WHOLE)] {
        std::fs::write(dir.path().join("c").join(name), body).unwrap();
    }
    let mine = dir.path().join("pipes/mine");
    let skill = GEN_Q.replace("../c/", "../../c/");
    std::fs::write(mine.join("freeform_skills.yaml"), blocks(&skill)).unwrap();
    let e = load_dir(&mine, &BuildContext::default()).unwrap_err();
    assert!(e.message.contains("lacks knowledge.yaml, grounded_skills.yaml"), "{e}");
    std::fs::write(mine.join("grounded_skills.yaml"), blocks(&skill)).unwrap();
    std::fs::write(
        mine.join("knowledge.yaml"),
        blocks(
            "  - name: spell\n    type: LLMBlock\n    config:\n      config_path: ../../c/whole.yaml\n      output_cols: [spellcheck]\n",
        ),
    )
    .unwrap();
    let plans = load_dir(&mine, &BuildContext::default()).unwrap();
    let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["mine/knowledge", "mine/freeform_skills", "mine/grounded_skills"]);
    assert!(plans[0].file.ends_with("pipes/mine/knowledge.yaml"), "{}", plans[0].file);
}

#[test]
fn pipeline_arguments_name_ilab_directories() {
    assert_eq!(dir_arg("ilab:/opt/sdg/pipelines/full"), Some(Path::new("/opt/sdg/pipelines/full")));
    assert_eq!(dir_arg("pipelines/default"), None);
    assert_eq!(kind_of("x/grounded_skills.yaml"), Some(LeafKind::GroundedSkill));
    assert_eq!(kind_of("x/mmlu_bench.yaml"), None);
}
