//! The server allocates with jemalloc on Linux, set up as `src/lib.rs` says. A misspelt
//! settings symbol would be ignored without a word, and the allocator dropped from the
//! build would only show in the benchmarks: the server binary is asked instead (this
//! test build's; a release build links the same way).
#![cfg(target_os = "linux")]

use std::process::Command;

/// jemalloc's `confirm_conf` prints, as it starts, each source of settings it read and
/// each value it set; `--help` ends the process right after.
fn jemalloc_start_report(extra_conf: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tutor-chat"))
        .arg("--help")
        .env("_RJEM_MALLOC_CONF", format!("confirm_conf:true{extra_conf}"))
        .output()
        .expect("run the server binary");
    assert!(output.status.success(), "--help failed: {output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_server_starts_jemalloc_with_an_arena_per_cpu_and_a_background_purger() {
    let report = jemalloc_start_report("");
    let compiled_in = report
        .lines()
        .find(|line| line.contains("global variable malloc_conf)"))
        .unwrap_or_else(|| panic!("jemalloc did not report its settings; is it the allocator?\n{report}"));
    assert!(
        compiled_in.contains("\"percpu_arena:percpu,background_thread:true\""),
        "the binary's settings: {compiled_in}"
    );
    assert!(report.contains("Set conf value: percpu_arena:percpu"), "{report}");
    assert!(report.contains("Set conf value: background_thread:true"), "{report}");
}

#[test]
fn an_operator_overrides_the_settings_from_the_environment() {
    let report = jemalloc_start_report(",background_thread:false");
    let set: Vec<&str> = report.lines().filter(|line| line.contains("Set conf value: background_thread:")).collect();
    // The binary's value first, the environment's after it: the last one read wins.
    assert_eq!(
        set.last().map(|line| line.trim_end().ends_with("background_thread:false")),
        Some(true),
        "{report}"
    );
}
