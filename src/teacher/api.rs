//! The teacher's server functions. Each one starts by checking the role, and refuses
//! anyone else with `not_found` — what a student gets for anything that is not theirs.

use leptos::prelude::*;

use super::dashboard::Dashboard;
use super::{Instructions, Overview};
use crate::error::AppError;

#[cfg(feature = "ssr")]
pub mod ssr {
    use crate::error::AppError;
    use crate::protocol::ErrorCode;
    use crate::state::AppState;

    /// The teacher calling, with the state.
    pub struct Teacher {
        pub state: AppState,
        pub username: String,
    }

    /// The caller, if a teacher; `not_found` for everyone else.
    pub async fn require_teacher() -> Result<Teacher, AppError> {
        let state = crate::state::app_state()?;
        crate::auth::check_same_origin()?;
        let not_found = || AppError::new(ErrorCode::NotFound, "Not found.");
        // Looked up once per request: a teacher's page calls several of these.
        let user = crate::auth::session_user(&state.db).await?.ok_or_else(not_found)?;
        let username = state.db.username_of(&user).await?.ok_or_else(not_found)?;
        if state.db.is_teacher(&user).await? {
            Ok(Teacher { state, username })
        } else {
            Err(not_found())
        }
    }
}

/// Questions and active students per day over the last `days` days.
#[server(endpoint = "teach/overview")]
pub async fn teach_overview(days: u32) -> Result<Overview, AppError> {
    use super::{date_of_day, DayCount, MAX_DAYS};
    use crate::db::DAY_MS;
    let state = ssr::require_teacher().await?.state;
    let days = days.clamp(1, MAX_DAYS);
    let today = crate::db::now_ms() / DAY_MS;
    let since = (today - i64::from(days) + 1) * DAY_MS;
    let (per_day, questions, students) = state.db.questions_per_day(since).await?;
    let endings = state.db.answer_endings(since).await?;
    let ratings = state.db.rating_summary(since).await?;
    Ok(Overview {
        endings,
        ratings,
        days,
        per_day: per_day
            .into_iter()
            .map(|(day, questions, students)| DayCount {
                day: date_of_day(day),
                questions,
                students,
            })
            .collect(),
        questions,
        students,
    })
}

/// The course dashboard over the last `days` UTC days (today included; clamped to
/// 1..=`MAX_DAYS`: a negative or huge count is not an error).
#[server(endpoint = "teach/dashboard")]
pub async fn teach_dashboard(days: i64) -> Result<Dashboard, AppError> {
    use super::dashboard::Prices;
    use super::dashboard_store::DashboardQuery;
    use super::MAX_DAYS;
    use crate::db::DAY_MS;
    let state = ssr::require_teacher().await?.state;
    let days = days.clamp(1, i64::from(MAX_DAYS)) as u32;
    let today = crate::db::now_ms() / DAY_MS;
    let query = DashboardQuery {
        days,
        since: (today - i64::from(days) + 1) * DAY_MS,
        read_all: state.settings.teachers_read_all_conversations,
        prices: Prices {
            prompt: state.settings.price_per_million_prompt_tokens,
            completion: state.settings.price_per_million_completion_tokens,
        },
        lessons: state.lessons.lessons().into_iter().map(|l| (l.slug, l.title)).collect(),
    };
    Ok(state.db.dashboard(query).await?)
}

/// The instructions in force and the latest changes.
#[server(endpoint = "teach/instructions")]
pub async fn teach_instructions() -> Result<Instructions, AppError> {
    const CHANGES_SHOWN: u32 = 20;
    let teacher = ssr::require_teacher().await?;
    let (current, changes) = teacher.state.db.all_instructions(CHANGES_SHOWN).await?;
    Ok(Instructions { current, changes })
}

/// Sets the course-wide instructions (`lesson` empty) or a lesson's note; an empty
/// text clears them. Takes effect for the next question.
#[server(endpoint = "teach/set_instructions")]
pub async fn set_instructions(lesson: String, text: String) -> Result<Instructions, AppError> {
    use super::{MAX_INSTRUCTIONS_CHARS, MAX_LESSON_NOTE_CHARS};
    use crate::protocol::ErrorCode;
    let teacher = ssr::require_teacher().await?;
    let lesson = lesson.trim().to_string();
    let text = text.trim().to_string();
    let limit = if lesson.is_empty() { MAX_INSTRUCTIONS_CHARS } else { MAX_LESSON_NOTE_CHARS };
    if text.chars().count() > limit {
        return Err(AppError::new(ErrorCode::InstructionsTooLong, format!("At most {limit} characters.")));
    }
    if !lesson.is_empty() && teacher.state.lessons.lesson(&lesson).is_none() {
        return Err(AppError::new(ErrorCode::NotFound, "No such lesson."));
    }
    teacher.state.db.set_instructions(&lesson, &text, &teacher.username).await?;
    tracing::info!(teacher = %teacher.username, scope = %lesson, chars = text.chars().count(), "tutor instructions changed");
    teach_instructions().await
}
