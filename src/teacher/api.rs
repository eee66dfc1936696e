//! The teacher's server functions. Each one starts by checking the role, and refuses
//! anyone else with `not_found` — what a student gets for anything that is not theirs.

use leptos::prelude::*;

use super::Overview;
use crate::error::AppError;

#[cfg(feature = "ssr")]
pub mod ssr {
    use crate::error::AppError;
    use crate::protocol::ErrorCode;
    use crate::state::AppState;

    /// The state, if the caller is a teacher; `not_found` for everyone else.
    pub async fn require_teacher() -> Result<AppState, AppError> {
        let state = crate::state::app_state()?;
        crate::auth::check_same_origin()?;
        let not_found = || AppError::new(ErrorCode::NotFound, "Not found.");
        let session = crate::auth::current_session().ok_or_else(not_found)?;
        let user = state.db.find_user(&session.0).await?.ok_or_else(not_found)?;
        if state.db.is_teacher(&user).await? {
            Ok(state)
        } else {
            Err(not_found())
        }
    }
}

/// Questions and active students per day over the last `days` days.
#[server(endpoint = "teach/overview")]
pub async fn teach_overview(days: u32) -> Result<Overview, AppError> {
    use super::{date_of_day, DayCount, MAX_DAYS};
    const DAY_MS: i64 = 86_400_000;
    let state = ssr::require_teacher().await?;
    let days = days.clamp(1, MAX_DAYS);
    let today = crate::db::now_ms() / DAY_MS;
    let since = (today - i64::from(days) + 1) * DAY_MS;
    let (per_day, questions, students) = state.db.questions_per_day(since).await?;
    Ok(Overview {
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
