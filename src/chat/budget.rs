//! The question budget (issue #14): a token bucket per student, kept in the database so
//! it holds across tabs, reconnects and instances. A student may ask `capacity`
//! questions at once; one comes back every `refill_ms`.
//!
//! The bucket is one number per user, `users.questions_full_at`: the moment the bucket
//! is full again (the "theoretical arrival time" of GCRA). Its debt `full_at - now`
//! says everything: the questions used are `ceil(debt / refill)`, the next one comes
//! back in `debt - (used - 1) × refill`. Taking a question adds `refill` to the debt.
//! Integers only, no tokens to round, no timer: the level at any moment is computed
//! from that one column and the clock, and the page gets "remaining, and milliseconds
//! to the next" so its countdown never compares its clock with the server's.

use sqlx::Row;

use crate::db::{Backend, Db, StoreError};
use crate::protocol::ServerFrame;

/// The budget's shape, from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuestionBudget {
    /// Questions at once; 0: no budget (every question is allowed, no meter).
    pub capacity: u32,
    /// Milliseconds for one question to come back (at least 1).
    pub refill_ms: i64,
}

/// A student's budget at one moment: what the `budget` frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLevel {
    pub remaining: u32,
    pub capacity: u32,
    pub refill_ms: i64,
    /// Milliseconds until one more question comes back; 0 when the budget is full.
    pub next_refill_ms: i64,
}

impl BudgetLevel {
    pub fn frame(&self) -> ServerFrame {
        ServerFrame::Budget {
            remaining: self.remaining,
            capacity: self.capacity,
            refill_ms: self.refill_ms.max(0) as u64,
            next_refill_ms: self.next_refill_ms.max(0) as u64,
        }
    }

    /// Whole seconds until asking works again, for `retry_after` (at least 1).
    pub fn retry_after(&self) -> u64 {
        ceil_div(self.next_refill_ms.max(1), 1000) as u64
    }
}

impl QuestionBudget {
    pub fn is_off(&self) -> bool {
        self.capacity == 0
    }

    fn refill(&self) -> i64 {
        self.refill_ms.max(1)
    }

    /// The level of a bucket that is full at `full_at`, seen at `now`.
    pub fn level(&self, full_at: i64, now: i64) -> BudgetLevel {
        let debt = (full_at - now).max(0);
        let capacity = i64::from(self.capacity);
        // More than the capacity in debt only after the capacity was lowered: then the
        // next question is the one that brings the debt under it.
        let used = ceil_div(debt, self.refill()).min(capacity);
        let next_refill_ms = if debt == 0 { 0 } else { debt - (used - 1).max(0) * self.refill() };
        BudgetLevel {
            remaining: self.capacity - used as u32,
            capacity: self.capacity,
            refill_ms: self.refill(),
            next_refill_ms,
        }
    }

    /// Takes one question at `now`: the new `full_at` and the level after it, or the
    /// level that refuses it (nothing left).
    pub fn take(&self, full_at: i64, now: i64) -> Result<(i64, BudgetLevel), BudgetLevel> {
        let before = self.level(full_at, now);
        if before.remaining == 0 {
            return Err(before);
        }
        let full_at = full_at.max(now) + self.refill();
        Ok((full_at, self.level(full_at, now)))
    }
}

/// `a / b` rounded up, for `a >= 0` and `b > 0`.
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

impl Db {
    /// Takes one question from the user's budget inside the question's write
    /// transaction, so a refused question stores nothing. On PostgreSQL the user's row
    /// is locked first, so two instances cannot both grant the last question (SQLite's
    /// write transactions are serialised already).
    pub(crate) async fn take_question(
        &self,
        tx: &mut sqlx::AnyConnection,
        user_id: &str,
        budget: QuestionBudget,
        now: i64,
    ) -> Result<Result<BudgetLevel, BudgetLevel>, StoreError> {
        let lock = if self.backend == Backend::Postgres { " FOR UPDATE" } else { "" };
        let full_at: i64 = sqlx::query(&format!("SELECT questions_full_at FROM users WHERE id = $1{lock}"))
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?
            .unwrap_or(0);
        match budget.take(full_at, now) {
            Ok((full_at, level)) => {
                sqlx::query("UPDATE users SET questions_full_at = $1 WHERE id = $2")
                    .bind(full_at)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                Ok(Ok(level))
            }
            Err(level) => Ok(Err(level)),
        }
    }

    /// The user's budget now (a socket's first `budget` frame). A user not made yet
    /// (a guest before their first question) has it full.
    pub async fn question_level(&self, user_id: Option<&str>, budget: QuestionBudget, now: i64) -> Result<BudgetLevel, StoreError> {
        let Some(user_id) = user_id else {
            return Ok(budget.level(0, now));
        };
        let full_at: i64 = sqlx::query("SELECT questions_full_at FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?
            .unwrap_or(0);
        Ok(budget.level(full_at, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_EVERY_SIX: QuestionBudget = QuestionBudget { capacity: 10, refill_ms: 6_000 };

    #[test]
    fn a_full_budget_gives_a_burst_then_one_question_per_refill() {
        let budget = TEN_EVERY_SIX;
        let now = 1_000_000;
        let mut full_at = 0;
        assert_eq!(budget.level(full_at, now).remaining, 10);
        for left in (0..10).rev() {
            let (next, level) = budget.take(full_at, now).unwrap();
            full_at = next;
            assert_eq!(level.remaining, left);
            assert_eq!(level.next_refill_ms, 6_000, "the first question back comes a refill after the first taken");
        }
        let refused = budget.take(full_at, now).unwrap_err();
        assert_eq!((refused.remaining, refused.next_refill_ms, refused.retry_after()), (0, 6_000, 6));
        // 2.5 s later: still nothing, 3.5 s to wait.
        let later = budget.take(full_at, now + 2_500).unwrap_err();
        assert_eq!((later.next_refill_ms, later.retry_after()), (3_500, 4));
        // At 6 s one is back, and taking it leaves none with a full refill to wait.
        let (full_at, level) = budget.take(full_at, now + 6_000).unwrap();
        assert_eq!((level.remaining, level.next_refill_ms), (0, 6_000));
        // Long idle: full again, never more than the capacity.
        let idle = budget.level(full_at, now + 3_600_000);
        assert_eq!((idle.remaining, idle.next_refill_ms), (10, 0));
        // A capacity lowered under a student's debt: nothing left until the debt is
        // under the new capacity.
        let lowered = QuestionBudget { capacity: 2, refill_ms: 6_000 };
        let level = lowered.level(now + 60_000, now);
        assert_eq!((level.remaining, level.next_refill_ms), (0, 54_000));
    }

    #[test]
    fn the_level_between_refills_counts_down_to_the_next_question() {
        let budget = QuestionBudget { capacity: 3, refill_ms: 1_000 };
        // Two taken at 0: full again at 2000.
        let level = budget.level(2_000, 0);
        assert_eq!((level.remaining, level.next_refill_ms), (1, 1_000));
        let level = budget.level(2_000, 400);
        assert_eq!((level.remaining, level.next_refill_ms), (1, 600));
        let level = budget.level(2_000, 1_000);
        assert_eq!((level.remaining, level.next_refill_ms), (2, 1_000));
        let level = budget.level(2_000, 1_999);
        assert_eq!((level.remaining, level.next_refill_ms), (2, 1));
        let level = budget.level(2_000, 2_000);
        assert_eq!((level.remaining, level.next_refill_ms), (3, 0));
    }
}
