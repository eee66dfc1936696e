//! Versions of questions and answers: a conversation is a tree of messages
//! (`parent_id`), and `on_branch` marks the path the student sees. Editing a question
//! or regenerating an answer forks the tree at that message; showing another version
//! moves the branch onto it. Migration 12 and docs/storage.md ("Versions") say why the
//! branch is stored rather than walked on every read.

use std::collections::HashMap;

use sqlx::Row;

use super::{MessageRole, StoredMessage};
use crate::db::{Db, StoreError};

/// What a new answer is a version of.
#[derive(Debug, Clone, Copy)]
pub enum VersionOf<'a> {
    /// The answer with this id, asked again.
    Regenerate(&'a str),
    /// The question with this id, sent again as the new text.
    Edit(&'a str),
}

impl<'a> VersionOf<'a> {
    /// The message the new version replaces.
    pub fn message_id(self) -> &'a str {
        match self {
            VersionOf::Regenerate(id) | VersionOf::Edit(id) => id,
        }
    }
}

/// Where a new question (or a regenerated answer) joins the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fork {
    /// The message the model's context ends with ('' for none): the new question's
    /// parent, or the regenerated question's.
    pub context_from: String,
    /// The new answer's question when it already exists (a regenerate); `None`: the
    /// question is inserted as a child of `context_from`.
    pub existing_question: Option<String>,
}

/// Why a version cannot be made or shown.
#[derive(Debug, PartialEq, Eq)]
pub enum ForkRefusal {
    /// No such message in this conversation, or not one of the kind named.
    NotFound,
    /// Only the last answer on screen can be regenerated.
    NotLastAnswer,
    /// An answer is still being written below the fork.
    Streaming,
}

/// The target of a `regenerate` or an `edit`, read before the answer begins: its
/// conversation, and for an answer, the question it answered.
#[derive(Debug, Clone)]
pub struct VersionTarget {
    pub conversation_id: String,
    pub role: MessageRole,
    /// For an answer: its question's text.
    pub question: Option<String>,
}

impl Db {
    /// One of `user_id`'s own messages as a version target; `None` for anyone else's.
    pub async fn version_target(&self, user_id: &str, message_id: &str) -> Result<Option<VersionTarget>, StoreError> {
        let row = sqlx::query(
            "SELECT m.conversation_id, m.role, q.content FROM messages m \
             JOIN conversations c ON c.id = m.conversation_id \
             LEFT JOIN messages q ON q.id = m.parent_id AND m.role = 'assistant' \
             WHERE m.id = $1 AND c.user_id = $2",
        )
        .bind(message_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(VersionTarget {
            conversation_id: row.try_get(0)?,
            role: MessageRole::parse(&row.try_get::<String, _>(1)?),
            question: row.try_get(2)?,
        }))
    }

    /// Shows another version of a message of `user_id`'s conversation: the branch
    /// leaves the version on screen at that fork and follows the chosen one down to its
    /// newest messages.
    pub async fn show_version(
        &self,
        user_id: &str,
        conversation_id: &str,
        message_id: &str,
    ) -> Result<Result<(), ForkRefusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        // An UPDATE that changes nothing, for its row lock on PostgreSQL: two switches,
        // or a switch and a question, take turns on the conversation's branch.
        let owned = sqlx::query("UPDATE conversations SET updated_at = updated_at WHERE id = $1 AND user_id = $2")
            .bind(conversation_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        let chosen = if owned {
            sqlx::query("SELECT parent_id, role, on_branch FROM messages WHERE id = $1 AND conversation_id = $2")
                .bind(message_id)
                .bind(conversation_id)
                .fetch_optional(&mut *tx)
                .await?
        } else {
            None
        };
        let Some(chosen) = chosen else { return Ok(Err(ForkRefusal::NotFound)) };
        if chosen.try_get::<i64, _>(2)? == 1 {
            return Ok(Ok(())); // already on screen
        }
        let (parent, role): (String, String) = (chosen.try_get(0)?, chosen.try_get(1)?);
        // The version on screen at this fork: where the branch leaves.
        let shown = sqlx::query(
            "SELECT position FROM messages WHERE conversation_id = $1 AND parent_id = $2 AND role = $3 AND on_branch = 1",
        )
        .bind(conversation_id)
        .bind(&parent)
        .bind(&role)
        .fetch_optional(&mut *tx)
        .await?;
        // A fork off the branch (an old version's own versions): its parent must be
        // shown first, which the page never asks for.
        let Some(shown) = shown else { return Ok(Err(ForkRefusal::NotFound)) };
        let from: i64 = shown.try_get(0)?;
        if streaming_from(&mut tx, conversation_id, from).await? {
            return Ok(Err(ForkRefusal::Streaming));
        }
        leave_branch_from(&mut tx, conversation_id, from).await?;
        // Down from the chosen version, the newest child at every step.
        sqlx::query(
            "UPDATE messages SET on_branch = 1 WHERE id IN ( \
               WITH RECURSIVE down(id) AS ( \
                 SELECT id FROM messages WHERE id = $1 \
                 UNION ALL \
                 SELECT c.id FROM messages c JOIN down d ON c.parent_id = d.id \
                 WHERE NOT EXISTS (SELECT 1 FROM messages n WHERE n.parent_id = c.parent_id AND n.position > c.position) \
               ) SELECT id FROM down)",
        )
        .bind(message_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.wrote_n(2);
        Ok(Ok(()))
    }
}

/// Prepares the branch for a new answer in the caller's transaction: for a version,
/// takes the versions it replaces (and everything after them) off the branch.
pub(crate) async fn fork(
    conn: &mut sqlx::AnyConnection,
    conversation_id: &str,
    version_of: Option<VersionOf<'_>>,
) -> Result<Result<Fork, ForkRefusal>, StoreError> {
    let (target, want_role) = match version_of {
        None => {
            return Ok(Ok(Fork {
                context_from: branch_leaf(conn, conversation_id).await?,
                existing_question: None,
            }))
        }
        Some(VersionOf::Regenerate(id)) => (id, MessageRole::Assistant),
        Some(VersionOf::Edit(id)) => (id, MessageRole::User),
    };
    let row = sqlx::query(
        "SELECT parent_id, position FROM messages \
         WHERE id = $1 AND conversation_id = $2 AND role = $3 AND on_branch = 1",
    )
    .bind(target)
    .bind(conversation_id)
    .bind(want_role.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(Err(ForkRefusal::NotFound)) };
    let (parent, position): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
    if streaming_from(conn, conversation_id, position).await? {
        return Ok(Err(ForkRefusal::Streaming));
    }
    let fork = match want_role {
        MessageRole::Assistant => {
            let asked_later = sqlx::query(
                "SELECT 1 FROM messages WHERE conversation_id = $1 AND on_branch = 1 AND role = 'user' AND position > $2",
            )
            .bind(conversation_id)
            .bind(position)
            .fetch_optional(&mut *conn)
            .await?
            .is_some();
            if asked_later {
                return Ok(Err(ForkRefusal::NotLastAnswer));
            }
            let question_parent: Option<String> = sqlx::query("SELECT parent_id FROM messages WHERE id = $1")
                .bind(&parent)
                .fetch_optional(&mut *conn)
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
            let Some(question_parent) = question_parent else { return Ok(Err(ForkRefusal::NotFound)) };
            Fork {
                context_from: question_parent,
                existing_question: Some(parent),
            }
        }
        _ => Fork {
            context_from: parent,
            existing_question: None,
        },
    };
    leave_branch_from(conn, conversation_id, position).await?;
    Ok(Ok(fork))
}

/// The last message on the branch ('' for an empty conversation): what a new question
/// or a teacher's reply follows.
pub(crate) async fn branch_leaf(conn: &mut sqlx::AnyConnection, conversation_id: &str) -> Result<String, StoreError> {
    Ok(sqlx::query(
        "SELECT id FROM messages WHERE conversation_id = $1 AND on_branch = 1 ORDER BY position DESC LIMIT 1",
    )
    .bind(conversation_id)
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| row.try_get(0))
    .transpose()?
    .unwrap_or_default())
}

/// Fills `versions` of the messages loaded from the branch (each with its parent's id):
/// the siblings of the same role, oldest first, where there is more than one. Reads
/// only the children of the page's parents (index `messages_siblings`), so a page
/// costs the same in a long conversation as in a short one.
pub(crate) async fn fill_versions(
    conn: &mut sqlx::AnyConnection,
    conversation_id: &str,
    messages: &mut [(StoredMessage, String)],
) -> Result<(), StoreError> {
    let mut parents: Vec<&str> = messages.iter().map(|(_, parent)| parent.as_str()).collect();
    parents.sort_unstable();
    parents.dedup();
    if parents.is_empty() {
        return Ok(());
    }
    let placeholders: Vec<String> = (0..parents.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT parent_id, role, id FROM messages WHERE conversation_id = $1 AND parent_id IN ({}) ORDER BY position",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(conversation_id);
    for parent in &parents {
        query = query.bind(*parent);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut children: HashMap<(String, String), Vec<String>> = HashMap::new();
    for row in &rows {
        let key = (row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?);
        children.entry(key).or_default().push(row.try_get(2)?);
    }
    for (message, parent) in messages.iter_mut() {
        if let Some(ids) = children.get(&(parent.clone(), message.role.as_str().to_string())) {
            if ids.len() > 1 {
                message.versions = ids.clone();
            }
        }
    }
    Ok(())
}

/// True when an answer on the branch at `position` or after it is still streaming.
async fn streaming_from(conn: &mut sqlx::AnyConnection, conversation_id: &str, position: i64) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "SELECT 1 FROM messages WHERE conversation_id = $1 AND on_branch = 1 AND position >= $2 AND status = 'streaming'",
    )
    .bind(conversation_id)
    .bind(position)
    .fetch_optional(&mut *conn)
    .await?
    .is_some())
}

/// Takes the branch's messages from `position` on off the branch. A child comes after
/// its parent, so on the one path that is shown, these are exactly the message at
/// `position` and everything below it.
async fn leave_branch_from(conn: &mut sqlx::AnyConnection, conversation_id: &str, position: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE messages SET on_branch = 0 WHERE conversation_id = $1 AND on_branch = 1 AND position >= $2")
        .bind(conversation_id)
        .bind(position)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
