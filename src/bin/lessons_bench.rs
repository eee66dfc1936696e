//! Lesson index benchmark for docs/BENCHMARKS.md: generate 1,000 lessons of 10
//! sections each (10,000 chunks) from the sample course's own vocabulary, half in
//! Russian and half in English; time a full index, an incremental re-index after one
//! file changes, the index's size on disk, and the latency of 10,000 searches.
//!
//!   cargo run --release --features ssr --bin lessons_bench [LESSONS]

use fastrand::Rng;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tutor_chat::lessons::index::LessonIndex;

const SECTIONS: usize = 9; // plus the text under the title: 10 chunks per lesson
const WORDS_PER_SECTION: usize = 120;
const QUERIES: usize = 10_000;

fn vocabulary(course: &Path, suffix: &str) -> Vec<String> {
    let mut words = Vec::new();
    for entry in std::fs::read_dir(course).expect("lessons folder") {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(suffix) {
            let text = std::fs::read_to_string(&path).unwrap();
            words.extend(
                text.split(|c: char| !c.is_alphanumeric())
                    .filter(|w| w.chars().count() > 2)
                    .map(str::to_lowercase),
            );
        }
    }
    words
}

fn sentence(rng: &mut Rng, words: &[String], n: usize) -> String {
    (0..n).map(|_| words[rng.usize(..words.len())].as_str()).collect::<Vec<_>>().join(" ")
}

fn lesson(rng: &mut Rng, words: &[String], i: usize) -> String {
    let mut text = format!("# Lesson {i} {}\n\n{}.\n", sentence(rng, words, 3), sentence(rng, words, WORDS_PER_SECTION));
    for s in 0..SECTIONS {
        text.push_str(&format!("\n## Part {s} {}\n\n", sentence(rng, words, 3)));
        for _ in 0..3 {
            text.push_str(&sentence(rng, words, WORDS_PER_SECTION / 3));
            text.push_str(".\n\n");
        }
    }
    text
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let meta = e.metadata().unwrap();
                    if meta.is_dir() { dir_size(&e.path()) } else { meta.len() }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort_unstable();
    samples[((p / 100.0) * (samples.len() - 1) as f64).round() as usize].as_secs_f64() * 1e3
}

fn main() {
    let lessons: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let course = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lessons");
    let (en, ru) = (vocabulary(&course, "-en.md"), vocabulary(&course, "-ru.md"));
    let root = std::env::temp_dir().join(format!("lessons-bench-{}", std::process::id()));
    let (folder, index_dir) = (root.join("lessons"), root.join("index"));
    std::fs::create_dir_all(&folder).unwrap();
    let mut rng = Rng::with_seed(0x9E37_79B9_7F4A_7C15);
    let mut source_bytes = 0;
    for i in 0..lessons {
        let (words, lang) = if i % 2 == 0 { (&en, "en") } else { (&ru, "ru") };
        let text = lesson(&mut rng, words, i);
        source_bytes += text.len();
        std::fs::write(folder.join(format!("{i:04}-generated-{lang}.md")), text).unwrap();
    }
    println!("{lessons} lessons, {:.1} MB of Markdown", source_bytes as f64 / 1e6);

    let index = LessonIndex::open(&index_dir).unwrap();
    let started = Instant::now();
    let report = index.sync(&folder, &mut |_| {}).unwrap();
    let full = started.elapsed();
    println!(
        "full index: {:.2} s, {} sections, {:.1} MB on disk",
        full.as_secs_f64(),
        index.sections(),
        dir_size(&index_dir) as f64 / 1e6
    );
    assert_eq!(report.indexed.len(), lessons);

    std::fs::write(folder.join("0000-generated-en.md"), lesson(&mut rng, &en, 0)).unwrap();
    let started = Instant::now();
    let report = index.sync(&folder, &mut |_| {}).unwrap();
    println!(
        "incremental re-index after one file changed: {:.1} ms ({} re-indexed, {} unchanged)",
        started.elapsed().as_secs_f64() * 1e3,
        report.indexed.len(),
        report.unchanged
    );

    let mut samples = Vec::with_capacity(QUERIES);
    for q in 0..QUERIES {
        let words = if q % 2 == 0 { &en } else { &ru };
        let question = sentence(&mut rng, words, 8);
        let started = Instant::now();
        let hits = index.search(&question, &[], 3).unwrap();
        samples.push(started.elapsed());
        assert!(hits.len() <= 3);
    }
    let (p50, p99) = (percentile(&mut samples, 50.0), percentile(&mut samples, 99.0));
    println!("search (8-word questions, top 3, {QUERIES} queries): p50 {p50:.2} ms, p99 {p99:.2} ms");
    let _ = std::fs::remove_dir_all(&root);
}
