//! The hourly cleanup: expired sessions and idle guests go (with everything a guest
//! wrote), and the sockets still open for them are told.

use crate::helpers::*;
use crate::sessions::{expect_session_ended_and_closed, expire_session, pool, token_of};

#[tokio::test]
async fn the_cleanup_deletes_expired_sessions_and_idle_guests_only() {
    let app = spawn_app().await;
    let db = &app.state.db;
    // Two idle guests with conversations, an active guest, an account with an expired
    // session.
    let mut idle = app.student().await;
    ask_in(&mut idle.ws, "[tokens=2] long ago", None).await;
    let mut also_idle = app.student().await;
    ask_in(&mut also_idle.ws, "[tokens=2] also long ago", None).await;
    let mut active = app.student().await;
    let kept = ask_in(&mut active.ws, "[tokens=2] recently", None).await;
    let account_cookie = app.signed_up("hal", "hal's password").await;
    expire_session(&app, &account_cookie).await;

    // Ninety-one days later (the default is 90 idle days) for the idle guest only.
    let idle_user = db.find_user(token_of(&idle.cookie)).await.unwrap().unwrap();
    let also_idle_user = db.find_user(token_of(&also_idle.cookie)).await.unwrap().unwrap();
    let long_ago = now_ms() - 91 * 86_400_000;
    let pool = pool(&app).await;
    for user in [&idle_user, &also_idle_user] {
        sqlx::query("UPDATE users SET created_at = $1 WHERE id = $2").bind(long_ago).bind(user).execute(&pool).await.unwrap();
        sqlx::query("UPDATE conversations SET updated_at = $1 WHERE user_id = $2").bind(long_ago).bind(user).execute(&pool).await.unwrap();
    }

    let gone = delete_stale(&app).await.unwrap();
    assert_eq!((gone.sessions, gone.guests), (1, 2));
    for (student, user) in [(&idle, &idle_user), (&also_idle, &also_idle_user)] {
        assert_eq!(db.find_user(token_of(&student.cookie)).await.unwrap(), None);
        assert!(app.list(&student.cookie).await.items.is_empty());
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE id = $1").bind(user).fetch_one(&pool).await.unwrap();
        assert_eq!(left, 0, "the idle guest's user row went with its session");
    }
    let messages: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages").fetch_one(&pool).await.unwrap();
    assert_eq!(messages, 2, "only the active guest's question and answer are left");
    assert_eq!(app.list(&active.cookie).await.items[0].id, kept.conversation_id);
    assert!(db.account_by_name("hal").await.unwrap().is_some(), "accounts stay; only their session went");
    // Nothing else is stale.
    assert_eq!(delete_stale(&app).await.unwrap().guests, 0);
}

/// One cleanup pass with the default 90 idle days, as of now.
async fn delete_stale(app: &TestApp) -> Result<StaleGone, String> {
    let mut gone = StaleGone::default();
    app.state.db.delete_stale_sessions(now_ms(), 90, &mut gone).await.map_err(|e| e.to_string())?;
    Ok(gone)
}

#[tokio::test]
async fn the_cleanup_ends_the_open_sockets_of_the_sessions_it_deletes() {
    let app = spawn_app().await;
    // A guest's tab left open for the idle days, here and on another instance; a
    // signed-in tab whose session expired; an active guest's tab.
    let mut idle = app.student().await;
    ask_in(&mut idle.ws, "[tokens=2] long ago", None).await;
    let database_url = app.state.settings.database_url.clone();
    let other = spawn_app_with(|s| s.database_url = database_url).await;
    let mut idle_elsewhere = other.socket(&idle.cookie).await;
    let account_cookie = app.signed_up("iris", "iris's password").await;
    let mut expired_tab = app.socket(&account_cookie).await;
    expire_session(&app, &account_cookie).await;
    let mut active = app.student().await;
    ask_in(&mut active.ws, "[tokens=2] recently", None).await;
    let idle_user = app.state.db.find_user(token_of(&idle.cookie)).await.unwrap().unwrap();
    let long_ago = now_ms() - 91 * 86_400_000;
    let pool = pool(&app).await;
    sqlx::query("UPDATE users SET created_at = $1 WHERE id = $2").bind(long_ago).bind(&idle_user).execute(&pool).await.unwrap();
    sqlx::query("UPDATE conversations SET updated_at = $1 WHERE user_id = $2").bind(long_ago).bind(&idle_user).execute(&pool).await.unwrap();

    app.state.clean_up_stale().await;

    // Told and closed without asking anything first: the other instance's through the bus.
    for socket in [&mut idle.ws, &mut idle_elsewhere, &mut expired_tab] {
        expect_session_ended_and_closed(socket).await;
    }
    assert_eq!(app.state.db.find_user(token_of(&idle.cookie)).await.unwrap(), None, "the guest is gone");
    let asked = ask_in(&mut active.ws, "[tokens=2] still here", None).await;
    assert_eq!(asked.error, None, "the active guest's tab goes on");
}

/// A cleanup deletes idle guests 200 to a transaction. When a later transaction
/// fails, the guests the earlier ones deleted stay deleted and their open tabs are
/// still told; the one that could not go is tried again at the next pass.
#[tokio::test]
async fn a_failed_cleanup_batch_still_ends_the_sockets_of_the_batches_before_it() {
    let app = spawn_app().await;
    let mut idle = app.student().await;
    ask_in(&mut idle.ws, "[tokens=2] long ago", None).await;
    let idle_user = app.state.db.find_user(token_of(&idle.cookie)).await.unwrap().unwrap();
    let pool = pool(&app).await;
    let long_ago = now_ms() - 200 * 86_400_000;
    sqlx::query("UPDATE users SET created_at = $1 WHERE id = $2").bind(long_ago).bind(&idle_user).execute(&pool).await.unwrap();
    sqlx::query("UPDATE conversations SET updated_at = $1 WHERE user_id = $2").bind(long_ago).bind(&idle_user).execute(&pool).await.unwrap();
    // 199 idle guests newer than that one (the first transaction's 200, oldest first),
    // then the newest, whose deletion the database refuses.
    for i in 1..=200 {
        let user = if i == 200 { "refused-guest".to_string() } else { format!("idle-guest-{i}") };
        sqlx::query("INSERT INTO users (id, created_at) VALUES ($1, $2)")
            .bind(&user)
            .bind(long_ago + i * 1000)
            .execute(&pool)
            .await
            .unwrap();
    }
    let refusing = if app.state.settings.database_url.as_deref().unwrap().starts_with("sqlite:") {
        vec![
            "CREATE TRIGGER refuse_delete BEFORE DELETE ON users WHEN OLD.id = 'refused-guest' \
             BEGIN SELECT RAISE(ABORT, 'this guest stays'); END",
        ]
    } else {
        vec![
            "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'this guest stays'; END $$",
            "CREATE TRIGGER refuse_delete BEFORE DELETE ON users FOR EACH ROW \
             WHEN (OLD.id = 'refused-guest') EXECUTE FUNCTION refuse_delete()",
        ]
    };
    for statement in refusing {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }

    app.state.clean_up_stale().await;

    expect_session_ended_and_closed(&mut idle.ws).await;
    let left: Vec<String> = sqlx::query_scalar("SELECT id FROM users").fetch_all(&pool).await.unwrap();
    assert_eq!(left, vec!["refused-guest".to_string()], "the first transaction's guests are gone");
}
