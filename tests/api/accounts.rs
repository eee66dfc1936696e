//! Accounts (issue #4): sign-up keeps the guest's conversations, sign-in from another
//! browser, sign-out, throttled wrong passwords, refused input and origins, sessions
//! that expire unused and slide while used.

use crate::helpers::*;

#[tokio::test]
async fn sign_up_keeps_the_guests_conversations_and_sign_in_works_from_another_browser() {
    let app = spawn_app().await;
    let mut guest = app.student().await;
    let asked = ask_in(&mut guest.ws, "[tokens=2] asked as a guest", None).await;
    assert_eq!(app.whoami(&guest.cookie).await, None);

    let (status, account_cookie, _) = app
        .account_form(&guest.cookie, "signup", &[("username", "Anna_K"), ("password", "correct horse battery")])
        .await;
    assert!((300..400).contains(&status), "a plain form is redirected to the chat: {status}");
    let account_cookie = account_cookie.expect("a new session cookie");
    assert_ne!(account_cookie, guest.cookie, "the session is replaced at sign-up");
    assert!(account_cookie.len() > "tutor_session=".len() + 32);
    assert_eq!(app.whoami(&account_cookie).await.as_deref(), Some("Anna_K"));
    // The guest's conversation is the account's now; the old cookie names no one.
    assert_eq!(app.list(&account_cookie).await.items[0].id, asked.conversation_id);
    assert!(app.list(&guest.cookie).await.items.is_empty());

    // The password is stored as an argon2id hash, never as itself.
    let (hash,): (String,) = {
        let db = &app.state.db;
        let (_, hash) = db.account_by_name("anna_k").await.unwrap().unwrap();
        (hash,)
    };
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));

    // Names are unique whatever their case.
    let other = app.session_cookie().await;
    let (_, body) = app
        .call(&other, "account/signup", &[("username", "anna_k"), ("password", "another password")])
        .await;
    assert!(body.contains("That username is taken."), "{body}");

    // Another browser signs in and sees the conversation; its own guest chat comes along.
    let mut second = app.student().await;
    let second_guest = ask_in(&mut second.ws, "[tokens=2] asked in the second browser", None).await;
    let (status, signed_in, _) = app
        .account_form(&second.cookie, "signin", &[("username", "ANNA_K"), ("password", "correct horse battery")])
        .await;
    assert!((300..400).contains(&status));
    let signed_in = signed_in.expect("a new session cookie");
    let ids: Vec<String> = app.list(&signed_in).await.items.into_iter().map(|c| c.id).collect();
    assert!(ids.contains(&asked.conversation_id) && ids.contains(&second_guest.conversation_id), "{ids:?}");

    // Sign-out ends the session on the server: the cookie is worth nothing after.
    let (status, fresh, _) = app.account_form(&signed_in, "signout", &[]).await;
    assert!((300..400).contains(&status));
    assert!(fresh.is_some_and(|f| f != signed_in), "a fresh guest cookie");
    assert_eq!(app.whoami(&signed_in).await, None);
    assert!(app.list(&signed_in).await.items.is_empty());
    // The first browser is still signed in.
    assert_eq!(app.whoami(&account_cookie).await.as_deref(), Some("Anna_K"));
}

#[tokio::test]
async fn wrong_passwords_are_throttled_per_username() {
    let app = spawn_app().await;
    let cookie = app.session_cookie().await;
    let (_, account, _) = app
        .account_form(&cookie, "signup", &[("username", "bob"), ("password", "bob's long password")])
        .await;
    assert!(account.is_some());
    for _ in 0..5 {
        let (status, cookie_set, body) = app
            .account_form(&app.session_cookie().await, "signin", &[("username", "bob"), ("password", "wrong password")])
            .await;
        assert!(cookie_set.is_none(), "{status} {body}");
    }
    // Now even the right password is refused for a while, and says why.
    let browser = app.session_cookie().await;
    let (status, cookie_set, _) = app
        .account_form(&browser, "signin", &[("username", "bob"), ("password", "bob's long password")])
        .await;
    assert!(cookie_set.is_none(), "throttled: {status}");
    let (_, body) = app
        .call(&browser, "account/signin", &[("username", "bob"), ("password", "bob's long password")])
        .await;
    assert!(body.contains("Too many failed sign-ins"), "{body}");
    // Another name is not throttled by bob's failures.
    let (_, other, _) = app
        .account_form(&app.session_cookie().await, "signup", &[("username", "carol"), ("password", "carol's password")])
        .await;
    assert!(other.is_some());
}

#[tokio::test]
async fn account_forms_refuse_bad_input_and_foreign_origins() {
    let app = spawn_app().await;
    let cookie = app.session_cookie().await;
    let (_, body) = app.call(&cookie, "account/signup", &[("username", "ab"), ("password", "long enough pw")]).await;
    assert!(body.contains("3 to 32"), "{body}");
    let (_, body) = app.call(&cookie, "account/signup", &[("username", "dave"), ("password", "short")]).await;
    assert!(body.contains("8 to 128"), "{body}");
    let (_, body) = app
        .call_from(&cookie, "account/signup", &[("username", "eve"), ("password", "long enough pw")], "http://evil.example")
        .await;
    assert!(body.contains("other sites"), "{body}");
    let (_, body) = app
        .call_from(&cookie, "account/signout", &[], "http://evil.example")
        .await;
    assert!(body.contains("other sites"), "{body}");
    assert!(app.state.db.account_by_name("eve").await.unwrap().is_none());
}

#[tokio::test]
async fn account_sessions_expire_when_unused_and_slide_while_used() {
    let app = spawn_app().await;
    let guest = app.session_cookie().await;
    let (_, cookie, _) = app
        .account_form(&guest, "signup", &[("username", "frank"), ("password", "frank's password")])
        .await;
    let cookie = cookie.unwrap();
    let token = cookie.trim_start_matches("tutor_session=").to_string();
    sqlx::any::install_default_drivers();
    let url = app.state.settings.database_url.clone().unwrap();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let set_expiry = |at: i64| {
        let pool = pool.clone();
        let hash = hash_token(&token);
        async move {
            sqlx::query("UPDATE sessions SET expires_at = $1 WHERE token_hash = $2")
                .bind(at)
                .bind(hash)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    let expiry = || {
        let pool = pool.clone();
        let hash = hash_token(&token);
        async move {
            use sqlx::Row;
            sqlx::query("SELECT expires_at FROM sessions WHERE token_hash = $1")
                .bind(hash)
                .fetch_one(&pool)
                .await
                .unwrap()
                .get::<i64, _>(0)
        }
    };
    // Used with a day left: renewed to a full period.
    set_expiry(now_ms() + 86_400_000).await;
    assert_eq!(app.whoami(&cookie).await.as_deref(), Some("frank"));
    assert!(expiry().await > now_ms() + ACCOUNT_SESSION_MS - 60_000, "the expiry slid forward");
    // Unused past its expiry: no longer signed in.
    set_expiry(now_ms() - 1).await;
    assert_eq!(app.whoami(&cookie).await, None);
    assert!(app.list(&cookie).await.items.is_empty());
}
