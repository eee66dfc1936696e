//! Parsing of the `data:` payloads of an OpenAI Chat Completions stream.
//!
//! One SSE event carries one JSON chunk, or the literal `[DONE]`. The chunk shapes
//! seen in the wild: a first chunk with `delta.role` and empty content, content
//! chunks, a chunk with `finish_reason` and an empty delta, an optional usage chunk
//! with `choices: []`, and an in-stream `{"error": {...}}` object.

use serde::Deserialize;

use crate::protocol::Usage;

/// What one `data:` payload means.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChunkEvent {
    /// Text to show; `None` for role, finish and usage chunks.
    pub content: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// The literal `[DONE]` sentinel.
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChunkError {
    #[error("malformed chunk: {0}")]
    Malformed(String),
    /// The upstream reported an error inside the stream.
    #[error("upstream error in stream: {message}")]
    InStream {
        message: String,
        kind: Option<String>,
        code: Option<String>,
    },
}

/// The error `type`s and `code`s OpenAI-compatible APIs use for a rate limit (OpenAI:
/// type `requests`/`tokens`, code `rate_limit_exceeded`; others: `rate_limit_error`).
/// Matched whole, never searched for in a message.
const RATE_LIMIT_KINDS: [&str; 4] = ["rate_limit_exceeded", "rate_limit_error", "requests", "tokens"];

impl ChunkError {
    /// True when an in-stream error is the upstream's rate limit.
    pub fn is_rate_limit(&self) -> bool {
        match self {
            ChunkError::InStream { kind, code, .. } => [kind, code]
                .into_iter()
                .flatten()
                .any(|k| RATE_LIMIT_KINDS.contains(&k.as_str())),
            ChunkError::Malformed(_) => false,
        }
    }
}

#[derive(Deserialize)]
struct RawChunk {
    #[serde(default)]
    choices: Option<Vec<RawChoice>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    error: Option<RawError>,
}

#[derive(Deserialize)]
struct RawChoice {
    #[serde(default)]
    delta: Option<RawDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    index: Option<u32>,
}

#[derive(Deserialize)]
struct RawDelta {
    #[serde(default)]
    content: Option<String>,
}

/// Counts as the server wrote them: a count that is not a whole number in `u32`
/// (negative, fractional, too large) must not turn a finished answer into an error,
/// nor be believed: the course's daily token budget adds them up.
#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: Option<serde_json::Value>,
    #[serde(default)]
    completion_tokens: Option<serde_json::Value>,
}

/// A usage count: a whole number in `u32` (`12.0` too), else none. A missing count is 0.
fn token_count(value: Option<serde_json::Value>) -> Option<u32> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Some(0);
    };
    let number = value.as_number()?;
    if let Some(whole) = number.as_u64() {
        return u32::try_from(whole).ok();
    }
    let float = number.as_f64()?;
    (float.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&float)).then_some(float as u32)
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// PostgreSQL refuses U+0000 in text: a model's NUL would fail every write of the
/// answer (and the checkpoint batch it shares with others). It becomes U+FFFD, the
/// character that stands for one that could not be kept, in the stream and the store.
fn without_nul(content: String) -> String {
    if content.contains('\0') {
        content.replace('\0', "\u{FFFD}")
    } else {
        content
    }
}

pub fn parse_chunk(data: &str) -> Result<ChunkEvent, ChunkError> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(ChunkEvent {
            done: true,
            ..ChunkEvent::default()
        });
    }
    let raw: RawChunk =
        serde_json::from_str(data).map_err(|e| ChunkError::Malformed(e.to_string()))?;
    if let Some(error) = raw.error {
        return Err(ChunkError::InStream {
            message: error.message.unwrap_or_else(|| "unknown error".into()),
            kind: error.kind,
            code: error.code.map(|c| match c {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
        });
    }
    let Some(choices) = raw.choices else {
        return Err(ChunkError::Malformed("chunk has neither choices nor error".into()));
    };
    let mut event = ChunkEvent {
        // Counts that cannot be read are no report at all: the answer's usage is then
        // estimated, as for a stream that ended without one.
        usage: raw.usage.and_then(|u| {
            Some(Usage { prompt_tokens: token_count(u.prompt_tokens)?, completion_tokens: token_count(u.completion_tokens)? })
        }),
        ..ChunkEvent::default()
    };
    // We ask for one choice (n = 1); a server that sends others is ignored past index 0.
    if let Some(choice) = choices.into_iter().find(|c| c.index.unwrap_or(0) == 0) {
        event.content = choice
            .delta
            .and_then(|d| d.content)
            .filter(|c| !c.is_empty())
            .map(without_nul);
        event.finish_reason = choice.finish_reason;
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_chunk_has_no_content() {
        let e = parse_chunk(r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":null,"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}"#).unwrap();
        assert_eq!(e, ChunkEvent::default());
    }

    #[test]
    fn content_chunk() {
        let e = parse_chunk(r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#).unwrap();
        assert_eq!(e.content.as_deref(), Some("Hel"));
        assert!(!e.done);
    }

    #[test]
    fn null_content_is_no_content() {
        let e = parse_chunk(r#"{"choices":[{"index":0,"delta":{"content":null}}]}"#).unwrap();
        assert_eq!(e.content, None);
    }

    #[test]
    fn finish_chunk_with_empty_delta() {
        let e = parse_chunk(
            r#"{"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}"#,
        )
        .unwrap();
        assert_eq!(e.finish_reason.as_deref(), Some("stop"));
        assert_eq!(e.content, None);
    }

    #[test]
    fn usage_chunk_with_empty_choices() {
        let e = parse_chunk(r#"{"id":"c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#).unwrap();
        assert_eq!(
            e.usage,
            Some(Usage {
                prompt_tokens: 9,
                completion_tokens: 12
            })
        );
    }

    #[test]
    fn odd_usage_counts_do_not_refuse_the_chunk_and_are_not_believed() {
        for odd in [r#"5000000000, "completion_tokens": 3"#, r#"-3, "completion_tokens": 3"#, r#"4, "completion_tokens": 12.7"#, r#"4, "completion_tokens": "many""#] {
            let e = parse_chunk(&format!(r#"{{"choices":[],"usage":{{"prompt_tokens": {odd}}}}}"#)).unwrap();
            assert_eq!(e.usage, None, "{odd}");
        }
        let e = parse_chunk(r#"{"choices":[],"usage":{"prompt_tokens":12.0,"completion_tokens":null}}"#).unwrap();
        assert_eq!(e.usage, Some(Usage { prompt_tokens: 12, completion_tokens: 0 }));
    }

    #[test]
    fn a_nul_in_content_becomes_the_replacement_character() {
        let e = parse_chunk(r#"{"choices":[{"index":0,"delta":{"content":"a\u0000b"}}]}"#).unwrap();
        assert_eq!(e.content.as_deref(), Some("a\u{FFFD}b"));
    }

    #[test]
    fn usage_null_on_ordinary_chunks() {
        let e = parse_chunk(r#"{"choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}"#)
            .unwrap();
        assert_eq!(e.usage, None);
        assert_eq!(e.content.as_deref(), Some("x"));
    }

    #[test]
    fn done_sentinel() {
        assert!(parse_chunk("[DONE]").unwrap().done);
        assert!(parse_chunk(" [DONE] ").unwrap().done);
    }

    #[test]
    fn in_stream_error() {
        let err = parse_chunk(r#"{"error":{"message":"overloaded","type":"server_error","code":503}}"#)
            .unwrap_err();
        assert_eq!(
            err,
            ChunkError::InStream {
                message: "overloaded".into(),
                kind: Some("server_error".into()),
                code: Some("503".into())
            }
        );
    }

    #[test]
    fn malformed_shapes() {
        for bad in ["{not json", "", "42", r#"{"id":"x"}"#, r#"{"choices":"no"}"#] {
            assert!(
                matches!(parse_chunk(bad), Err(ChunkError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn other_choice_indexes_are_ignored() {
        let e = parse_chunk(r#"{"choices":[{"index":1,"delta":{"content":"no"}},{"index":0,"delta":{"content":"yes"}}]}"#).unwrap();
        assert_eq!(e.content.as_deref(), Some("yes"));
    }
}
