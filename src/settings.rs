//! Runtime settings. Each one is read, in order of precedence, from a command-line
//! flag, an environment variable, the `Leptos.toml` file, then a built-in default.
//! The README's settings table lists them all.

use clap::Parser;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Flags and environment variables. Every field is optional so that an unset flag
/// lets the file's value through.
#[derive(Debug, Parser, Default)]
#[command(name = "tutor-chat", version, about = "Tutor Chat server")]
pub struct Cli {
    /// Settings file (TOML).
    #[arg(long, env = "TUTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "TUTOR_BIND")]
    pub bind: Option<String>,
    /// Base URL of an OpenAI-compatible API (OpenAI, Ollama, vLLM, llama.cpp).
    #[arg(long, env = "OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,
    /// API key sent as a Bearer token.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,
    /// Model name sent with each request.
    #[arg(long, env = "OPENAI_MODEL")]
    pub openai_model: Option<String>,
    /// System prompt that sets the tutor's voice.
    #[arg(long, env = "TUTOR_SYSTEM_PROMPT")]
    pub system_prompt: Option<String>,
    #[arg(long, env = "TUTOR_CONNECT_TIMEOUT_MS")]
    pub connect_timeout_ms: Option<u64>,
    #[arg(long, env = "TUTOR_FIRST_TOKEN_TIMEOUT_MS")]
    pub first_token_timeout_ms: Option<u64>,
    #[arg(long, env = "TUTOR_TOKEN_GAP_TIMEOUT_MS")]
    pub token_gap_timeout_ms: Option<u64>,
    #[arg(long, env = "TUTOR_TOTAL_TIMEOUT_MS")]
    pub total_timeout_ms: Option<u64>,
    #[arg(long, env = "TUTOR_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    #[arg(long, env = "TUTOR_HARD_FRAME_BYTES")]
    pub hard_frame_bytes: Option<usize>,
    #[arg(long, env = "TUTOR_MAX_QUESTION_CHARS")]
    pub max_question_chars: Option<usize>,
    #[arg(long, env = "TUTOR_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    #[arg(long, env = "TUTOR_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Extra origins allowed to open the WebSocket, comma-separated
    /// (e.g. `https://course.example.org`). The page's own origin is always allowed.
    #[arg(long, env = "TUTOR_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Database: `sqlite://…` or `postgres://…`. Unset: an SQLite file in the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Where the embedded SQLite database lives.
    #[arg(long, env = "TUTOR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "TUTOR_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// Approximate tokens of earlier turns sent to the model with each question.
    #[arg(long, env = "TUTOR_CONTEXT_TOKEN_BUDGET")]
    pub context_token_budget: Option<usize>,
    /// This instance's name, unique among instances sharing a database. Unset: the bind address.
    #[arg(long, env = "TUTOR_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Mark the session cookie `Secure` (set when served over https).
    #[arg(long, env = "TUTOR_SECURE_COOKIES")]
    pub secure_cookies: Option<bool>,
    /// The course's lessons (Markdown files); indexed at start-up.
    #[arg(long, env = "LESSONS_DIR")]
    pub lessons_dir: Option<PathBuf>,
    /// Lesson sections retrieved per question (the sources an answer may cite).
    #[arg(long, env = "TUTOR_RETRIEVAL_TOP_K")]
    pub retrieval_top_k: Option<usize>,
    /// Questions a user may ask at once before waiting: the question budget's capacity,
    /// across tabs and instances (0: no limit).
    #[arg(long, env = "TUTOR_QUESTION_BUDGET")]
    pub question_budget: Option<u32>,
    /// Milliseconds for one question of the budget to come back.
    #[arg(long, env = "TUTOR_QUESTION_REFILL_MS")]
    pub question_refill_ms: Option<u64>,
    /// Retired, read as the budget (see the file's `questions_per_minute`): a service
    /// started with the old variable keeps its limit instead of silently losing it.
    #[arg(long, env = "TUTOR_QUESTIONS_PER_MINUTE", hide = true)]
    pub questions_per_minute: Option<u32>,
    /// Answers this instance streams at once; one more gets `busy`.
    #[arg(long, env = "TUTOR_MAX_CONCURRENT_ANSWERS")]
    pub max_concurrent_answers: Option<usize>,
    /// Open chat sockets (tabs) per user on this instance.
    #[arg(long, env = "TUTOR_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<usize>,
    /// Conversations a user may keep; a new one beyond it gets `limit_reached`.
    #[arg(long, env = "TUTOR_MAX_CONVERSATIONS_PER_USER")]
    pub max_conversations_per_user: Option<u32>,
    /// On SIGTERM, how long running answers may take to finish before they are
    /// stored as interrupted.
    #[arg(long, env = "TUTOR_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Signs session tokens; instances sharing a database share it (default: a random secret kept in `<data_dir>/session-secret`).
    #[arg(long, env = "TUTOR_SESSION_SECRET")]
    pub session_secret: Option<String>,
    /// Guests idle this many days are deleted with their conversations (0: never).
    #[arg(long, env = "TUTOR_GUEST_IDLE_DAYS")]
    pub guest_idle_days: Option<u32>,
    /// Proxies (CIDRs, comma-separated) whose X-Forwarded-For is believed; from anyone else the peer address counts.
    #[arg(long, env = "TUTOR_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Accounts one client address may create per hour (0: no limit).
    #[arg(long, env = "TUTOR_SIGNUPS_PER_HOUR_PER_ADDRESS")]
    pub signups_per_hour_per_address: Option<u32>,
    /// Password hashes that may wait for a core; beyond them sign-up and sign-in get `busy`.
    #[arg(long, env = "TUTOR_PASSWORD_HASH_QUEUE")]
    pub password_hash_queue: Option<usize>,
    /// Most tokens one answer may have (sent as `max_tokens` with every model request).
    #[arg(long, env = "TUTOR_MAX_TOKENS")]
    pub max_tokens: Option<u32>,
    /// New guests (first questions of new sessions) one client address may start per hour (0: no limit).
    #[arg(long, env = "TUTOR_NEW_GUESTS_PER_HOUR_PER_ADDRESS")]
    pub new_guests_per_hour_per_address: Option<u32>,
    /// Questions per minute from one client address, all its sessions together (0: no limit).
    #[arg(long, env = "TUTOR_QUESTIONS_PER_MINUTE_PER_ADDRESS")]
    pub questions_per_minute_per_address: Option<u32>,
    /// Answers one client address may have streaming at once on this instance (0: no limit).
    #[arg(long, env = "TUTOR_ANSWERS_AT_ONCE_PER_ADDRESS")]
    pub answers_at_once_per_address: Option<usize>,
    /// Model tokens the whole course may use per day (UTC); when spent, answers come from the lessons (0: no budget).
    #[arg(long, env = "TUTOR_DAILY_TOKEN_BUDGET")]
    pub daily_token_budget: Option<u64>,
    /// Client frames a socket may send per second beyond a burst of twice as many; faster ones wait.
    #[arg(long, env = "TUTOR_FRAMES_PER_SECOND_PER_SOCKET")]
    pub frames_per_second_per_socket: Option<u32>,
    /// A client must send a request's headers within this long, or the connection is closed.
    #[arg(long, env = "TUTOR_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// Open HTTP connections one client address may hold (trusted proxies exempt; 0: no limit).
    #[arg(long, env = "TUTOR_CONNECTIONS_PER_ADDRESS")]
    pub connections_per_address: Option<usize>,
    /// Server-function calls one client address may make per second beyond a burst of four times as many; faster ones wait.
    #[arg(long, env = "TUTOR_CALLS_PER_SECOND_PER_ADDRESS")]
    pub calls_per_second_per_address: Option<u32>,
    /// Teachers may read every conversation, not only those a student shared (asked the teacher, or shared with a 👎).
    #[arg(long, env = "TUTOR_TEACHERS_READ_ALL_CONVERSATIONS")]
    pub teachers_read_all_conversations: Option<bool>,
    /// A question that matches an endorsed FAQ entry closely gets the teacher's answer, without a model call (docs/faq.md).
    #[arg(long, env = "FAQ_DIRECT_ANSWERS")]
    pub faq_direct_answers: Option<bool>,
    /// Price of a million prompt tokens, in the course's currency, for the cost on /teach (0: no cost shown).
    #[arg(long, env = "TUTOR_PRICE_PER_MILLION_PROMPT_TOKENS")]
    pub price_per_million_prompt_tokens: Option<f64>,
    /// Price of a million completion tokens, in the course's currency, for the cost on /teach (0: no cost shown).
    #[arg(long, env = "TUTOR_PRICE_PER_MILLION_COMPLETION_TOKENS")]
    pub price_per_million_completion_tokens: Option<f64>,
    /// How long an instance holds a streaming answer without renewing it (once a second); when it lapses another instance continues the answer.
    #[arg(long, env = "TUTOR_ANSWER_LEASE_MS")]
    pub answer_lease_ms: Option<u64>,
    /// How many times an answer cut by a crash is continued by another instance; past that it stays interrupted (0: never).
    #[arg(long, env = "TUTOR_MAX_CONTINUATIONS")]
    pub max_continuations: Option<u32>,
    /// Answers one student may have streaming at once, counted across tabs and instances in the database (0: no cap).
    #[arg(long, env = "TUTOR_ANSWERS_AT_ONCE_PER_USER")]
    pub answers_at_once_per_user: Option<u32>,
    /// Bearer token that lets a scraper read `/metrics` from anywhere; unset, only this machine may (a loopback peer with no proxy headers).
    #[arg(long, env = "TUTOR_METRICS_TOKEN")]
    pub metrics_token: Option<String>,
    /// `text` for people, `json` (one object a line) for log collectors.
    #[arg(long, env = "TUTOR_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// The same keys as [`Cli`], from the settings file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub bind: Option<String>,
    pub openai_base_url: Option<String>,
    pub openai_api_key: Option<String>,
    pub openai_model: Option<String>,
    pub system_prompt: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    pub first_token_timeout_ms: Option<u64>,
    pub token_gap_timeout_ms: Option<u64>,
    pub total_timeout_ms: Option<u64>,
    pub max_frame_bytes: Option<usize>,
    pub hard_frame_bytes: Option<usize>,
    pub max_question_chars: Option<usize>,
    pub ping_interval_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub allowed_origins: Option<Vec<String>>,
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub db_max_connections: Option<u32>,
    pub context_token_budget: Option<usize>,
    pub instance_id: Option<String>,
    pub secure_cookies: Option<bool>,
    pub lessons_dir: Option<PathBuf>,
    pub retrieval_top_k: Option<usize>,
    pub question_budget: Option<u32>,
    pub question_refill_ms: Option<u64>,
    /// Retired (the question budget replaced it): read as `question_budget = N` and
    /// `question_refill_ms = 60000 / N` where those are not set, so an older
    /// Leptos.toml still starts the server, as strict as it was.
    pub questions_per_minute: Option<u32>,
    pub max_concurrent_answers: Option<usize>,
    pub max_connections_per_user: Option<usize>,
    pub max_conversations_per_user: Option<u32>,
    pub shutdown_grace_ms: Option<u64>,
    pub session_secret: Option<String>,
    pub guest_idle_days: Option<u32>,
    pub trusted_proxies: Option<Vec<String>>,
    pub signups_per_hour_per_address: Option<u32>,
    pub password_hash_queue: Option<usize>,
    pub max_tokens: Option<u32>,
    pub new_guests_per_hour_per_address: Option<u32>,
    pub questions_per_minute_per_address: Option<u32>,
    pub answers_at_once_per_address: Option<usize>,
    pub daily_token_budget: Option<u64>,
    pub frames_per_second_per_socket: Option<u32>,
    pub header_read_timeout_ms: Option<u64>,
    pub connections_per_address: Option<usize>,
    pub calls_per_second_per_address: Option<u32>,
    pub teachers_read_all_conversations: Option<bool>,
    pub faq_direct_answers: Option<bool>,
    pub price_per_million_prompt_tokens: Option<f64>,
    pub price_per_million_completion_tokens: Option<f64>,
    pub answer_lease_ms: Option<u64>,
    pub max_continuations: Option<u32>,
    pub answers_at_once_per_user: Option<u32>,
    pub metrics_token: Option<String>,
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `None` means no endpoint was chosen: with no key either, the app answers in lesson mode.
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub model: String,
    pub system_prompt: String,
    pub connect_timeout: Duration,
    pub first_token_timeout: Duration,
    pub token_gap_timeout: Duration,
    pub total_timeout: Duration,
    /// Sent as `max_tokens` with every request.
    pub max_tokens: u32,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: Option<String>,
    pub upstream: UpstreamSettings,
    pub max_frame_bytes: usize,
    pub hard_frame_bytes: usize,
    pub max_question_chars: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub allowed_origins: Vec<String>,
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    pub db_max_connections: u32,
    pub context_token_budget: usize,
    pub instance_id: Option<String>,
    pub secure_cookies: bool,
    pub lessons_dir: PathBuf,
    pub retrieval_top_k: usize,
    /// The question budget: questions a student may ask at once (0: no limit); one comes
    /// back every `question_refill` (docs/security.md).
    pub question_budget: u32,
    pub question_refill: Duration,
    /// Where the question budget reads the time (a manual clock in tests).
    pub clock: crate::clock::Clock,
    pub max_concurrent_answers: usize,
    pub max_connections_per_user: usize,
    pub max_conversations_per_user: u32,
    pub shutdown_grace: Duration,
    /// Signs session tokens; instances sharing a database share it (default: a random secret kept in `<data_dir>/session-secret`).
    pub session_secret: Option<String>,
    /// Guests idle this many days are deleted with their conversations (0: never).
    pub guest_idle_days: u32,
    /// Proxies (CIDRs, comma-separated) whose X-Forwarded-For is believed; from anyone else the peer address counts.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Accounts one client address may create per hour (0: no limit).
    pub signups_per_hour_per_address: u32,
    /// Password hashes that may wait for a core; beyond them sign-up and sign-in get `busy`.
    pub password_hash_queue: usize,
    /// New guests (first questions of new sessions) one client address may start per hour (0: no limit).
    pub new_guests_per_hour_per_address: u32,
    /// Questions per minute from one client address, all its sessions together (0: no limit).
    pub questions_per_minute_per_address: u32,
    /// Answers one client address may have streaming at once on this instance (0: no limit).
    pub answers_at_once_per_address: usize,
    /// Model tokens the whole course may use per day (UTC); when spent, answers come from the lessons (0: no budget).
    pub daily_token_budget: u64,
    /// Client frames a socket may send per second beyond a burst of twice as many; faster ones wait.
    pub frames_per_second_per_socket: u32,
    /// A client must send a request's headers within this long, or the connection is closed.
    pub header_read_timeout: Duration,
    /// Open HTTP connections one client address may hold (trusted proxies exempt; 0: no limit).
    pub connections_per_address: usize,
    /// Server-function calls one client address may make per second beyond a burst of four times as many; faster ones wait.
    pub calls_per_second_per_address: u32,
    /// Teachers may read every conversation, not only those a student shared (asked the teacher, or shared with a 👎).
    pub teachers_read_all_conversations: bool,
    /// A question that matches an endorsed FAQ entry closely gets the teacher's answer, without a model call (docs/faq.md).
    pub faq_direct_answers: bool,
    /// Price of a million prompt tokens, in the course's currency, for the cost on /teach (0: no cost shown).
    pub price_per_million_prompt_tokens: f64,
    /// Price of a million completion tokens, in the course's currency, for the cost on /teach (0: no cost shown).
    pub price_per_million_completion_tokens: f64,
    /// How long an instance holds a streaming answer without renewing it (once a second); when it lapses another instance continues the answer.
    pub answer_lease: Duration,
    /// How many times an answer cut by a crash is continued by another instance; past that it stays interrupted (0: never).
    pub max_continuations: u32,
    /// Answers one student may have streaming at once, counted across tabs and instances in the database (0: no cap).
    pub answers_at_once_per_user: u32,
    /// Bearer token that lets a scraper read `/metrics` from anywhere; unset, only this machine may (a loopback peer with no proxy headers).
    pub metrics_token: Option<String>,
    /// `text` for people, `json` (one object a line) for log collectors.
    pub log_format: LogFormat,
}

/// How log lines are written (`log_format`): text for a person at a terminal, one JSON
/// object a line for a log collector (fields stay fields, no parsing of text).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a patient tutor for an online course about \
building real-time AI chat applications. Answer the student's question clearly and \
concisely, in the language of the question. When you are not sure, say so.";

impl Default for Settings {
    fn default() -> Self {
        Settings::resolve(Cli::default(), FileSettings::default())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("settings file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// A CIDR (`10.0.0.0/8`) or a single address (`127.0.0.1`); anything else is reported
/// by [`Settings::validate`].
fn parse_cidr(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

impl Settings {
    /// What a client frame may be (checked before it is parsed).
    pub fn frame_limits(&self) -> crate::protocol::FrameLimits {
        crate::protocol::FrameLimits {
            max_frame_bytes: self.max_frame_bytes,
            max_question_chars: self.max_question_chars,
        }
    }

    /// Earlier turns sent to the model, in characters (about four a token).
    pub fn context_budget_chars(&self) -> usize {
        self.context_token_budget.saturating_mul(4)
    }
}

impl Settings {
    /// Reads flags, environment and the settings file. A missing default file is
    /// fine; a missing file that was asked for by name is an error.
    pub fn load() -> Result<Settings, SettingsError> {
        Settings::load_from(Cli::parse())
    }

    /// As [`Settings::load`], with flags parsed by the caller (the `index` command).
    pub fn load_from(cli: Cli) -> Result<Settings, SettingsError> {
        let (path, required) = match &cli.config {
            Some(path) => (path.clone(), true),
            None => (PathBuf::from("Leptos.toml"), false),
        };
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<FileSettings>(&text).map_err(|e| SettingsError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                FileSettings::default()
            }
            Err(source) => return Err(SettingsError::Read { path, source }),
        };
        let retired = match (cli.questions_per_minute, file.questions_per_minute) {
            (Some(_), _) => Some("TUTOR_QUESTIONS_PER_MINUTE (or --questions-per-minute)".to_string()),
            (None, Some(_)) => Some(format!("{}: `questions_per_minute`", path.display())),
            (None, None) => None,
        };
        let proxies = cli.trusted_proxies.iter().chain(file.trusted_proxies.iter()).flatten();
        if let Some(bad) = proxies.filter(|c| !c.trim().is_empty()).find(|c| parse_cidr(c).is_none()) {
            return Err(SettingsError::Invalid(format!(
                "trusted_proxies: {bad:?} is not an address or a CIDR such as 10.0.0.0/8"
            )));
        }
        let settings = Settings::resolve(cli, file);
        if let Some(source) = retired {
            // Before logging starts (its format is a setting): straight to stderr.
            eprintln!(
                "tutor-chat: {source} is retired; the budget in use is question_budget = {} and \
                 question_refill_ms = {}. Set those instead to silence this.",
                settings.question_budget,
                settings.question_refill.as_millis(),
            );
        }
        settings.validate()?;
        Ok(settings)
    }

    pub fn resolve(cli: Cli, file: FileSettings) -> Settings {
        // N questions a minute: a budget of N, one back every 60 / N seconds.
        let retired = cli.questions_per_minute.or(file.questions_per_minute);
        let retired_refill_ms = retired.filter(|n| *n > 0).map(|n| 60_000 / u64::from(n));
        let ms = |a: Option<u64>, b: Option<u64>, default: u64| {
            Duration::from_millis(a.or(b).unwrap_or(default))
        };
        let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        Settings {
            bind: cli.bind.or(file.bind),
            upstream: UpstreamSettings {
                base_url: non_empty(cli.openai_base_url.or(file.openai_base_url))
                    .map(|url| url.trim_end_matches('/').to_string()),
                api_key: non_empty(cli.openai_api_key.or(file.openai_api_key)),
                model: non_empty(cli.openai_model.or(file.openai_model))
                    .unwrap_or_else(|| "gpt-4o-mini".into()),
                system_prompt: non_empty(cli.system_prompt.or(file.system_prompt))
                    .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.into()),
                connect_timeout: ms(cli.connect_timeout_ms, file.connect_timeout_ms, 10_000),
                first_token_timeout: ms(
                    cli.first_token_timeout_ms,
                    file.first_token_timeout_ms,
                    30_000,
                ),
                token_gap_timeout: ms(cli.token_gap_timeout_ms, file.token_gap_timeout_ms, 30_000),
                total_timeout: ms(cli.total_timeout_ms, file.total_timeout_ms, 300_000),
                max_tokens: cli.max_tokens.or(file.max_tokens).unwrap_or(1024).max(1),
            },
            max_frame_bytes: cli.max_frame_bytes.or(file.max_frame_bytes).unwrap_or(16 * 1024),
            hard_frame_bytes: cli
                .hard_frame_bytes
                .or(file.hard_frame_bytes)
                .unwrap_or(1024 * 1024),
            max_question_chars: cli
                .max_question_chars
                .or(file.max_question_chars)
                .unwrap_or(4000),
            ping_interval: ms(cli.ping_interval_ms, file.ping_interval_ms, 20_000),
            idle_timeout: ms(cli.idle_timeout_ms, file.idle_timeout_ms, 60_000),
            allowed_origins: cli
                .allowed_origins
                .or(file.allowed_origins)
                .unwrap_or_default()
                .into_iter()
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            database_url: non_empty(cli.database_url.or(file.database_url)),
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("data")),
            db_max_connections: cli
                .db_max_connections
                .or(file.db_max_connections)
                .unwrap_or(10),
            context_token_budget: cli
                .context_token_budget
                .or(file.context_token_budget)
                .unwrap_or(3000),
            instance_id: non_empty(cli.instance_id.or(file.instance_id)),
            secure_cookies: cli.secure_cookies.or(file.secure_cookies).unwrap_or(false),
            lessons_dir: cli.lessons_dir.or(file.lessons_dir).unwrap_or_else(|| PathBuf::from("lessons")),
            retrieval_top_k: cli.retrieval_top_k.or(file.retrieval_top_k).unwrap_or(3).min(10),
            question_budget: cli.question_budget.or(file.question_budget).or(retired).unwrap_or(10),
            // At least a second: a budget that refills faster is no budget.
            question_refill: ms(cli.question_refill_ms, file.question_refill_ms.or(retired_refill_ms), 6_000)
                .max(Duration::from_secs(1)),
            clock: crate::clock::Clock::system(),
            max_concurrent_answers: cli
                .max_concurrent_answers
                .or(file.max_concurrent_answers)
                .unwrap_or(256)
                .max(1),
            max_connections_per_user: cli
                .max_connections_per_user
                .or(file.max_connections_per_user)
                .unwrap_or(10)
                .max(1),
            max_conversations_per_user: cli
                .max_conversations_per_user
                .or(file.max_conversations_per_user)
                .unwrap_or(1000)
                .max(1),
            shutdown_grace: ms(cli.shutdown_grace_ms, file.shutdown_grace_ms, 20_000),
            answers_at_once_per_user: cli.answers_at_once_per_user.or(file.answers_at_once_per_user).unwrap_or(3),
            max_continuations: cli.max_continuations.or(file.max_continuations).unwrap_or(1),
            answer_lease: ms(cli.answer_lease_ms, file.answer_lease_ms, 5_000).max(Duration::from_secs(2)),
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            metrics_token: non_empty(cli.metrics_token.or(file.metrics_token)),
            price_per_million_completion_tokens: cli.price_per_million_completion_tokens.or(file.price_per_million_completion_tokens).filter(|p| p.is_finite() && *p >= 0.0).unwrap_or(0.0),
            price_per_million_prompt_tokens: cli.price_per_million_prompt_tokens.or(file.price_per_million_prompt_tokens).filter(|p| p.is_finite() && *p >= 0.0).unwrap_or(0.0),
            teachers_read_all_conversations: cli.teachers_read_all_conversations.or(file.teachers_read_all_conversations).unwrap_or(false),
            faq_direct_answers: cli.faq_direct_answers.or(file.faq_direct_answers).unwrap_or(true),
            calls_per_second_per_address: cli.calls_per_second_per_address.or(file.calls_per_second_per_address).unwrap_or(20),
            connections_per_address: cli.connections_per_address.or(file.connections_per_address).unwrap_or(256),
            header_read_timeout: ms(cli.header_read_timeout_ms, file.header_read_timeout_ms, 10_000),
            frames_per_second_per_socket: cli.frames_per_second_per_socket.or(file.frames_per_second_per_socket).unwrap_or(10).max(1),
            daily_token_budget: cli.daily_token_budget.or(file.daily_token_budget).unwrap_or(0),
            answers_at_once_per_address: cli.answers_at_once_per_address.or(file.answers_at_once_per_address).unwrap_or(60),
            questions_per_minute_per_address: cli.questions_per_minute_per_address.or(file.questions_per_minute_per_address).unwrap_or(300),
            new_guests_per_hour_per_address: cli.new_guests_per_hour_per_address.or(file.new_guests_per_hour_per_address).unwrap_or(200),
            password_hash_queue: cli.password_hash_queue.or(file.password_hash_queue).unwrap_or(32),
            signups_per_hour_per_address: cli.signups_per_hour_per_address.or(file.signups_per_hour_per_address).unwrap_or(60),
            trusted_proxies: cli
                .trusted_proxies
                .or(file.trusted_proxies)
                .unwrap_or_default()
                .iter()
                .filter_map(|c| parse_cidr(c))
                .collect(),
            guest_idle_days: cli.guest_idle_days.or(file.guest_idle_days).unwrap_or(90),
            session_secret: non_empty(cli.session_secret.or(file.session_secret)),
        }
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.hard_frame_bytes < self.max_frame_bytes {
            return Err(SettingsError::Invalid(format!(
                "hard_frame_bytes ({}) must be at least max_frame_bytes ({})",
                self.hard_frame_bytes, self.max_frame_bytes
            )));
        }
        if self.ping_interval >= self.idle_timeout {
            return Err(SettingsError::Invalid(
                "ping_interval_ms must be shorter than idle_timeout_ms, or live idle tabs would be closed"
                    .into(),
            ));
        }
        if let Some(url) = &self.upstream.base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(SettingsError::Invalid(format!(
                    "openai_base_url must start with http:// or https://, got {url}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_file_beats_default() {
        let cli = Cli {
            openai_model: Some("from-flag".into()),
            ..Cli::default()
        };
        let file: FileSettings = toml::from_str(
            "openai_model = \"from-file\"\nmax_question_chars = 10\nallowed_origins = [\"https://a.example/\"]",
        )
        .unwrap();
        let s = Settings::resolve(cli, file);
        assert_eq!(s.upstream.model, "from-flag");
        assert_eq!(s.max_question_chars, 10);
        assert_eq!(s.allowed_origins, vec!["https://a.example".to_string()]);
        assert_eq!(s.max_frame_bytes, 16 * 1024);
    }

    #[test]
    fn an_older_file_with_questions_per_minute_still_loads_as_strict_as_it_was() {
        let file: FileSettings = toml::from_str("questions_per_minute = 6").unwrap();
        let s = Settings::resolve(Cli::default(), file);
        assert_eq!((s.question_budget, s.question_refill), (6, Duration::from_secs(10)));
        // The new keys win where they are set.
        let file: FileSettings = toml::from_str("questions_per_minute = 6\nquestion_budget = 3").unwrap();
        let s = Settings::resolve(Cli::default(), file);
        assert_eq!((s.question_budget, s.question_refill), (3, Duration::from_secs(10)));
        // 0 was "no limit", as a budget of 0 is.
        let file: FileSettings = toml::from_str("questions_per_minute = 0").unwrap();
        assert_eq!(Settings::resolve(Cli::default(), file).question_budget, 0);
        // The old variable (or flag) too, over the file's old key.
        let cli = Cli::try_parse_from(["tutor-chat", "--questions-per-minute", "20"]).unwrap();
        let file: FileSettings = toml::from_str("questions_per_minute = 6").unwrap();
        let s = Settings::resolve(cli, file);
        assert_eq!((s.question_budget, s.question_refill), (20, Duration::from_secs(3)));
    }

    #[test]
    fn unknown_file_key_is_an_error() {
        assert!(toml::from_str::<FileSettings>("modle = \"x\"").is_err());
    }

    #[test]
    fn shipped_settings_file_parses() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Leptos.toml"))
            .unwrap();
        let file: FileSettings = toml::from_str(&text).unwrap();
        Settings::resolve(Cli::default(), file).validate().unwrap();
    }

    #[test]
    fn ping_must_be_shorter_than_idle_timeout() {
        let mut s = Settings::default();
        s.ping_interval = Duration::from_secs(60);
        assert!(s.validate().is_err());
    }
}
