use super::*;

/// Files in memory, for loader tests.
struct Files(Vec<(&'static str, &'static str)>);

impl Source for Files {
    fn read(&self, rel: &str) -> Result<String, String> {
        self.0.iter().find(|(p, _)| *p == rel).map(|(_, t)| t.to_string()).ok_or_else(|| format!("cannot read {rel}: not found"))
    }
    fn display(&self, rel: &str) -> String {
        rel.to_string()
    }
}

const PROMPT: &str =
    "system: Be brief.\ngeneration: |\n  Write questions like {{ seed_question }}.\nstart_tags: [\"[Q]\"]\nend_tags: [\"[/Q]\"]\n";
const JUDGE: &str = "generation: |\n  Is {{ question }} good? Answer 0 or 1.\n";

const GOOD: &str = r#"version: 1
name: tiny
description: Questions, then a judge.
leaf_kinds: [freeform_skill, grounded_skill]
sampling: {temperature: 0.5}
steps:
  - name: questions
    op: generate
    prompt: ../prompts/q.yaml
    output: [question]
    n: scaled
  - name: judge
    op: critique
    prompt: ../prompts/judge.yaml
    labels: ["0", "1"]
"#;

fn files(pipeline: &'static str) -> Files {
    Files(vec![("p/tiny.yaml", pipeline), ("prompts/q.yaml", PROMPT), ("prompts/judge.yaml", JUDGE)])
}

fn err(pipeline: &'static str) -> PipelineError {
    load(&files(pipeline), "p/tiny.yaml", &BuildContext::default()).unwrap_err()
}

#[test]
fn a_good_file_builds_and_explains() {
    let ctx = BuildContext { scale: 3, ..BuildContext::default() };
    let plan = load(&files(GOOD), "p/tiny.yaml", &ctx).unwrap();
    assert_eq!(plan.steps.len(), 2);
    assert_eq!(plan.steps[1].input, Some(0));
    assert_eq!(plan.output, 1);
    let text = plan.explain();
    assert!(text.contains("1. questions [generate] <- seeds"), "{text}");
    assert!(text.contains("+question:text"), "{text}");
    assert!(text.contains("teacher: 1 request(s), 3 completion(s) per input row"), "{text}");
    assert!(text.contains("teacher: 2 scoring request(s) per input row"), "{text}");
}

#[test]
fn errors_point_at_the_line_and_key() {
    let e = err("version: 1\nname: x\nleaf_kinds: [freeform_skill]\nsteps:\n  - name: a\n    op: generate\n    prompt: ../prompts/q.yaml\n    output: [q]\n    bogus: 1\n");
    assert_eq!((e.file.as_str(), e.line, e.key_path.as_str()), ("p/tiny.yaml", 9, "steps[0].bogus"), "{e}");
    assert!(e.message.contains("unknown field `bogus`"), "{e}");

    let e = err("version: 1\nname: x\nleaf_kinds: [freeform_skill]\nsteps:\n  - name: a\n    op: generat\n");
    assert_eq!(e.line, 6, "{e}");
    assert!(e.message.contains("unknown operator \"generat\"; known: generate, critique, iterate"), "{e}");
    assert_eq!(e.key_path, "steps[0].op");

    let e = err("version: 1\nname: x\nleaf_kinds: [freeform_skill]\nsteps:\n  - name: a\n    op: generate\n    prompt: ../prompts/q.yaml\n    output: [q]\n    n: lots\n");
    assert_eq!(e.key_path, "steps[0].n", "{e}");
    assert_eq!(e.line, 9, "{e}");

    let e = err("version: 1\nname: x\nleaf_kinds: [freeform_skill]\nsteps:\n  - name: a\n    op: generate\n    prompt: ../prompts/missing.yaml\n    output: [q]\n");
    assert_eq!((e.line, e.key_path.as_str()), (7, "steps[0].prompt"), "{e}");
    assert!(e.message.contains("relative to the pipeline file"), "{e}");

    let e = err("version: \"1.0\"\nblocks: []\n");
    assert!(e.message.contains("ilab:DIR"), "{e}");

    let e = err("version: 1\nname: x\nleaf_kinds: [skills]\nsteps: []\n");
    assert!(e.message.contains("unknown leaf kind \"skills\""), "{e}");
}

#[test]
fn schema_errors_name_the_step_and_its_input() {
    let e = err("version: 1\nname: x\nleaf_kinds: [freeform_skill]\nsteps:\n  - name: judge\n    op: critique\n    prompts: {column: nope, choices: {a: ../prompts/judge.yaml}}\n    labels: [\"1\"]\n");
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("no column `nope`") && e.message.contains("(input: the freeform_skill seed rows)"), "{e}");
}

#[test]
fn dangling_steps_and_duplicate_names_are_refused() {
    let e = err("version: 1\nname: x\nleaf_kinds: [freeform_skill]\nsteps:\n  - name: a\n    op: generate\n    prompt: ../prompts/q.yaml\n    output: [q]\n  - name: b\n    op: generate\n    input: seeds\n    prompt: ../prompts/q.yaml\n    output: [q]\n");
    assert!(e.message.contains("the rows of step `a` go nowhere"), "{e}");
    let e = err("version: 1\nname: x\nleaf_kinds: [freeform_skill]\nsteps:\n  - name: a\n    op: generate\n    prompt: ../prompts/q.yaml\n    output: [q]\n  - name: a\n    op: generate\n    prompt: ../prompts/q.yaml\n    output: [q]\n");
    assert!(e.message.contains("used twice"), "{e}");
}

#[test]
fn prompt_file_errors_point_into_the_prompt_file() {
    let f = Files(vec![("p/tiny.yaml", GOOD), ("prompts/q.yaml", "system: x\ngenerations: typo\n"), ("prompts/judge.yaml", JUDGE)]);
    let e = load(&f, "p/tiny.yaml", &BuildContext::default()).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("prompts/q.yaml", 2), "{e}");
    assert!(e.message.contains("unknown field `generations`"), "{e}");
}
