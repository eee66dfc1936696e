//! What the model is sent for a question, assembled in one place: the course's system
//! prompt, the conversation's earlier turns (oldest first, within the context budget),
//! the numbered lesson sources right before the question — where the model weighs
//! them most — and the question itself.

use crate::history::MessageRole;
use crate::lessons::excerpts::prompt_with_sources;
use crate::lessons::index::Hit;
use crate::upstream::ChatMessage;

pub fn model_messages(
    system_prompt: &str,
    turns: Vec<(MessageRole, String)>,
    hits: &[Hit],
    question: String,
) -> Vec<ChatMessage> {
    let mut messages = Vec::with_capacity(turns.len() + 3);
    messages.push(ChatMessage::system(system_prompt));
    messages.extend(turns.into_iter().map(|(role, content)| match role {
        MessageRole::User => ChatMessage::user(content),
        MessageRole::Assistant => ChatMessage::assistant(content),
    }));
    if let Some(sources) = prompt_with_sources(hits) {
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
        let messages = model_messages("Be kind.", turns, &[], "And WebSocket?".into());
        let roles: Vec<&str> = messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(messages[0].content, "Be kind.");
        assert_eq!(messages[3].content, "And WebSocket?");
    }
}
