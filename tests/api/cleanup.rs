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

    let gone = db.delete_stale_sessions(now_ms(), 90).await.unwrap();
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
    assert_eq!(db.delete_stale_sessions(now_ms(), 90).await.unwrap().guests, 0);
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
