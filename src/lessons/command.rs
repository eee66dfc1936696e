//! `tutor-chat index`: the lesson index brought in step with the lessons folder from
//! the command line, printing each step (a teacher sees what was indexed, skipped or
//! removed).

use super::index::{LessonIndex, SyncEvent};

/// `tutor-chat index`: syncs the index with the lessons folder, printing each step.
/// Files that are not lessons are reported and skipped (exit code 0); only an index
/// that cannot be written fails the command.
pub fn run_index_command(settings: &crate::settings::Settings) -> std::process::ExitCode {
    let index_dir = settings.data_dir.join("lesson-index");
    let started = std::time::Instant::now();
    println!(
        "indexing {} into {}",
        settings.lessons_dir.display(),
        index_dir.display()
    );
    let result = LessonIndex::open(&index_dir).and_then(|index| {
        let report = index.sync(&settings.lessons_dir, &mut |event| match event {
            SyncEvent::Indexed { file, sections, done, total } => {
                println!("[{done}/{total}] {file}: {sections} sections")
            }
            SyncEvent::Skipped { file, reason } => println!("skipped {file}: {reason}"),
            SyncEvent::Removed { file } => println!("removed {file}"),
        })?;
        Ok((report, index.sections()))
    });
    match result {
        Ok((report, sections)) => {
            println!(
                "done in {:.2} s: {} re-indexed, {} unchanged, {} removed, {} skipped; {} sections in the index",
                started.elapsed().as_secs_f64(),
                report.indexed.len(),
                report.unchanged,
                report.removed.len(),
                report.skipped.len(),
                sections
            );
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tutor-chat index: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
