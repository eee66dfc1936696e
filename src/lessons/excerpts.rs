//! From search hits to what an answer carries: the numbered sources, the prompt that
//! asks the model to cite them, and (in lesson mode, with no model) an answer made of
//! the best passages themselves.

use super::index::Hit;
use crate::protocol::Source;

const SNIPPET_CHARS: usize = 220;
/// Per source in the prompt: enough for the model, bounded for the context window.
const PROMPT_SOURCE_CHARS: usize = 1500;
const EXCERPT_CHARS: usize = 480;

pub fn sources_from(hits: &[Hit]) -> Vec<Source> {
    hits.iter()
        .zip(1u32..)
        .map(|(hit, n)| Source {
            n,
            lesson: hit.slug.clone(),
            lesson_title: hit.lesson_title.clone(),
            section: hit.section.clone(),
            anchor: hit.anchor.clone(),
            snippet: cut(&first_lines(&hit.text), SNIPPET_CHARS),
        })
        .collect()
}

/// The system message that hands the model its sources.
pub fn prompt_with_sources(hits: &[Hit]) -> Option<String> {
    if hits.is_empty() {
        return None;
    }
    let mut prompt = String::from(
        "Sources from the course's lessons for this question. Base your answer on them \
         and cite each source you use as [n] (for example [1]). Cite only these numbers. \
         If they do not cover the question, say so before answering from general knowledge.\n",
    );
    for (hit, n) in hits.iter().zip(1u32..) {
        prompt.push_str(&format!(
            "\n[{n}] {} › {}\n{}\n",
            hit.lesson_title,
            hit.section,
            cut(&hit.text, PROMPT_SOURCE_CHARS)
        ));
    }
    Some(prompt)
}

/// The answer when the course's daily model budget is spent: a note saying so, then
/// lesson mode's excerpts. In the question's language.
pub fn budget_spent_answer(question: &str, hits: &[Hit]) -> String {
    let note = if crate::i18n::is_russian(question) {
        "*Дневной бюджет курса на языковую модель исчерпан: до полуночи (UTC) ответы \
         составляются из уроков.*\n\n"
    } else {
        "*The course's daily budget for the language model is spent: until midnight (UTC), \
         answers are made from the lessons.*\n\n"
    };
    format!("{note}{}", excerpt_answer(question, hits))
}

/// Lesson mode's answer, in Markdown: a note saying what it is, then each source's
/// best passage, quoted, under its cited title. In the question's language.
pub fn excerpt_answer(question: &str, hits: &[Hit]) -> String {
    let ru = crate::i18n::is_russian(question);
    if hits.is_empty() {
        return if ru {
            "В уроках курса не нашлось ничего по этому вопросу. Попробуйте назвать тему \
             (например: WebSocket, SSE, переподключение, RAG)."
                .into()
        } else {
            "Nothing in the course lessons matches this question. Try naming the topic \
             (for example: WebSocket, SSE, reconnection, RAG)."
                .into()
        };
    }
    let mut answer = String::from(if ru {
        "Это выдержки из уроков курса, а не сгенерированный ответ: языковая модель не подключена.\n"
    } else {
        "These are excerpts from the course lessons, not a generated answer: no language model is connected.\n"
    });
    for (hit, n) in hits.iter().zip(1u32..) {
        let heading = if hit.section == hit.lesson_title {
            hit.lesson_title.clone()
        } else {
            format!("{} › {}", hit.lesson_title, hit.section)
        };
        // Markdown: the source as a bold line with its citation, the passage quoted.
        let passage = not_citations(&best_passage(&hit.text, question));
        answer.push_str(&format!("\n[{n}] **{heading}**\n\n> {passage}\n"));
    }
    answer
}

/// Words of four letters or more, cut to five: a crude stem that is enough to rank
/// a section's paragraphs against a question in either language.
fn stems(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 4)
        .map(|w| w.to_lowercase().chars().take(5).collect())
        .collect()
}

/// The section's paragraph that shares most words with the question (the first on
/// a tie), with the next one when it is short.
fn best_passage(text: &str, question: &str) -> String {
    let wanted = stems(question);
    let paragraphs: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let score = |p: &str| stems(p).iter().filter(|s| wanted.contains(s)).count();
    let best = (0..paragraphs.len())
        .max_by_key(|&i| (score(paragraphs[i]), std::cmp::Reverse(i)))
        .unwrap_or(0);
    let mut passage = paragraphs.get(best).copied().unwrap_or("").to_string();
    if passage.chars().count() < EXCERPT_CHARS / 2 {
        if let Some(next) = paragraphs.get(best + 1) {
            passage.push(' ');
            passage.push_str(next);
        }
    }
    cut(&passage, EXCERPT_CHARS)
}

/// A lesson's own "[1]" (the RAG lesson shows how to cite) would read as a citation of
/// this answer's source 1. A word joiner after the bracket keeps it as the lesson
/// wrote it on screen, and keeps it from matching `[n]`.
fn not_citations(passage: &str) -> String {
    let mut out = String::with_capacity(passage.len());
    let mut rest = passage;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(']') {
            out.push('\u{2060}');
        }
    }
    out.push_str(rest);
    out
}

fn first_lines(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// At most `max` characters, cut at a word, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max).collect();
    let at = head.rfind(char::is_whitespace).filter(|&i| i > max / 2).unwrap_or(head.len());
    format!("{}…", head[..at].trim_end())
}

/// Lesson mode streams its answer word by word, like a model would.
pub fn words(text: &str) -> Vec<String> {
    text.split_inclusive(char::is_whitespace).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(section: &str, text: &str) -> Hit {
        Hit {
            slug: "05-rate-limiting-en".into(),
            lesson_title: "Rate limiting".into(),
            section: section.into(),
            anchor: "token-bucket".into(),
            text: text.into(),
            score: 1.0,
        }
    }

    #[test]
    fn excerpts_cite_every_passage_and_say_what_they_are() {
        let hits = [
            hit("Token bucket", "Intro line.\nA token bucket refills at a steady rate and allows bursts."),
            hit("Windows", "A fixed window counts requests per minute."),
        ];
        let answer = excerpt_answer("How does a token bucket allow bursts?", &hits);
        assert!(answer.starts_with("These are excerpts from the course lessons"));
        assert!(answer.contains("[1] **Rate limiting › Token bucket**\n\n> A token bucket refills"), "{answer}");
        assert!(answer.contains("[2] **Rate limiting › Windows**"));
        let ru = excerpt_answer("Что такое token bucket?", &hits);
        assert!(ru.starts_with("Это выдержки из уроков курса"));
    }

    #[test]
    fn a_lessons_own_bracketed_numbers_are_not_citations() {
        let hits = [
            hit("Citing", "Tell the model to cite them as [1], [2] and to say so."),
            hit("Sources", "Number the sources [12] and keep [x] and [ as they are."),
        ];
        let answer = excerpt_answer("how to cite sources", &hits);
        let sources: Vec<crate::lessons::Source> = (1..=12)
            .map(|n| crate::lessons::Source {
                n,
                lesson: "09-rag-prompts-en".into(),
                lesson_title: "RAG".into(),
                section: "Citing".into(),
                anchor: "citing".into(),
                snippet: String::new(),
            })
            .collect();
        let cited: Vec<u32> = crate::render::split_citations(&answer, &sources)
            .into_iter()
            .filter_map(|segment| match segment {
                crate::render::Segment::Cite { n, .. } => Some(n),
                crate::render::Segment::Text(_) => None,
            })
            .collect();
        assert_eq!(cited, [1, 2], "only the excerpts' own headings cite: {answer}");
        // On screen the lesson's text is unchanged.
        assert!(answer.replace('\u{2060}', "").contains("cite them as [1], [2] and"));
        assert!(answer.contains("keep [x] and [ as they are"));
    }

    #[test]
    fn no_hits_says_so() {
        assert!(excerpt_answer("zzz", &[]).contains("Nothing in the course lessons"));
    }

    #[test]
    fn words_rebuild_the_text() {
        let text = "Привет, мир!\n\n[1] Урок › Раздел\nтекст ";
        assert_eq!(words(text).concat(), text);
        assert!(words(text).len() > 4);
    }

    #[test]
    fn cuts_at_a_word() {
        assert_eq!(cut("alpha beta gamma", 12), "alpha beta…");
        assert_eq!(cut("short", 12), "short");
        assert_eq!(cut("ааааааааааааааа", 5), "ааааа…");
    }

    #[test]
    fn prompt_numbers_sources() {
        let prompt = prompt_with_sources(&[hit("Token bucket", "Refills.")]).unwrap();
        assert!(prompt.contains("[1] Rate limiting › Token bucket\nRefills."));
        assert!(prompt_with_sources(&[]).is_none());
    }
}
