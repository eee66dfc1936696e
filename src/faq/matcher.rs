//! Matching a new question against the endorsed ones. Each question becomes a set of
//! terms — words stemmed in their own language (Snowball, Russian or English by
//! script), question filler dropped ("how do I", "подскажите, как"), negation and
//! "why / when / where" kept as terms of their own — and two questions score the Dice
//! coefficient of their term sets, in [0, 1]. Stems that share a prefix of five
//! letters or more count as one (Russian word formation outruns the stemmer:
//! "переподключение" / "переподключиться").
//!
//! The index is the entries in memory, with their terms: a course's FAQ is small, and
//! scoring every entry takes microseconds. It sits in `AppState` beside the lesson
//! index; the database is the truth: [`FaqIndex::refresh`] reads the FAQ's version
//! (one row) and reloads when another request or instance changed it.
//! docs/faq.md explains the threshold and how it was tuned.

use std::sync::{Arc, RwLock};

use tantivy::tokenizer::{Language, LowerCaser, SimpleTokenizer, Stemmer, TextAnalyzer, TokenStream};

use super::FaqEntry;
use crate::db::{Db, StoreError};

/// At or above this score, the endorsed answer is the answer, without the model
/// (`faq_direct_answers`). Tuned on tests/data/faq_matching.json: see docs/faq.md.
pub const DIRECT_ANSWER_THRESHOLD: f32 = 0.85;
/// From this score up to the threshold, the endorsed answer goes to the model as a
/// source beside the lesson sections.
pub const SOURCE_MIN_SCORE: f32 = 0.3;
/// Endorsed answers given to the model as sources, at most.
pub const MAX_FAQ_SOURCES: usize = 2;

/// Question filler in both languages: words that say "this is a question" and not
/// what it is about.
const FILLER: &[&str] = &[
    // English
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "being", "am", "do", "does", "did", "doing",
    "i", "me", "my", "you", "your", "we", "our", "us", "it", "its", "this", "that", "these", "those", "there",
    "here", "of", "to", "in", "on", "at", "for", "from", "by", "with", "about", "as", "into", "and", "or", "so",
    "if", "can", "could", "should", "would", "will", "shall", "may", "might", "must", "have", "has", "had",
    "what", "which", "who", "how", "s", "just", "also", "please", "tell", "explain", "mean", "means", "exactly",
    "actually", "really", "some", "any", "one", "way", "ok", "okay", "hi", "hello", "thanks", "doesn", "don",
    "isn", "aren", "didn", "wasn", "won", "shouldn", "couldn", "wouldn", "cannot", "get", "need", "want",
    "difference", "between", "different", "differ", "vs", "versus", "compared", "compare", "over", "through",
    "via", "using", "they", "them", "their", "each", "other",
    // Russian
    "и", "в", "во", "на", "с", "со", "к", "ко", "у", "о", "об", "обо", "от", "до", "по", "за", "из", "для", "при",
    "про", "а", "но", "или", "ли", "же", "бы", "то", "это", "этот", "эта", "эти", "этом", "что", "чем", "чём",
    "как", "какой", "какая", "какие", "каким", "каких", "какое", "какую", "каком", "я", "мы", "вы", "ты", "он",
    "она", "оно", "они", "мне", "меня", "нас", "вас", "мой", "моя", "моё", "мое", "мои", "ваш", "свой", "его",
    "её", "ее", "их", "есть", "быть", "был", "была", "было", "были", "будет", "можно", "нужно", "надо", "вообще",
    "такое", "так", "там", "тут", "здесь", "всё", "все", "ещё", "еще", "уже", "только", "если", "чтобы", "чтоб",
    "да", "ну", "объясните", "объясни", "скажите", "скажи", "пожалуйста", "подскажите", "подскажи", "значит",
    "означает", "который", "которая", "которые", "кто", "разница", "разницу", "отличие", "отличия",
    "отличается", "отличаются", "между", "сравнению", "собой", "нам", "вам", "ему", "ей", "поверх", "через",
    "помощью",
];

/// A term of its own for these: "why" and "how" ask different things.
fn marker(word: &str) -> Option<&'static str> {
    Some(match word {
        "why" | "почему" | "зачем" => "?why",
        "when" | "когда" => "?when",
        "where" | "где" | "куда" => "?where",
        "not" | "no" | "never" | "t" | "не" | "нет" | "ни" | "никогда" | "нельзя" => "?not",
        _ => return None,
    })
}

/// The analyzers: words, lower-cased, each language's stemmer.
struct Analyzers {
    words: TextAnalyzer,
    en: TextAnalyzer,
    ru: TextAnalyzer,
}

impl Analyzers {
    fn new() -> Self {
        let words = || TextAnalyzer::builder(SimpleTokenizer::default()).filter(LowerCaser);
        Analyzers {
            words: words().build(),
            en: words().filter(Stemmer::new(Language::English)).build(),
            ru: words().filter(Stemmer::new(Language::Russian)).build(),
        }
    }

    fn first(analyzer: &mut TextAnalyzer, word: &str) -> String {
        let mut stream = analyzer.token_stream(word);
        if stream.advance() {
            stream.token().text.clone()
        } else {
            word.to_string()
        }
    }
}

/// A question's terms, sorted and without repeats.
pub fn terms(text: &str) -> Vec<String> {
    let mut analyzers = Analyzers::new();
    let mut words = Vec::new();
    let mut stream = analyzers.words.token_stream(text);
    while stream.advance() {
        words.push(stream.token().text.replace('ё', "е"));
    }
    let mut terms: Vec<String> = words
        .iter()
        .filter_map(|word| {
            if let Some(marker) = marker(word) {
                return Some(marker.to_string());
            }
            if FILLER.contains(&word.as_str()) {
                return None;
            }
            let russian = word.chars().any(|c| matches!(c, 'а'..='я'));
            let analyzer = if russian { &mut analyzers.ru } else { &mut analyzers.en };
            Some(Analyzers::first(analyzer, word))
        })
        .collect();
    terms.sort_unstable();
    terms.dedup();
    terms
}

/// One term stands for another: the same, or one a prefix of the other and the
/// shorter at least five letters long.
fn same_term(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.chars().count() >= 5 && long.starts_with(short)
}

/// A marker ("why", "not", …) left unmatched changes the question more than a word.
fn weight(term: &str) -> f32 {
    if term.starts_with('?') {
        2.0
    } else {
        1.0
    }
}

/// How alike two questions' terms are, in [0, 1]: the share of each side's terms
/// (by weight) found on the other side, the smaller of the two. One word asked about
/// that the other question lacks is enough to lower it.
pub fn similarity(a: &[String], b: &[String]) -> f32 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let covered = |from: &[String], to: &[String]| {
        let total: f32 = from.iter().map(|t| weight(t)).sum();
        let found: f32 = from.iter().filter(|t| to.iter().any(|u| same_term(t, u))).map(|t| weight(t)).sum();
        found / total
    };
    covered(a, b).min(covered(b, a))
}

/// A question answered in the other language is a weaker match: the student asked in
/// their own.
const OTHER_LANGUAGE_FACTOR: f32 = 0.8;

/// An endorsed entry that matches a question, with its score.
#[derive(Debug, Clone)]
pub struct FaqMatch {
    pub entry: FaqEntry,
    pub score: f32,
}

struct Indexed {
    entry: FaqEntry,
    russian: bool,
    question: Vec<String>,
    /// The question's and the answer's terms, for the `/faq` search.
    all: Vec<String>,
}

#[derive(Default)]
struct Held {
    /// The FAQ version these entries are; `None` before the first load.
    version: Option<i64>,
    entries: Arc<Vec<Indexed>>,
}

/// The endorsed entries in memory, with their terms.
#[derive(Default)]
pub struct FaqIndex {
    held: RwLock<Held>,
}

impl FaqIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reloads the entries from the database when its FAQ version moved since the last
    /// load: an endorsement made on any instance counts from the next question on.
    pub async fn refresh(&self, db: &Db) -> Result<(), StoreError> {
        let version = db.faq_version().await?;
        if self.version() == Some(version) {
            return Ok(());
        }
        let entries = db.faq_entries().await?;
        self.replace(version, entries);
        Ok(())
    }

    pub fn version(&self) -> Option<i64> {
        self.held.read().unwrap_or_else(|e| e.into_inner()).version
    }

    /// Holds these entries as the FAQ at `version`.
    pub fn replace(&self, version: i64, entries: Vec<FaqEntry>) {
        let indexed: Vec<Indexed> = entries
            .into_iter()
            .map(|entry| Indexed {
                russian: crate::i18n::is_russian(&entry.question),
                question: terms(&entry.question),
                all: terms(&format!("{}\n{}", entry.question, entry.answer)),
                entry,
            })
            .collect();
        let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
        // Two refreshes may race; the newer version wins.
        if held.version.is_none_or(|held| held <= version) {
            *held = Held {
                version: Some(version),
                entries: Arc::new(indexed),
            };
        }
    }

    fn entries(&self) -> Arc<Vec<Indexed>> {
        self.held.read().unwrap_or_else(|e| e.into_inner()).entries.clone()
    }

    /// The entry with this id, if it is endorsed.
    pub fn entry(&self, id: &str) -> Option<FaqEntry> {
        self.entries().iter().find(|indexed| indexed.entry.id == id).map(|indexed| indexed.entry.clone())
    }

    /// The entries whose question scores at least `min_score` against `question`,
    /// best first, at most `k`.
    pub fn matches(&self, question: &str, min_score: f32, k: usize) -> Vec<FaqMatch> {
        let asked = terms(question);
        let russian = crate::i18n::is_russian(question);
        let mut found: Vec<FaqMatch> = self
            .entries()
            .iter()
            .map(|indexed| {
                let language = if indexed.russian == russian { 1.0 } else { OTHER_LANGUAGE_FACTOR };
                FaqMatch {
                    score: similarity(&asked, &indexed.question) * language,
                    entry: indexed.entry.clone(),
                }
            })
            .filter(|m| m.score >= min_score && m.score > 0.0)
            .collect();
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        found.truncate(k);
        found
    }

    /// Every entry, oldest first, or (with a query) those sharing a term with it in
    /// their question or answer, the most shared first.
    pub fn search(&self, query: &str) -> Vec<FaqEntry> {
        let entries = self.entries();
        let wanted = terms(query);
        if wanted.is_empty() {
            return entries.iter().map(|i| i.entry.clone()).collect();
        }
        let mut found: Vec<(usize, &Indexed)> = entries
            .iter()
            .map(|i| (wanted.iter().filter(|w| i.all.iter().any(|t| same_term(w, t))).count(), i))
            .filter(|(shared, _)| *shared > 0)
            .collect();
        found.sort_by(|a, b| b.0.cmp(&a.0));
        found.into_iter().map(|(_, i)| i.entry.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, question: &str) -> FaqEntry {
        FaqEntry {
            id: id.into(),
            message_id: format!("m-{id}"),
            question: question.into(),
            answer: "An answer.".into(),
            sources: Vec::new(),
            endorsed_by: "teacher".into(),
            updated_at: 0,
        }
    }

    #[test]
    fn terms_are_stems_without_filler_in_both_languages() {
        assert_eq!(terms("How do I reconnect WebSockets?"), ["reconnect", "websocket"]);
        assert_eq!(terms("Почему соединения не закрываются?"), ["?not", "?why", "закрыва", "соединен"]);
        assert!(similarity(&terms("What is SSE?"), &terms("what is sse")) == 1.0);
        assert_eq!(similarity(&terms("How?"), &terms("What is SSE?")), 0.0);
    }

    #[derive(serde::Deserialize)]
    struct Pair {
        endorsed: String,
        asked: String,
        same: bool,
    }

    #[derive(serde::Deserialize)]
    struct Set {
        pairs: Vec<Pair>,
    }

    /// (precision, recall) of direct answers at `threshold` over the question set: every
    /// endorsed question of the set is in the FAQ, and each student question gets its
    /// best match.
    fn measure(set: &Set, index: &FaqIndex, threshold: f32) -> (f32, f32, usize, usize) {
        let (mut right, mut wrong) = (0, 0);
        for pair in &set.pairs {
            let Some(best) = index.matches(&pair.asked, threshold, 1).pop() else { continue };
            if pair.same && best.entry.question == pair.endorsed {
                right += 1;
            } else {
                wrong += 1;
                if (threshold - DIRECT_ANSWER_THRESHOLD).abs() < 1e-6 {
                    println!("  wrong at the threshold ({:.2}): {:?} → {:?}", best.score, pair.asked, best.entry.question);
                }
            }
        }
        let paraphrases = set.pairs.iter().filter(|p| p.same).count();
        let precision = if right + wrong == 0 { 1.0 } else { right as f32 / (right + wrong) as f32 };
        (precision, right as f32 / paraphrases as f32, right, wrong)
    }

    #[test]
    fn direct_answers_on_the_question_set_are_precise() {
        let set: Set = serde_json::from_str(include_str!("../../tests/data/faq_matching.json")).unwrap();
        assert!(set.pairs.len() >= 40);
        let mut endorsed: Vec<&str> = set.pairs.iter().map(|p| p.endorsed.as_str()).collect();
        endorsed.sort_unstable();
        endorsed.dedup();
        let index = FaqIndex::new();
        index.replace(1, endorsed.iter().enumerate().map(|(i, q)| entry(&i.to_string(), q)).collect());
        for pair in &set.pairs {
            let score = similarity(&terms(&pair.endorsed), &terms(&pair.asked));
            println!("{score:.2} {} {:?} / {:?}", if pair.same { "same" } else { "diff" }, pair.endorsed, pair.asked);
        }
        println!("threshold  precision  recall  (right, wrong direct answers)");
        for step in 8..=19 {
            let threshold = step as f32 * 0.05;
            let (precision, recall, right, wrong) = measure(&set, &index, threshold);
            println!("{threshold:.2}       {precision:.3}      {recall:.3}   ({right}, {wrong})");
        }
        let (precision, recall, _, _) = measure(&set, &index, DIRECT_ANSWER_THRESHOLD);
        println!("at {DIRECT_ANSWER_THRESHOLD}: precision {precision:.3}, recall {recall:.3}");
        assert!(precision >= 0.95, "precision {precision} at {DIRECT_ANSWER_THRESHOLD}");
    }

    #[test]
    fn the_newest_version_wins_and_search_finds_answers_too() {
        let index = FaqIndex::new();
        index.replace(2, vec![entry("a", "What is SSE?")]);
        index.replace(1, vec![]);
        assert_eq!(index.version(), Some(2));
        assert_eq!(index.search("answer").len(), 1, "the answer's words are searched too");
        assert_eq!(index.search("").len(), 1);
        assert!(index.search("websocket").is_empty());
        assert_eq!(index.matches("what's SSE", DIRECT_ANSWER_THRESHOLD, 1).len(), 1);
    }
}
