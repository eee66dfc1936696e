//! The Tutor Chat server binary. `tutor-chat` serves the app;
//! `tutor-chat index` brings the lesson index in step with the lessons folder;
//! `tutor-chat teacher add|promote|remove NAME` gives the course its teacher;
//! `tutor-chat fake-upstream` serves the OpenAI-compatible test server (a dev tool).

#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use clap::Parser;
    use std::process::ExitCode;
    use tutor_chat::settings::LogFormat;

    let mut args = std::env::args();
    let command = args.nth(1);
    // The server logs in the format its settings ask for (read below); the tools, as text.
    let serving = !matches!(command.as_deref(), Some("fake-upstream" | "teacher" | "index"));
    if !serving {
        init_logging(LogFormat::Text);
    }

    if command.as_deref() == Some("fake-upstream") {
        let fake_args = tutor_chat::upstream::fake::FakeArgs::parse_from(
            std::iter::once("tutor-chat fake-upstream".to_string()).chain(std::env::args().skip(2)),
        );
        return match tutor_chat::upstream::fake::serve_until_stopped(fake_args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("tutor-chat fake-upstream: {error}");
                ExitCode::FAILURE
            }
        };
    }

    if std::env::args().nth(1).as_deref() == Some("teacher") {
        // `teacher [FLAGS] add|promote|remove NAME`: the flags are the server's (--config,
        // --database-url, --data-dir), so the account lands where the server looks.
        let args: Vec<String> = std::env::args().skip(2).collect();
        let split = args.iter().position(|a| ["add", "promote", "remove"].contains(&a.as_str())).unwrap_or(args.len());
        let (flags, rest) = args.split_at(split);
        let cli = match tutor_chat::settings::Cli::try_parse_from(
            std::iter::once("tutor-chat teacher".to_string()).chain(flags.iter().cloned()),
        ) {
            Ok(cli) => cli,
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::from(2);
            }
        };
        let settings = match tutor_chat::settings::Settings::load_from(cli) {
            Ok(settings) => settings,
            Err(error) => {
                eprintln!("tutor-chat teacher: {error}");
                return ExitCode::FAILURE;
            }
        };
        return tutor_chat::teacher::command::run_teacher_command(&settings, rest).await;
    }

    if std::env::args().nth(1).as_deref() == Some("index") {
        let cli = tutor_chat::settings::Cli::parse_from(
            std::iter::once("tutor-chat index".to_string()).chain(std::env::args().skip(2)),
        );
        return match tutor_chat::settings::Settings::load_from(cli) {
            Ok(settings) => tutor_chat::lessons::command::run_index_command(&settings),
            Err(error) => {
                eprintln!("tutor-chat index: {error}");
                ExitCode::FAILURE
            }
        };
    }

    let settings = match tutor_chat::settings::Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("tutor-chat: {error}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(settings.log_format);
    match tutor_chat::server::run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tutor-chat: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines to stdout, filtered by `RUST_LOG` (default `info`): text, or one JSON
/// object a line (`log_format = "json"`) with the span's fields, for log collectors.
#[cfg(feature = "ssr")]
fn init_logging(format: tutor_chat::settings::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        tutor_chat::settings::LogFormat::Text => logs.init(),
        tutor_chat::settings::LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
}

#[cfg(not(feature = "ssr"))]
fn main() {
    // The browser build has no server binary; `cargo leptos` builds with `ssr`.
}
