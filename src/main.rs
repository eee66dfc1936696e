//! The Tutor Chat server binary.

#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let settings = match tutor_chat::settings::Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("tutor-chat: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match tutor_chat::server::run(settings).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tutor-chat: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "ssr"))]
fn main() {
    // The browser build has no server binary; `cargo leptos` builds with `ssr`.
}
