//! An answer rendered while it streams, without parsing the whole answer again for
//! every chunk: the Markdown blocks that are finished are rendered once and kept, and
//! only the open block at the end (the tail) is rendered again.
//!
//! A block is finished when the parser starts a new top-level block after a blank
//! line, on a line that begins at the margin and cannot be a list item: such a line
//! closes every open container (a list, a quote, an indented code block), so nothing
//! the model writes later can change the HTML before it. A fenced code block or a
//! `<script>`/comment HTML block that spans blank lines is one block to the parser, so
//! it is never cut. Two things are read across the whole text and turn the cache off
//! (every render is then the plain full render): link reference definitions
//! (`[x]: url`, found anywhere by their `]:`) and carriage returns.
//!
//! The concatenation of the finished HTML and the tail's HTML is always exactly
//! [`answer_html`] of the whole text (checked for random Markdown cut at random chunk
//! boundaries in `proptests.rs`).

use pulldown_cmark::{Event, Parser};

use super::{answer_html, options, RenderLabels};
use crate::protocol::Source;

/// The HTML of one streaming answer, kept between updates.
#[derive(Debug, Default)]
pub struct StreamingHtml {
    /// The text of the finished blocks: a prefix of every text given since.
    done_text: String,
    done_html: String,
    tail_html: String,
    sources: Vec<Source>,
    labels: Option<(&'static str, &'static str)>,
}

impl StreamingHtml {
    /// Renders `text` (the answer so far), reusing the finished blocks of the last
    /// update when `text` still starts with them.
    pub fn update(&mut self, text: &str, sources: &[Source], labels: RenderLabels) {
        let same_words = self.labels == Some((labels.copy, labels.seam)) && self.sources == sources;
        let cacheable = !text.contains("]:") && !text.contains('\r');
        if !same_words || !cacheable || !text.starts_with(self.done_text.as_str()) {
            self.done_text.clear();
            self.done_html.clear();
            self.sources = sources.to_vec();
            self.labels = Some((labels.copy, labels.seam));
            if !cacheable {
                self.tail_html = answer_html(text, sources, labels);
                return;
            }
        }
        let tail = &text[self.done_text.len()..];
        let cut = last_finished_block(tail);
        if cut > 0 {
            self.done_html.push_str(&answer_html(&tail[..cut], sources, labels));
            self.done_text.push_str(&tail[..cut]);
        }
        self.tail_html = answer_html(&text[self.done_text.len()..], sources, labels);
    }

    /// The finished blocks' HTML.
    pub fn done_html(&self) -> &str {
        &self.done_html
    }

    /// The open block's HTML (everything after the finished blocks).
    pub fn tail_html(&self) -> &str {
        &self.tail_html
    }
}

/// The byte offset where the last top-level block of `text` that can no longer change
/// begins its successor, or 0. `text` starts where a block starts.
fn last_finished_block(text: &str) -> usize {
    let mut depth = 0usize;
    let mut cut = 0;
    for (event, range) in Parser::new_ext(text, options()).into_offset_iter() {
        match event {
            Event::Start(_) => {
                if depth == 0 && range.start > cut && closes_what_came_before(text, range.start) {
                    cut = range.start;
                }
                depth += 1;
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    cut
}

/// Whether the line at `at` follows a blank line, begins at the margin and cannot
/// (even once more of it arrives) be a list item, which would continue a list above.
fn closes_what_came_before(text: &str, at: usize) -> bool {
    let Some(before) = text[..at].strip_suffix('\n') else {
        return false;
    };
    let previous_line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
    if !previous_line.bytes().all(|b| b == b' ' || b == b'\t') {
        return false;
    }
    let line = text[at..].as_bytes();
    let ends_marker = |rest: &[u8]| rest.first().is_none_or(|b| matches!(b, b' ' | b'\t' | b'\n'));
    match line.first() {
        None | Some(b' ' | b'\t' | b'\n') => false,
        Some(b'-' | b'+' | b'*') => !ends_marker(&line[1..]),
        Some(b'0'..=b'9') => {
            let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
            match line.get(digits) {
                // Still arriving: it may become `12.`.
                None => false,
                Some(b'.' | b')') => digits > 9 || !ends_marker(&line[digits + 1..]),
                Some(_) => true,
            }
        }
        Some(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABELS: RenderLabels = RenderLabels { copy: "Copy", seam: "continued here" };

    /// Streams `text` a few bytes at a time; at every step the two parts together are
    /// the full render. Returns how many bytes ended up finished.
    fn stream(text: &str, step: usize) -> usize {
        let mut html = StreamingHtml::default();
        let mut end = 0;
        while end < text.len() {
            end = (end + step).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            html.update(&text[..end], &[], LABELS);
            let joined = format!("{}{}", html.done_html(), html.tail_html());
            assert_eq!(joined, answer_html(&text[..end], &[], LABELS), "at {end} of {text:?}");
        }
        html.done_text.len()
    }

    #[test]
    fn finished_paragraphs_are_kept_and_the_rest_matches_the_full_render() {
        let text = "One paragraph.\n\nTwo **bold**.\n\n## A heading\n\nThe tail";
        assert_eq!(stream(text, 3), text.find("The tail").unwrap());
    }

    #[test]
    fn constructs_that_span_blank_lines_are_never_cut() {
        // A list that turns loose, a fence with blank lines, a script block, a quote.
        for text in [
            "- a\n- b\n\n- c\n\nafter",
            "1. a\n\n2. b\n\n10) c\n\nend",
            "```\ncode\n\nmore code\n\nstill\n```\n\nafter",
            "<script>\n\nx\n\n</script>\n\nafter",
            "<!--\n\nnote\n\n-->\n\nafter",
            "> quote\n\n> another\n\ntext",
            "- item\n\n  continued\n\n      indented code\n\nout",
            "para\n\n    code\n\n    more\n\nend",
        ] {
            for step in [1, 2, 5, 64] {
                stream(text, step);
            }
        }
    }

    #[test]
    fn reference_definitions_turn_the_cache_off() {
        let text = "See [the docs].\n\nMore text.\n\n[the docs]: https://example.org\n";
        assert_eq!(stream(text, 4), 0);
        let html = answer_html(text, &[], LABELS);
        assert!(html.contains("href=\"https://example.org\""), "{html}");
    }

    #[test]
    fn a_text_that_changes_before_the_tail_starts_over() {
        let mut html = StreamingHtml::default();
        html.update("First.\n\nSecond.\n\nThird", &[], LABELS);
        assert!(!html.done_html().is_empty());
        // A snapshot replaced the text (a resume, or a seam mark put in).
        let other = "Other.\n\nText";
        html.update(other, &[], LABELS);
        assert_eq!(format!("{}{}", html.done_html(), html.tail_html()), answer_html(other, &[], LABELS));
    }
}
