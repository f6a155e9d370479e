use super::*;
use crate::operators::batch::text_batch;
use crate::operators::{BuildContext, Call, Calls, Operator, ROW_ID};
use crate::pipeline::load::parse_kind;
use crate::pipeline::{load, seed_schema, Plan};
use crate::taxonomy::{yaml, LeafKind};
use crate::teacher::Prompt;
use arrow::datatypes::SchemaRef;
use std::collections::BTreeSet;
use std::path::Path;

/// Every file under `dir`, as `/`-separated paths relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let rel =
                path.strip_prefix(root).unwrap().components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>();
            out.push(rel.join("/"));
        }
    }
}

fn pipelines_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines")
}

/// The files the table must hold: everything under `pipelines/` but its documentation.
/// Every file under pipelines/ that is embedded: not the documentation, and not the training
/// recipes (they name model and data files on disk by relative path, so they are read from disk).
fn files_on_disk() -> BTreeSet<String> {
    let root = pipelines_dir();
    let mut all = Vec::new();
    walk(&root, &root, &mut all);
    all.into_iter().filter(|p| !p.ends_with(".md") && !p.starts_with("train/")).collect()
}

fn ctx() -> BuildContext {
    BuildContext { scale: 2, ..BuildContext::default() }
}

fn every_pipeline() -> Vec<&'static str> {
    SETS.iter().flat_map(|s| set(s).expect("invariant: SETS are sets")).collect()
}

fn load_builtin(rel: &str) -> Plan {
    load(&Builtin, rel, &ctx()).unwrap_or_else(|e| panic!("{rel} does not load: {e}"))
}

fn names(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).filter(|n| n != ROW_ID).collect()
}

/// One row holding a dummy text value in every column of `schema` (numbers too: templates only
/// interpolate them).
fn dummy_row(schema: &SchemaRef) -> arrow::record_batch::RecordBatch {
    let columns: Vec<(String, Vec<String>)> = names(schema).into_iter().map(|n| (n.clone(), vec![format!("some {n}")])).collect();
    let columns: Vec<(&str, Vec<String>)> = columns.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    text_batch(&columns).unwrap()
}

/// The last message's text of a chat prompt.
fn user_text(prompt: &Prompt) -> String {
    match prompt {
        Prompt::Chat(m) => m.last().map(|m| m.content.clone()).unwrap_or_default(),
        other => panic!("judges render chat prompts, got {other:?}"),
    }
}

/// The longest common prefix of `texts`.
fn common_prefix(texts: &[String]) -> String {
    let first = texts.first().cloned().unwrap_or_default();
    let len = texts.iter().map(|t| first.chars().zip(t.chars()).take_while(|(a, b)| a == b).count()).min().unwrap_or(0);
    first.chars().take(len).collect()
}

/// `full/knowledge.yaml` with its optional summary steps uncommented (BEGIN … END markers).
fn knowledge_with_summaries() -> String {
    let text = file("full/knowledge.yaml").unwrap();
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        match line.trim() {
            "# BEGIN summary variants" => inside = true,
            "# END summary variants" => inside = false,
            _ if inside => out.push(line.strip_prefix("  # ").map(|rest| format!("  {rest}")).unwrap_or_default()),
            _ => out.push(line.to_string()),
        }
    }
    out.join("\n")
}

/// The built-in files with one file's text replaced.
struct Overlay {
    rel: &'static str,
    text: String,
}

impl Source for Overlay {
    fn read(&self, rel: &str) -> Result<String, String> {
        if rel == self.rel {
            Ok(self.text.clone())
        } else {
            Builtin.read(rel)
        }
    }
    fn display(&self, rel: &str) -> String {
        Builtin.display(rel)
    }
}

#[test]
fn the_table_holds_exactly_the_files_under_pipelines() {
    let table: BTreeSet<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(table.len(), FILES.len(), "a path is listed twice in FILES");
    let disk = files_on_disk();
    let missing: Vec<_> = disk.difference(&table).collect();
    let stale: Vec<_> = table.difference(&disk).collect();
    assert!(missing.is_empty(), "files under pipelines/ not embedded in builtin::FILES (add them): {missing:?}");
    assert!(stale.is_empty(), "builtin::FILES lists files that are not under pipelines/: {stale:?}");
    for (rel, text) in FILES {
        let on_disk = std::fs::read_to_string(pipelines_dir().join(rel)).unwrap();
        assert_eq!(*text, on_disk, "embedded text of {rel} differs from the file");
    }
}

#[test]
fn sets_list_one_pipeline_per_leaf_kind() {
    assert_eq!(set("full").unwrap(), vec!["full/freeform_skills.yaml", "full/grounded_skills.yaml", "full/knowledge.yaml"]);
    assert_eq!(set("simple").unwrap(), vec!["simple/freeform_skills.yaml", "simple/grounded_skills.yaml", "simple/knowledge.yaml"]);
    assert_eq!(set("prompts"), None);
    assert_eq!(set("ful"), None);
    // Every top-level folder but the prompts and the mix recipes is a set.
    let folders: BTreeSet<String> = files_on_disk().iter().filter_map(|p| p.split_once('/').map(|(d, _)| d.to_string())).collect();
    let expected: BTreeSet<String> = SETS.iter().map(|s| s.to_string()).chain(["prompts".to_string(), "mix".to_string()]).collect();
    assert_eq!(folders, expected);
    for s in SETS {
        let mut kinds: Vec<LeafKind> = set(s).unwrap().iter().flat_map(|p| load_builtin(p).leaf_kinds).collect();
        kinds.sort_by_key(|k| k.label());
        let labels: Vec<&str> = kinds.iter().map(|k| k.label()).collect();
        assert_eq!(labels, vec!["freeform_skill", "grounded_skill", "knowledge"], "set {s}");
    }
}

#[test]
fn a_missing_builtin_file_names_the_pipelines() {
    let e = Builtin.read("full/skills.yaml").unwrap_err();
    assert!(e.contains("no built-in file full/skills.yaml") && e.contains("full/knowledge.yaml"), "{e}");
    let e = load(&Builtin, "full/skills.yaml", &ctx()).unwrap_err();
    assert_eq!(e.file, "builtin:full/skills.yaml");
}

#[test]
fn every_builtin_pipeline_loads_explains_and_ends_with_question_and_response() {
    for rel in every_pipeline() {
        let plan = load_builtin(rel);
        let text = plan.explain();
        assert!(text.starts_with(&format!("pipeline {} (builtin:{rel})", plan.name)), "{text}");
        for s in &plan.steps {
            assert!(text.contains(&format!(". {} [{}]", s.name, s.kind)), "{rel}: explain misses step {}:\n{text}", s.name);
        }
        let out = names(&plan.steps[plan.output].schema_out);
        let mut wanted = vec!["question", "response"];
        if plan.leaf_kinds.contains(&LeafKind::Knowledge) {
            // The mixer shows the chunk with the question and draws RAFT distractors from chunks.
            wanted.push("document");
        }
        for c in wanted {
            assert!(out.iter().any(|o| o == c), "{rel}: final columns {out:?} lack {c}");
        }
        assert_eq!(plan.output, plan.steps.len() - 1, "{rel}: the dataset is the last step");
    }
}

#[test]
fn every_teacher_step_renders_for_a_seed_row_of_its_kind() {
    for rel in every_pipeline() {
        let plan = load_builtin(rel);
        for &kind in &plan.leaf_kinds {
            // Schemas for this kind, step by step, as the loader computes them.
            let mut outs: Vec<SchemaRef> = Vec::new();
            let mut teacher_steps = 0;
            for s in &plan.steps {
                let schema_in = s.input.map(|j| outs[j].clone()).unwrap_or_else(|| seed_schema(kind));
                if let Operator::Teacher(t) = &s.operator {
                    teacher_steps += 1;
                    let row = dummy_row(&schema_in);
                    match t.calls(&row, 0).unwrap() {
                        Calls::Send(calls) => assert_eq!(calls.len() as u64, t.cost().requests, "{rel}: {}", s.name),
                        Calls::Reject(reason) => panic!("{rel}: step {} cannot render for a {} seed row: {reason}", s.name, kind.label()),
                    }
                }
                outs.push(s.operator.schema_out(&schema_in).unwrap());
            }
            assert!(teacher_steps > 0, "{rel}");
        }
    }
}

#[test]
fn judges_show_the_reply_format_they_are_scored_in() {
    let mut judges = 0;
    for rel in every_pipeline() {
        let plan = load_builtin(rel);
        for s in plan.steps.iter().filter(|s| s.kind == "critique") {
            let Operator::Teacher(t) = &s.operator else { panic!("critique is a teacher step") };
            let Calls::Send(calls) = t.calls(&dummy_row(&s.schema_in), 0).unwrap() else { panic!("{rel}: {} rejects", s.name) };
            let Call::Score { prompt, labels } = &calls[0] else { panic!("{rel}: {} is not a logprob judge", s.name) };
            judges += 1;
            // The label must be the first thing written after the prefix: the prompt names the
            // tag the prefix opens, and every label.
            let prefix = common_prefix(labels);
            assert!(prefix.ends_with('\n') && prefix.trim().starts_with("[Start of "), "{rel}: {}: prefix {prefix:?}", s.name);
            let text = user_text(prompt);
            assert!(
                text.trim_end().ends_with(&format!("{}\n...\n[End of {}", prefix.trim(), &prefix.trim()["[Start of ".len()..])),
                "{rel}: {}: the prompt must end by showing the reply format:\n{text}",
                s.name
            );
            for l in labels {
                let label = &l[prefix.len()..];
                assert!(text.contains(label), "{rel}: {}: the prompt never names label {label:?}", s.name);
            }
        }
    }
    assert_eq!(judges, 7, "two judges per full skills pipeline, three for knowledge");
}

#[test]
fn the_optional_summary_variants_load_when_uncommented() {
    let text = knowledge_with_summaries();
    assert!(text.contains("\n  - name: summaries\n    op: generate\n"), "{text}");
    let plan = load(&Overlay { rel: "full/knowledge.yaml", text }, "full/knowledge.yaml", &ctx()).unwrap_or_else(|e| panic!("{e}"));
    let steps: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(&steps[..4], &["keep_chunk", "summaries", "variants", "qa"]);
    let qa_in = names(&plan.steps[3].schema_in);
    for c in ["document", "raw_document", "document_kind"] {
        assert!(qa_in.iter().any(|n| n == c), "{qa_in:?}");
    }
    assert!(!qa_in.iter().any(|n| n == "summary"), "{qa_in:?}");
    let Operator::Teacher(t) = &plan.steps[1].operator else { panic!() };
    assert!(matches!(t.calls(&dummy_row(&plan.steps[1].schema_in), 0).unwrap(), Calls::Send(_)));
}

#[test]
fn every_prompt_file_is_used_by_a_pipeline() {
    let mut used = BTreeSet::new();
    let texts: Vec<(&str, String)> = every_pipeline()
        .into_iter()
        .map(|rel| (rel, file(rel).unwrap().to_string()))
        .chain([("full/knowledge.yaml", knowledge_with_summaries())])
        .collect();
    for (rel, text) in texts {
        let doc = yaml::load(&text).unwrap();
        let value = doc.value.unwrap();
        let dir = rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        for step in value["steps"].as_array().unwrap() {
            if let Some(p) = step.get("prompt").and_then(|p| p.as_str()) {
                let resolved = p.strip_prefix("../").map(|p| p.to_string()).unwrap_or_else(|| format!("{dir}/{p}"));
                used.insert(resolved);
            }
        }
        // Each pipeline names the leaf kinds the loader knows.
        for k in value["leaf_kinds"].as_array().unwrap() {
            assert!(parse_kind(k.as_str().unwrap()).is_some(), "{rel}");
        }
    }
    let prompts: BTreeSet<String> = files_on_disk().into_iter().filter(|p| p.starts_with("prompts/")).collect();
    let unused: Vec<_> = prompts.difference(&used).collect();
    assert!(unused.is_empty(), "prompt files no pipeline uses: {unused:?}");
}

/// Completions in the shapes the prompts ask for (the knowledge one as SmolLM2-135M wrote it,
/// commentary included), and what each generate step must make of them.
fn canned(rel: &str, step: &str) -> (&'static str, Vec<Vec<&'static str>>) {
    let numbered =
        "Here are the requests:\n1. Write a poem about rain on a tin roof.\n2) Write a limerick about a lazy cat.\n\nI hope these help.";
    let numbered_items = vec![vec!["Write a poem about rain on a tin roof."], vec!["Write a limerick about a lazy cat."]];
    let text = "  A short memo to all staff about the new parking rules.\n\nIt starts on Monday.\n";
    let text_item = vec![vec!["A short memo to all staff about the new parking rules.\n\nIt starts on Monday."]];
    match (rel.contains("knowledge"), step) {
        (true, "qa") => (
            "Question: How does the plant use light to make food?\nAnswer: The plant uses the energy from sunlight to turn carbon dioxide and water into glucose and oxygen.\n\nQuestion: What pigment makes leaves green?\nAnswer: Chlorophyll.\n\nThese questions cover the key facts of the document.",
            vec![
                vec!["How does the plant use light to make food?", "The plant uses the energy from sunlight to turn carbon dioxide and water into glucose and oxygen."],
                vec!["What pigment makes leaves green?", "Chlorophyll."],
            ],
        ),
        (_, "qa") => (
            "Question: Write a haiku about rain.\nAnswer: Grey clouds lean closer,\nthe street drinks every drop.\n\nPuddles hold the sky.",
            vec![vec!["Write a haiku about rain.", "Grey clouds lean closer,\nthe street drinks every drop.\n\nPuddles hold the sky."]],
        ),
        (_, "questions") => (numbered, numbered_items),
        (_, "contexts" | "answers" | "summaries") => (text, text_item),
        other => panic!("no canned completion for {other:?}; add one"),
    }
}

#[test]
fn every_generate_step_parses_the_format_its_prompt_asks_for() {
    use crate::operators::batch::text_column;
    use crate::operators::Answer;
    use crate::teacher::{Choice, FinishReason, Response, Usage};
    let mut plans: Vec<(String, Plan)> = every_pipeline().into_iter().map(|rel| (rel.to_string(), load_builtin(rel))).collect();
    let variants = load(&Overlay { rel: "full/knowledge.yaml", text: knowledge_with_summaries() }, "full/knowledge.yaml", &ctx()).unwrap();
    plans.push(("full/knowledge.yaml (summary variants)".to_string(), variants));
    let mut checked = 0;
    for (rel, plan) in &plans {
        for s in plan.steps.iter().filter(|s| s.kind == "generate") {
            let Operator::Teacher(t) = &s.operator else { panic!("generate is a teacher step") };
            let (completion, expected) = canned(rel, &s.name);
            let row = dummy_row(&s.schema_in);
            let response = Response {
                choices: vec![Choice { text: completion.into(), finish_reason: FinishReason::Stop, logprobs: None }],
                usage: Usage::default(),
            };
            let out = t.assemble(&row, 0, vec![Answer::Complete(Ok(response))]).unwrap();
            assert!(out.rejects.is_empty(), "{rel}: {}: {:?}", s.name, out.rejects);
            assert_eq!(out.rows.num_rows(), expected.len(), "{rel}: {}", s.name);
            let added: Vec<String> =
                names(&s.schema_out).into_iter().filter(|c| !names(&s.schema_in).contains(c) && c != "num_samples").collect();
            for (i, item) in expected.iter().enumerate() {
                let got: Vec<&str> = added.iter().map(|c| text_column(&out.rows, c, "test").unwrap().value(i)).collect();
                assert_eq!(&got, item, "{rel}: {} item {i}", s.name);
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 11, "every generate step of every built-in pipeline, summary variants included");
}
