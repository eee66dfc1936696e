//! `fake-upstream`: an OpenAI-compatible test server (development tool).
//! Run the app against it with no key:
//!   cargo run --features ssr --bin fake-upstream -- --port 3900
//!   OPENAI_BASE_URL=http://127.0.0.1:3900/v1 cargo leptos watch

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tutor_chat::upstream::fake::{FakeConfig, FakeUpstream};

#[derive(Parser)]
#[command(about = "OpenAI-compatible test server streaming the exact SSE wire format")]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    #[arg(long, default_value_t = 3900)]
    port: u16,
    /// Tokens per answer (a `[tokens=N]` directive in the question overrides it).
    #[arg(long, default_value_t = 24)]
    tokens: usize,
    /// Milliseconds between tokens (`[delay=MS]` overrides it).
    #[arg(long, default_value_t = 40)]
    delay_ms: u64,
    /// Answer 401 unless requests carry `Authorization: Bearer <KEY>`.
    #[arg(long)]
    require_key: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let fake = FakeUpstream::new(FakeConfig {
        tokens: args.tokens,
        delay: Duration::from_millis(args.delay_ms),
        require_key: args.require_key,
        ..FakeConfig::default()
    });
    match fake.spawn(SocketAddr::new(args.host, args.port)).await {
        Ok(addr) => {
            println!("fake upstream listening on http://{addr}/v1");
            let _ = tokio::signal::ctrl_c().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fake-upstream: cannot listen on {}:{}: {e}", args.host, args.port);
            std::process::ExitCode::FAILURE
        }
    }
}
