//! The lesson index: every section of every lesson, searchable with BM25 in Russian
//! and English. It lives on disk beside the database and is updated file by file: a
//! lesson is re-indexed only when its bytes changed, and a deleted lesson leaves the
//! index. A file that cannot be read as a lesson is reported and skipped.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter,
    TextAnalyzer,
};
use tantivy::{doc, Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

use super::markdown::{parse_lesson, Lesson, LessonError};

/// Bumped when the schema or the analyzers change: the index is then rebuilt.
const INDEX_VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";
const WRITER_MEMORY: usize = 50_000_000;
/// Words of earlier questions count this much next to the question's own words.
const EARLIER_TURN_WEIGHT: f32 = 0.4;
/// Section and lesson titles weigh this much more than body text.
const TITLE_WEIGHT: f32 = 2.0;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("lesson index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("lesson index folder {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lessons folder {path} cannot be read: {source}")]
    LessonsDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One indexed section, as a search returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub slug: String,
    pub lesson_title: String,
    pub section: String,
    pub anchor: String,
    pub text: String,
    pub score: f32,
}

/// What the lessons folder holds, for the lesson pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub slug: String,
    pub title: String,
    pub lang: Option<String>,
    pub file: String,
}

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncReport {
    /// Lessons (re-)indexed because they are new or changed.
    pub indexed: Vec<String>,
    /// Lessons whose file is gone (or became unreadable): removed from the index.
    pub removed: Vec<String>,
    pub unchanged: usize,
    /// Files that are not lessons, with the reason.
    pub skipped: Vec<(String, String)>,
    pub sections: usize,
}

/// Progress of a sync, for the `index` command.
pub enum SyncEvent<'a> {
    Indexed { file: &'a str, sections: usize, done: usize, total: usize },
    Skipped { file: &'a str, reason: &'a str },
    Removed { file: &'a str },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    /// File name → SHA-256 of its bytes, for every file in the index.
    files: BTreeMap<String, String>,
}

#[derive(Clone, Copy)]
struct Fields {
    file: Field,
    slug: Field,
    lesson_title: Field,
    section: Field,
    anchor: Field,
    text: Field,
    title_en: Field,
    title_ru: Field,
    body_en: Field,
    body_ru: Field,
}

pub struct LessonIndex {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    catalog: RwLock<HashMap<String, CatalogEntry>>,
}

/// Both analyzers drop the stop words of both languages (each field sees text in
/// either), and stem with their own language.
fn analyzer(language: Language) -> TextAnalyzer {
    let stop = |l| StopWordFilter::new(l).unwrap_or_else(|| StopWordFilter::remove(Vec::new()));
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(stop(Language::English))
        .filter(stop(Language::Russian))
        .filter(Stemmer::new(language))
        .build()
}

/// A text's words as the lesson index sees them: each word that is not a stop word,
/// stemmed in English and in Russian (the two stems, or one when they agree). The
/// conversation search (src/history/search.rs) stores and queries these, so a
/// conversation is found by the same word forms a lesson is.
pub fn word_stems(text: &str) -> Vec<Vec<String>> {
    let mut english = analyzer(Language::English);
    let mut russian = analyzer(Language::Russian);
    let mut words: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for analyzer in [&mut english, &mut russian] {
        // Both analyzers drop the same words before stemming, so positions line up.
        let mut stream = analyzer.token_stream(text);
        while let Some(token) = stream.next() {
            let stems = words.entry(token.position).or_default();
            if !stems.contains(&token.text) {
                stems.push(token.text.clone());
            }
        }
    }
    words.into_values().collect()
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text_with = |tokenizer: &str| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
    };
    // Every section is indexed twice, with the English and the Russian analyzer: a
    // course mixes both languages (Russian text is full of English terms), and each
    // analyzer leaves the other language's words alone.
    let fields = Fields {
        file: builder.add_text_field("file", STRING | STORED),
        slug: builder.add_text_field("slug", STRING | STORED),
        lesson_title: builder.add_text_field("lesson_title", STORED),
        section: builder.add_text_field("section", STORED),
        anchor: builder.add_text_field("anchor", STORED),
        text: builder.add_text_field("text", STORED),
        title_en: builder.add_text_field("title_en", text_with("tutor_en")),
        title_ru: builder.add_text_field("title_ru", text_with("tutor_ru")),
        body_en: builder.add_text_field("body_en", text_with("tutor_en")),
        body_ru: builder.add_text_field("body_ru", text_with("tutor_ru")),
    };
    (builder.build(), fields)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl LessonIndex {
    /// Opens the index in `dir`, creating it (or rebuilding it from scratch when it
    /// was written by another version of the app).
    pub fn open(dir: &Path) -> Result<LessonIndex, IndexError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let manifest = read_manifest(dir);
        if manifest.version != INDEX_VERSION {
            // An old or broken index: start over (the lessons are the source of truth).
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let (schema, fields) = schema();
        let directory = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| IndexError::Tantivy(e.into()))?;
        let index = Index::open_or_create(directory, schema)?;
        index.tokenizers().register("tutor_en", analyzer(Language::English));
        index.tokenizers().register("tutor_ru", analyzer(Language::Russian));
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()?;
        Ok(LessonIndex {
            dir: dir.to_path_buf(),
            index,
            reader,
            fields,
            catalog: RwLock::new(HashMap::new()),
        })
    }

    /// Brings the index in step with the lessons folder: new and changed files are
    /// (re-)indexed, deleted ones removed, unchanged ones left alone.
    pub fn sync(
        &self,
        lessons_dir: &Path,
        progress: &mut dyn FnMut(SyncEvent),
    ) -> Result<SyncReport, IndexError> {
        let files = lesson_files(lessons_dir)?;
        let mut manifest = read_manifest(&self.dir);
        let mut report = SyncReport::default();
        let mut catalog = HashMap::new();
        let mut changes: Vec<(String, String, Option<Lesson>)> = Vec::new();
        for (name, path) in &files {
            let slug = name.trim_end_matches(".md").to_string();
            let parsed = std::fs::read(path)
                .map_err(|e| LessonError::Unreadable(e.to_string()))
                .and_then(|bytes| {
                    let hash = crate::digest::sha256_hex(&bytes);
                    let text = String::from_utf8(bytes).map_err(|_| LessonError::NotText)?;
                    Ok((hash, parse_lesson(&slug, &text)?))
                });
            match parsed {
                Ok((hash, lesson)) => {
                    catalog.insert(
                        lesson.slug.clone(),
                        CatalogEntry {
                            slug: lesson.slug.clone(),
                            title: lesson.title.clone(),
                            lang: lesson.lang.clone(),
                            file: name.clone(),
                        },
                    );
                    if manifest.files.get(name) == Some(&hash) {
                        report.unchanged += 1;
                    } else {
                        changes.push((name.clone(), hash, Some(lesson)));
                    }
                }
                Err(error) => {
                    let reason = error.to_string();
                    tracing::warn!(file = %name, %reason, "lesson skipped");
                    progress(SyncEvent::Skipped { file: name, reason: &reason });
                    report.skipped.push((name.clone(), reason));
                    if manifest.files.contains_key(name) {
                        changes.push((name.clone(), String::new(), None));
                    }
                }
            }
        }
        let present: std::collections::HashSet<&String> = files.iter().map(|(n, _)| n).collect();
        for gone in manifest.files.keys().filter(|n| !present.contains(n)) {
            changes.push((gone.clone(), String::new(), None));
        }

        if !changes.is_empty() {
            let mut writer = self
                .index
                .writer_with_num_threads::<TantivyDocument>(1, WRITER_MEMORY)?;
            let total = changes.iter().filter(|c| c.2.is_some()).count();
            let mut done = 0;
            for (name, hash, lesson) in &changes {
                writer.delete_term(Term::from_field_text(self.fields.file, name));
                match lesson {
                    Some(lesson) => {
                        for section in &lesson.sections {
                            writer.add_document(self.document(name, lesson, section))?;
                        }
                        done += 1;
                        report.sections += lesson.sections.len();
                        progress(SyncEvent::Indexed {
                            file: name,
                            sections: lesson.sections.len(),
                            done,
                            total,
                        });
                        report.indexed.push(lesson.slug.clone());
                        manifest.files.insert(name.clone(), hash.clone());
                    }
                    None => {
                        if !report.skipped.iter().any(|(f, _)| f == name) {
                            progress(SyncEvent::Removed { file: name });
                        }
                        report.removed.push(name.trim_end_matches(".md").to_string());
                        manifest.files.remove(name);
                    }
                }
            }
            writer.commit()?;
            writer.wait_merging_threads()?;
            self.reader.reload()?;
        }
        manifest.version = INDEX_VERSION;
        write_manifest(&self.dir, &manifest)?;
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = catalog;
        Ok(report)
    }

    fn document(&self, file: &str, lesson: &Lesson, section: &super::markdown::Section) -> TantivyDocument {
        let f = self.fields;
        let titles = if section.title == lesson.title {
            lesson.title.clone()
        } else {
            format!("{} {}", lesson.title, section.title)
        };
        doc!(
            f.file => file,
            f.slug => lesson.slug.as_str(),
            f.lesson_title => lesson.title.as_str(),
            f.section => section.title.as_str(),
            f.anchor => section.anchor.as_str(),
            f.text => section.text.as_str(),
            f.title_en => titles.as_str(),
            f.title_ru => titles.as_str(),
            f.body_en => section.text.as_str(),
            f.body_ru => section.text.as_str(),
        )
    }

    /// The `k` best sections for a question; `earlier` (the student's recent
    /// questions in this conversation) count for less than the question itself.
    /// Sections of lessons in the question's language come first: the course has
    /// each lesson in both, and English terms in Russian lessons would otherwise pull
    /// Russian sections into an English answer.
    pub fn search(&self, question: &str, earlier: &[String], k: usize) -> Result<Vec<Hit>, IndexError> {
        let lang = if crate::i18n::is_russian(question) { "-ru" } else { "-en" };
        let mut hits = self.search_any_language(question, earlier, k.saturating_mul(3))?;
        // A stable sort: within each group, BM25's order stays.
        hits.sort_by_key(|hit| !hit.slug.ends_with(lang));
        hits.truncate(k);
        Ok(hits)
    }

    fn search_any_language(&self, question: &str, earlier: &[String], k: usize) -> Result<Vec<Hit>, IndexError> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        self.add_terms(&mut clauses, question, 1.0)?;
        for turn in earlier {
            self.add_terms(&mut clauses, turn, EARLIER_TURN_WEIGHT)?;
        }
        if clauses.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let query = BooleanQuery::new(clauses);
        let top = searcher.search(&query, &TopDocs::with_limit(k).order_by_score())?;
        let f = self.fields;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let get = |field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            };
            hits.push(Hit {
                slug: get(f.slug),
                lesson_title: get(f.lesson_title),
                section: get(f.section),
                anchor: get(f.anchor),
                text: get(f.text),
                score,
            });
        }
        Ok(hits)
    }

    fn add_terms(
        &self,
        clauses: &mut Vec<(Occur, Box<dyn Query>)>,
        text: &str,
        weight: f32,
    ) -> Result<(), IndexError> {
        let f = self.fields;
        for (field, boost) in [
            (f.title_en, TITLE_WEIGHT),
            (f.title_ru, TITLE_WEIGHT),
            (f.body_en, 1.0),
            (f.body_ru, 1.0),
        ] {
            let mut analyzer = self.index.tokenizer_for_field(field)?;
            let mut stream = analyzer.token_stream(text);
            let mut seen = std::collections::HashSet::new();
            while let Some(token) = stream.next() {
                if !seen.insert(token.text.clone()) {
                    continue;
                }
                let term = Term::from_field_text(field, &token.text);
                let query = TermQuery::new(term, IndexRecordOption::WithFreqs);
                clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(query), boost * weight))));
            }
        }
        Ok(())
    }

    pub fn lesson(&self, slug: &str) -> Option<CatalogEntry> {
        self.catalog.read().unwrap_or_else(|p| p.into_inner()).get(slug).cloned()
    }

    /// Every lesson, sorted by slug (the files' numbering orders the course).
    pub fn lessons(&self) -> Vec<CatalogEntry> {
        let mut all: Vec<CatalogEntry> =
            self.catalog.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        all.sort_by(|a, b| a.slug.cmp(&b.slug));
        all
    }

    pub fn sections(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

/// The lesson files of a folder (`*.md`, not recursive), by name.
fn lesson_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, IndexError> {
    let entries = std::fs::read_dir(dir).map_err(|source| IndexError::LessonsDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.ends_with(".md").then(|| (name, e.path()))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn read_manifest(dir: &Path) -> Manifest {
    std::fs::read(dir.join(MANIFEST))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Written after the index commits: a crash in between only means re-indexing.
fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), IndexError> {
    let path = dir.join(MANIFEST);
    let tmp = dir.join("manifest.json.tmp");
    let bytes = serde_json::to_vec_pretty(manifest).unwrap_or_default();
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder removed when the test ends (the value dropped).
    fn temp_dir(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(&format!("tutor-index-{name}-")).tempdir().unwrap()
    }

    fn course() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons")
    }

    #[test]
    fn reindexes_changed_and_deleted_files_and_skips_broken_ones() {
        let lessons_dir = temp_dir("lessons");
        let index_dir = temp_dir("index");
        let lessons = lessons_dir.path();
        std::fs::write(lessons.join("01-a-en.md"), "# Alpha\n\nIntro.\n\n## Sockets\n\nWebsocket frames.\n").unwrap();
        std::fs::write(lessons.join("02-b-en.md"), "# Beta\n\n## Buckets\n\nToken bucket refills.\n").unwrap();
        std::fs::write(lessons.join("03-broken-en.md"), "no title, just text\n").unwrap();
        std::fs::write(lessons.join("Bad Name.md"), "# T\n\ntext\n").unwrap();
        std::fs::write(lessons.join("notes.txt"), "not a lesson").unwrap();

        let index = LessonIndex::open(index_dir.path()).unwrap();
        let mut events = Vec::new();
        let report = index
            .sync(lessons, &mut |e| {
                events.push(match e {
                    SyncEvent::Indexed { file, .. } => format!("indexed {file}"),
                    SyncEvent::Skipped { file, .. } => format!("skipped {file}"),
                    SyncEvent::Removed { file } => format!("removed {file}"),
                })
            })
            .unwrap();
        assert_eq!(report.indexed, ["01-a-en", "02-b-en"]);
        assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
        assert!(report.skipped.iter().any(|(f, why)| f == "03-broken-en.md" && why.contains("Title")));
        assert!(events.contains(&"skipped Bad Name.md".to_string()), "{events:?}");
        assert_eq!(index.sections(), 3);
        let hit = &index.search("websocket frames", &[], 3).unwrap()[0];
        assert_eq!((hit.slug.as_str(), hit.anchor.as_str()), ("01-a-en", "sockets"));

        // Nothing changed: nothing re-indexed.
        let again = index.sync(lessons, &mut |_| {}).unwrap();
        assert!(again.indexed.is_empty());
        assert_eq!(again.unchanged, 2);

        // One file changes, one is deleted: only they move.
        std::fs::write(lessons.join("01-a-en.md"), "# Alpha\n\n## Streams\n\nServer-sent events.\n").unwrap();
        std::fs::remove_file(lessons.join("02-b-en.md")).unwrap();
        let changed = index.sync(lessons, &mut |_| {}).unwrap();
        assert_eq!(changed.indexed, ["01-a-en"]);
        assert_eq!(changed.removed, ["02-b-en"]);
        assert_eq!(index.sections(), 1);
        assert!(index.search("bucket", &[], 3).unwrap().is_empty());
        assert!(index.search("websocket", &[], 3).unwrap().is_empty());
        assert_eq!(index.search("events", &[], 3).unwrap()[0].anchor, "streams");
        assert!(index.lesson("02-b-en").is_none());

        // A reopened index remembers what it holds.
        drop(index);
        let reopened = LessonIndex::open(index_dir.path()).unwrap();
        assert_eq!(reopened.sections(), 1);
        assert!(reopened.sync(lessons, &mut |_| {}).unwrap().indexed.is_empty());
    }

    #[test]
    fn stemming_matches_word_forms_in_both_languages() {
        let lessons_dir = temp_dir("stems");
        let lessons = lessons_dir.path();
        std::fs::write(lessons.join("a-ru.md"), "# Потоки\n\n## Переподключение\n\nКлиент переподключается к серверу.\n").unwrap();
        std::fs::write(lessons.join("b-en.md"), "# Streams\n\n## Reconnecting\n\nThe client reconnects to servers.\n").unwrap();
        let index_dir = temp_dir("stems-index");
        let index = LessonIndex::open(index_dir.path()).unwrap();
        index.sync(lessons, &mut |_| {}).unwrap();
        assert_eq!(index.search("переподключения клиентов", &[], 1).unwrap()[0].slug, "a-ru");
        assert_eq!(index.search("reconnect the server", &[], 1).unwrap()[0].slug, "b-en");
        // Stop words alone find nothing rather than everything.
        assert!(index.search("the and of", &[], 3).unwrap().is_empty());
        assert!(index.search("", &[], 3).unwrap().is_empty());
        // Query syntax is just text.
        index.search("title:\"x AND (y", &[], 3).unwrap();
    }

    #[test]
    fn sources_come_in_the_language_of_the_question() {
        let index_dir = temp_dir("lang");
        let index = LessonIndex::open(index_dir.path()).unwrap();
        index.sync(&course(), &mut |_| {}).unwrap();
        // "token bucket" appears in both languages' lessons.
        let en = index.search("How does a token bucket allow bursts?", &[], 3).unwrap();
        assert!(en.iter().all(|h| h.slug.ends_with("-en")), "{en:?}");
        let ru = index.search("Как работает token bucket?", &[], 3).unwrap();
        assert!(ru.iter().all(|h| h.slug.ends_with("-ru")), "{ru:?}");
        assert_eq!(ru[0].anchor, "алгоритм-token-bucket");
    }

    /// Recall@3 on the question set written for the sample course (both languages).
    #[test]
    fn sample_course_recall_at_3_is_at_least_0_8() {
        let index_dir = temp_dir("recall");
        let index = LessonIndex::open(index_dir.path()).unwrap();
        let report = index.sync(&course(), &mut |_| {}).unwrap();
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        assert!(report.indexed.len() >= 12);
        let questions = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/retrieval_questions.tsv"),
        )
        .unwrap();
        let (mut total, mut found) = (0, 0);
        let (mut total_ru, mut found_ru) = (0, 0);
        let mut misses = Vec::new();
        for line in questions.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (expected, question) = line.split_once('\t').expect("expected<TAB>question");
            let (slug, anchor) = expected.split_once('#').unwrap();
            assert!(
                index.lesson(slug).is_some(),
                "question set names a lesson that does not exist: {slug}"
            );
            let hits = index.search(question, &[], 3).unwrap();
            let hit = hits.iter().any(|h| h.slug == slug && h.anchor == anchor);
            total += 1;
            found += usize::from(hit);
            if slug.ends_with("-ru") {
                total_ru += 1;
                found_ru += usize::from(hit);
            }
            if !hit {
                misses.push(format!(
                    "{question} → expected {expected}, got {:?}",
                    hits.iter().map(|h| format!("{}#{}", h.slug, h.anchor)).collect::<Vec<_>>()
                ));
            }
        }
        let recall = found as f64 / total as f64;
        println!(
            "recall@3 = {recall:.3} ({found}/{total}); ru {found_ru}/{total_ru}, en {}/{}",
            found - found_ru,
            total - total_ru
        );
        for miss in &misses {
            println!("  miss: {miss}");
        }
        assert!(total >= 40 && total_ru >= 20 && total - total_ru >= 20);
        assert!(recall >= 0.8, "recall@3 = {recall:.3}; misses:\n{}", misses.join("\n"));
    }
}
