//! Searching one's conversations (issue #14, part 3) by the words of their titles,
//! questions, answers and the teacher's replies, in Russian and English.
//!
//! The index is two plain tables in the database — `search_terms (term,
//! conversation_id)` and a `search_indexed` flag per message — written by the server
//! with the lesson index's own analyzers (`lessons::index::word_stems`: stop words of
//! both languages dropped, each word stemmed in both). So the one SQL text runs on
//! SQLite and PostgreSQL alike, both stem alike, and every instance on one database
//! shares the index. Why not the database's own full-text search or tantivy: see
//! docs/storage.md ("Searching conversations").
//!
//! Messages are indexed when their owner searches, not when they are written: the
//! answer's hot path (one transaction per question, batched answer writes) stays as
//! it was, and a search first indexes what the student wrote since their last one.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;

use super::store::{parse_conversation_cursor, summary_from_row};
use super::ConversationPage;
use crate::db::{Db, StoreError};
use crate::lessons::index::word_stems;

/// Messages indexed per transaction while catching up.
const INDEX_BATCH: i64 = 200;
/// Term rows per INSERT (two parameters each; well under both backends' limits).
const TERMS_PER_INSERT: usize = 400;

impl Db {
    /// Indexes the user's finished messages that are not yet (and their
    /// conversations' titles); returns how many. Another instance doing the same at
    /// once only writes the same rows again (`ON CONFLICT DO NOTHING`).
    pub async fn index_for_search(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut indexed = 0u64;
        loop {
            let rows = sqlx::query(
                "SELECT m.id, m.conversation_id, m.content, c.title FROM messages m \
                 JOIN conversations c ON c.id = m.conversation_id \
                 WHERE c.user_id = $1 AND m.search_indexed = 0 AND m.status <> 'streaming' LIMIT $2",
            )
            .bind(user_id)
            .bind(INDEX_BATCH)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                return Ok(indexed);
            }
            let mut terms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            let mut titles: BTreeMap<String, String> = BTreeMap::new();
            let mut ids = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: String = row.try_get(0)?;
                let conversation: String = row.try_get(1)?;
                let content: String = row.try_get(2)?;
                let title: String = row.try_get(3)?;
                let of_conversation = terms.entry(conversation.clone()).or_default();
                for text in [content.as_str(), title.as_str()] {
                    of_conversation.extend(word_stems(text).into_iter().flatten());
                }
                titles.insert(conversation, title);
                ids.push(id);
            }
            let pairs: Vec<(&str, &str)> = terms
                .iter()
                .flat_map(|(conversation, terms)| terms.iter().map(move |term| (term.as_str(), conversation.as_str())))
                .collect();
            let mut tx = self.begin_write().await?;
            // Stemming ran outside the write lock; a conversation renamed or deleted
            // meanwhile would get its old words back. Then read again.
            if !titles_unchanged(&mut tx, &titles).await? {
                continue;
            }
            for chunk in pairs.chunks(TERMS_PER_INSERT) {
                let values: Vec<String> = (0..chunk.len()).map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2)).collect();
                let sql = format!(
                    "INSERT INTO search_terms (term, conversation_id) VALUES {} ON CONFLICT DO NOTHING",
                    values.join(", ")
                );
                let mut insert = sqlx::query(&sql);
                for (term, conversation) in chunk {
                    insert = insert.bind(*term).bind(*conversation);
                }
                insert.execute(&mut *tx).await?;
            }
            let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
            let sql = format!("UPDATE messages SET search_indexed = 1 WHERE id IN ({})", marks.join(", "));
            let mut mark = sqlx::query(&sql);
            for id in &ids {
                mark = mark.bind(id.as_str());
            }
            mark.execute(&mut *tx).await?;
            tx.commit().await?;
            self.wrote_n(pairs.len().div_ceil(TERMS_PER_INSERT) as u64 + 1);
            indexed += ids.len() as u64;
            if (rows.len() as i64) < INDEX_BATCH {
                return Ok(indexed);
            }
        }
    }

    /// The user's conversations that have every word (any of its stems), newest first,
    /// a page of `limit` after `cursor` (the list's `updated_at:id` cursor). Only the
    /// user's own conversations are ever read.
    pub async fn search_conversations(
        &self,
        user_id: &str,
        words: &[Vec<String>],
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ConversationPage, StoreError> {
        let cursor = cursor.and_then(parse_conversation_cursor);
        let mut sql = String::from("SELECT c.id, c.title, c.updated_at FROM conversations c WHERE c.user_id = $1");
        let mut next = 2;
        if cursor.is_some() {
            sql.push_str(&format!(" AND (c.updated_at < ${next} OR (c.updated_at = ${next} AND c.id < ${}))", next + 1));
            next += 2;
        }
        for stems in words {
            let marks: Vec<String> = (0..stems.len()).map(|i| format!("${}", next + i)).collect();
            next += stems.len();
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM search_terms t WHERE t.conversation_id = c.id AND t.term IN ({}))",
                marks.join(", ")
            ));
        }
        sql.push_str(&format!(" ORDER BY c.updated_at DESC, c.id DESC LIMIT ${next}"));
        let mut query = sqlx::query(&sql).bind(user_id);
        if let Some((updated_at, id)) = cursor {
            query = query.bind(updated_at).bind(id);
        }
        for stem in words.iter().flatten() {
            query = query.bind(stem.as_str());
        }
        let rows = query.bind(i64::from(limit) + 1).fetch_all(&self.pool).await?;
        let mut items = rows.iter().map(summary_from_row).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|c| format!("{}:{}", c.updated_at, c.id))
        } else {
            None
        };
        Ok(ConversationPage { items, next_cursor })
    }
}

/// True when every conversation still exists with the title it was indexed with.
async fn titles_unchanged(
    conn: &mut sqlx::AnyConnection,
    titles: &BTreeMap<String, String>,
) -> Result<bool, StoreError> {
    let marks: Vec<String> = (1..=titles.len()).map(|i| format!("${i}")).collect();
    let sql = format!("SELECT id, title FROM conversations WHERE id IN ({})", marks.join(", "));
    let mut query = sqlx::query(&sql);
    for id in titles.keys() {
        query = query.bind(id.as_str());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut now = BTreeMap::new();
    for row in &rows {
        now.insert(row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?);
    }
    Ok(&now == titles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_stems_are_one_group_per_word_in_both_languages() {
        let words = word_stems("The streaming and потоковые ответы");
        assert_eq!(words.len(), 3, "{words:?}");
        assert!(words[0].contains(&"stream".to_string()), "{words:?}");
        let (many, few) = (&word_stems("ответов")[0], &word_stems("ответы")[0]);
        assert!(many.iter().any(|stem| few.contains(stem)), "Russian word forms share a stem: {many:?} {few:?}");
        assert_eq!(word_stems("streams")[0][0], word_stems("streaming")[0][0]);
    }
}
