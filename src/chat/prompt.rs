//! What the model is sent for a question, assembled in one place: the course's system
//! prompt with the teacher's instructions, the conversation's earlier turns (oldest
//! first, within the context budget), the numbered lesson sources with the teacher's
//! notes on their lessons right before the question — where the model weighs them
//! most — and the question itself.

use crate::history::MessageRole;
use crate::lessons::excerpts::prompt_with_sources;
use crate::lessons::index::Hit;
use crate::teacher::TutorNotes;
use crate::upstream::ChatMessage;

pub fn model_messages(
    system_prompt: &str,
    notes: &TutorNotes,
    turns: Vec<(MessageRole, String)>,
    hits: &[Hit],
    question: String,
) -> Vec<ChatMessage> {
    let mut messages = Vec::with_capacity(turns.len() + 3);
    match &notes.course {
        Some(course) => messages.push(ChatMessage::system(format!(
            "{system_prompt}\n\nThe course's teacher asks you to follow these instructions:\n{course}"
        ))),
        None => messages.push(ChatMessage::system(system_prompt)),
    }
    messages.extend(turns.into_iter().map(|(role, content)| match role {
        MessageRole::User => ChatMessage::user(content),
        MessageRole::Assistant => ChatMessage::assistant(content),
        MessageRole::Teacher => ChatMessage::system(format!("The course's teacher replied to the student:\n{content}")),
    }));
    if let Some(mut sources) = prompt_with_sources(hits) {
        for (lesson, note) in &notes.lessons {
            if let Some(hit) = hits.iter().find(|hit| &hit.slug == lesson) {
                sources.push_str(&format!("\nThe teacher's note on the lesson \"{}\": {note}\n", hit.lesson_title));
            }
        }
        messages.push(ChatMessage::system(sources));
    }
    messages.push(ChatMessage::user(question));
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_then_turns_then_the_question() {
        let turns = vec![
            (MessageRole::User, "What is SSE?".to_string()),
            (MessageRole::Assistant, "Server-sent events.".to_string()),
        ];
        let messages = model_messages("Be kind.", &TutorNotes::default(), turns, &[], "And WebSocket?".into());
        let roles: Vec<&str> = messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(messages[0].content, "Be kind.");
        assert_eq!(messages[3].content, "And WebSocket?");
    }

    #[test]
    fn the_teachers_instructions_join_the_system_prompt_and_notes_their_lessons() {
        let hit = |slug: &str, title: &str| Hit {
            slug: slug.into(),
            lesson_title: title.into(),
            section: "Intro".into(),
            anchor: "intro".into(),
            text: "Text.".into(),
            score: 1.0,
        };
        let notes = TutorNotes {
            course: Some("Ask a guiding question first.".into()),
            lessons: vec![("sse".into(), "Mention Last-Event-ID.".into()), ("rag".into(), "Not this one.".into())],
        };
        let messages = model_messages("Be kind.", &notes, Vec::new(), &[hit("sse", "Server-sent events")], "Q".into());
        assert!(messages[0].content.starts_with("Be kind.") && messages[0].content.ends_with("Ask a guiding question first."));
        let sources = &messages[1].content;
        assert!(sources.contains("The teacher's note on the lesson \"Server-sent events\": Mention Last-Event-ID."), "{sources}");
        assert!(!sources.contains("Not this one."), "a note on a lesson not among the sources stays out");
    }
}
