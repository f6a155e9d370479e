//! Prompt files: the parts of a teacher prompt and how they become a chat request.
//!
//! The format is the reference's prompt config (`system`, `introduction`, `principles`,
//! `examples`, `generation`, `start_tags`, `end_tags`), so InstructLab's files load unchanged.
//! Every part is a Jinja template (minijinja, strict: a variable the row lacks is an error, as in
//! the reference, which uses `StrictUndefined`) over the row's columns.
//!
//! Two layouts:
//! - labflow's (default): `system` becomes the system message; the other parts, joined by
//!   newlines, the user message.
//! - the reference's (`system_in_user`): all five parts joined by newlines as one user message,
//!   exactly the text InstructLab's LLMBlock renders before wrapping it in a chat template.
//!
//! labflow's layout also takes `example_turns` (not in the reference's format): worked examples
//! as earlier turns of the conversation, each a user message and the assistant's reply, between
//! the system message and the user message. A chat model imitates a reply it has "given" far
//! more reliably than one it is told about: with SmolLM2-135M, an example answer quoted in the
//! user message is mostly talked about ("The example answer does not…"), one given as a turn is
//! followed in form.

use crate::teacher::{ChatMessage, Prompt};
use minijinja::{Environment, UndefinedBehavior};
use serde::Deserialize;
use std::sync::Arc;

/// A prompt file, as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptConfig {
    /// The system message.
    #[serde(default)]
    pub system: Option<String>,
    /// What the task is.
    #[serde(default)]
    pub introduction: Option<String>,
    /// Rules the answer must follow.
    #[serde(default)]
    pub principles: Option<String>,
    /// Worked examples.
    #[serde(default)]
    pub examples: Option<String>,
    /// The request itself, usually naming the row's values.
    #[serde(default)]
    pub generation: Option<String>,
    /// Start tags of the parts the completion is parsed into, one per output column.
    #[serde(default)]
    pub start_tags: Vec<String>,
    /// End tags, paired with `start_tags`.
    #[serde(default)]
    pub end_tags: Vec<String>,
    /// Worked examples as earlier conversation turns (labflow's layout only).
    #[serde(default)]
    pub example_turns: Vec<ExampleTurn>,
}

/// One worked example given as a turn of the conversation: templates, like every part.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleTurn {
    /// The example request, as the user's message.
    pub user: String,
    /// The example answer, as the assistant's reply.
    pub assistant: String,
}

/// A compiled prompt: templates checked, ready to render rows.
#[derive(Clone)]
pub struct PromptTemplate {
    env: Arc<Environment<'static>>,
    has_system: bool,
    /// How many `example_turns` (templates `turn{i}.user` and `turn{i}.assistant`).
    turns: usize,
    tags: Vec<(String, String)>,
}

impl std::fmt::Debug for PromptTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptTemplate").field("tags", &self.tags).finish()
    }
}

fn part(p: &Option<String>) -> &str {
    p.as_deref().unwrap_or("")
}

impl PromptTemplate {
    /// Compile `config` in the given layout. Errors name the part and the template problem.
    pub fn compile(config: &PromptConfig, system_in_user: bool) -> Result<PromptTemplate, String> {
        if config.start_tags.len() != config.end_tags.len() {
            return Err(format!(
                "start_tags has {} item(s) but end_tags has {}; pair them up",
                config.start_tags.len(),
                config.end_tags.len()
            ));
        }
        if system_in_user && !config.example_turns.is_empty() {
            return Err("example_turns needs labflow's layout: the reference's renders one user message; \
                        move the examples into `examples`"
                .to_string());
        }
        let rest = [&config.introduction, &config.principles, &config.examples, &config.generation];
        let (system, user) = if system_in_user {
            // The reference's struct: "{system}\n{introduction}\n{principles}\n{examples}\n{generation}".
            let all: Vec<&str> = std::iter::once(part(&config.system)).chain(rest.iter().map(|p| part(p))).collect();
            (None, all.join("\n"))
        } else {
            let parts: Vec<&str> = rest.iter().map(|p| part(p)).filter(|p| !p.trim().is_empty()).collect();
            (config.system.clone().filter(|s| !s.trim().is_empty()), parts.join("\n"))
        };
        if user.trim().is_empty() {
            return Err("the prompt is empty: give at least `generation`".to_string());
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.add_template_owned("user", user).map_err(|e| format!("template error: {e:#}"))?;
        if let Some(s) = &system {
            env.add_template_owned("system", s.clone()).map_err(|e| format!("template error in `system`: {e:#}"))?;
        }
        for (i, turn) in config.example_turns.iter().enumerate() {
            for (role, text) in [("user", &turn.user), ("assistant", &turn.assistant)] {
                env.add_template_owned(format!("turn{i}.{role}"), text.clone())
                    .map_err(|e| format!("template error in `example_turns[{i}].{role}`: {e:#}"))?;
            }
        }
        let tags = config.start_tags.iter().cloned().zip(config.end_tags.iter().cloned()).collect();
        Ok(PromptTemplate { env: Arc::new(env), has_system: system.is_some(), turns: config.example_turns.len(), tags })
    }

    /// The prompt file's tag pairs (for `parse: tags`).
    pub fn tags(&self) -> &[(String, String)] {
        &self.tags
    }

    /// Render for one row (`vars` maps column names to values). A missing variable or a template
    /// error is `Err` with the message, which the operator turns into a reject of that row.
    pub fn render(&self, vars: &serde_json::Map<String, serde_json::Value>) -> Result<Prompt, String> {
        let ctx = minijinja::Value::from_serialize(vars);
        let render = |name: &str| -> Result<String, String> {
            let t = self.env.get_template(name).map_err(|e| e.to_string())?;
            t.render(&ctx).map(|s| s.trim().to_string()).map_err(|e| match e.kind() {
                minijinja::ErrorKind::UndefinedError => format!("the prompt needs a value the row lacks: {e}"),
                _ => format!("cannot render the prompt: {e}"),
            })
        };
        let mut messages = Vec::with_capacity(2 + 2 * self.turns);
        if self.has_system {
            messages.push(ChatMessage::new("system", render("system")?));
        }
        for i in 0..self.turns {
            for role in ["user", "assistant"] {
                messages.push(ChatMessage::new(role, render(&format!("turn{i}.{role}"))?));
            }
        }
        messages.push(ChatMessage::new("user", render("user")?));
        Ok(Prompt::Chat(messages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn config() -> PromptConfig {
        PromptConfig {
            system: Some("You are helpful.".into()),
            introduction: Some("Write {{ num_samples }} questions about {{ task_description }}.".into()),
            principles: Some("Be brief.".into()),
            examples: None,
            generation: Some("Example: {{ seed_question }}\n".into()),
            start_tags: vec!["[Q]".into()],
            end_tags: vec!["[/Q]".into()],
            example_turns: Vec::new(),
        }
    }

    #[test]
    fn example_turns_come_between_the_system_and_the_user_message() {
        let mut c = config();
        c.example_turns = vec![ExampleTurn { user: "Q: {{ seed_question }}".into(), assistant: "A for {{ task_description }}\n".into() }];
        let t = PromptTemplate::compile(&c, false).unwrap();
        let p = t.render(&vars(json!({"num_samples": 3, "task_description": "rivers", "seed_question": "Longest?"}))).unwrap();
        let Prompt::Chat(m) = p else { panic!("chat expected") };
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!((m[1].content.as_str(), m[2].content.as_str()), ("Q: Longest?", "A for rivers"));
        assert!(t.render(&vars(json!({"num_samples": 3, "task_description": "rivers"}))).unwrap_err().contains("lacks"));
        assert!(PromptTemplate::compile(&c, true).unwrap_err().contains("labflow's layout"));
        c.example_turns[0].assistant = "{% if %}".into();
        assert!(PromptTemplate::compile(&c, false).unwrap_err().contains("example_turns[0].assistant"));
    }

    #[test]
    fn labflow_layout_has_a_system_message() {
        let t = PromptTemplate::compile(&config(), false).unwrap();
        let p = t.render(&vars(json!({"num_samples": 3, "task_description": "rivers", "seed_question": "Longest?"}))).unwrap();
        let Prompt::Chat(m) = p else { panic!("chat expected") };
        assert_eq!(m[0], ChatMessage::new("system", "You are helpful."));
        assert_eq!(m[1].content, "Write 3 questions about rivers.\nBe brief.\nExample: Longest?");
        assert_eq!(t.tags(), &[("[Q]".to_string(), "[/Q]".to_string())]);
    }

    #[test]
    fn reference_layout_is_one_user_message_with_every_part() {
        let t = PromptTemplate::compile(&config(), true).unwrap();
        let p = t.render(&vars(json!({"num_samples": 3, "task_description": "rivers", "seed_question": "Longest?"}))).unwrap();
        let Prompt::Chat(m) = p else { panic!("chat expected") };
        assert_eq!(m.len(), 1);
        // The missing `examples` part leaves an empty line, as the reference's format string does.
        assert_eq!(m[0].content, "You are helpful.\nWrite 3 questions about rivers.\nBe brief.\n\nExample: Longest?");
    }

    #[test]
    fn a_missing_value_is_a_row_error_not_a_panic() {
        let t = PromptTemplate::compile(&config(), false).unwrap();
        let e = t.render(&vars(json!({"num_samples": 3}))).unwrap_err();
        assert!(e.contains("the prompt needs a value the row lacks"), "{e}");
    }

    #[test]
    fn bad_templates_and_tags_are_refused_at_compile_time() {
        let mut c = config();
        c.generation = Some("{% if %}".into());
        assert!(PromptTemplate::compile(&c, false).unwrap_err().contains("template error"));
        let mut c = config();
        c.end_tags.clear();
        assert!(PromptTemplate::compile(&c, false).unwrap_err().contains("pair them up"));
        assert!(PromptTemplate::compile(&PromptConfig::default(), false).unwrap_err().contains("empty"));
    }
}
