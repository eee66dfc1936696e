//! Accounts: sign up, sign in, sign out. Server functions that also work as plain
//! HTML forms with JavaScript off. Passwords are hashed with argon2id off the async
//! runtime; sessions are server-side (token hashed at rest) and replaced at every
//! sign-in, so a token known before is worth nothing after. A guest's conversations
//! become the account's.

use leptos::prelude::*;

use crate::error::AppError;

#[cfg(feature = "ssr")]
pub mod hashing;
#[cfg(feature = "ssr")]
pub mod store;
pub mod view;

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;
pub const MIN_USERNAME_CHARS: usize = 3;
pub const MAX_USERNAME_CHARS: usize = 32;

/// 3–32 letters, digits, `_`, `-` or `.`.
pub fn valid_username(name: &str) -> bool {
    let count = name.chars().count();
    (MIN_USERNAME_CHARS..=MAX_USERNAME_CHARS).contains(&count) && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(feature = "ssr")]
mod ssr {
    use axum::http::{header, HeaderValue};
    use leptos::prelude::*;

    use super::hashing::HashError;
    use super::{valid_username, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
    pub use crate::chat::limits::SessionEnd;
    use crate::error::AppError;
    use crate::protocol::ErrorCode;
    use crate::state::AppState;

    /// Sign-ins that fail this often in the window stop being tried: per name from one
    /// address (a stranger elsewhere cannot lock a student out), and per address.
    pub const FAILURES_PER_NAME: i64 = 5;
    pub const FAILURES_PER_ADDRESS: i64 = 30;
    pub const FAILURE_WINDOW_MS: i64 = 15 * 60_000;
    /// A refused hash can be tried again this soon.
    const HASH_BUSY_RETRY_S: u64 = 2;

    /// Ends the open sockets of the session `token` names, on every instance.
    pub fn end_sockets(state: &AppState, token: &str, why: SessionEnd) {
        state.bus.end_session(&crate::account::store::hash_token(token), why);
    }

    /// How the sockets of a session a sign-in (or sign-up) replaced end: a guest's
    /// move on to the account, which took its conversations; another account's start
    /// over, as after a sign-out (they show what the new account cannot open).
    pub fn replaced_end(was_an_account: bool) -> SessionEnd {
        if was_an_account {
            SessionEnd::SignedOut
        } else {
            SessionEnd::SignedIn
        }
    }

    /// A failure whose detail stays in the log.
    pub fn generic(error: impl std::fmt::Display) -> AppError {
        AppError::internal("account operation failed", error)
    }

    /// The same answer for an unknown name and a wrong password.
    pub fn wrong_credentials() -> AppError {
        AppError::code(ErrorCode::WrongCredentials)
    }

    pub fn hash_error(error: HashError) -> AppError {
        match error {
            HashError::Busy => AppError::code(ErrorCode::ServerBusy).retry_after(HASH_BUSY_RETRY_S),
            HashError::Failed(detail) => generic(detail),
        }
    }

    /// Sign-up and sign-in take names and passwords of bounded length, checked before
    /// anything is hashed or stored.
    pub fn check_credentials(username: &str, password: &str) -> Result<(), AppError> {
        if !valid_username(username) {
            return Err(AppError::code(ErrorCode::InvalidUsername));
        }
        let chars = password.chars().count();
        if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
            return Err(AppError::code(ErrorCode::InvalidPassword));
        }
        Ok(())
    }

    pub fn parts() -> Option<axum::http::request::Parts> {
        use_context::<axum::http::request::Parts>()
    }

    /// The address this request is counted under (`net::client_key`).
    pub fn client_address(state: &AppState) -> String {
        let Some(parts) = parts() else { return "unknown".into() };
        crate::net::request_client_key(&parts.extensions, &parts.headers, &state.settings.trusted_proxies)
    }

    /// Sets the new session cookie on the response, Secure when served over https.
    pub fn set_session_cookie(state: &AppState, token: &str) {
        let secure = match parts() {
            Some(parts) => crate::auth::is_secure(&parts.headers, state.settings.secure_cookies),
            None => state.settings.secure_cookies,
        };
        let cookie = crate::auth::session_cookie(token, secure);
        if let (Some(response), Ok(value)) = (
            use_context::<leptos_axum::ResponseOptions>(),
            HeaderValue::from_str(&cookie),
        ) {
            response.insert_header(header::SET_COOKIE, value);
        }
    }

    /// After sign-in/up/out: a plain form (JavaScript off) goes to the chat.
    pub fn back_to_chat() {
        leptos_axum::redirect("/");
    }
}

#[server(endpoint = "account/signup")]
pub async fn sign_up(username: String, password: String) -> Result<(), AppError> {
    use crate::protocol::ErrorCode;
    crate::auth::check_same_origin()?;
    let username = username.trim().to_string();
    ssr::check_credentials(&username, &password)?;
    let state = crate::state::app_state()?;
    let session = crate::auth::require_session()?;
    let address = ssr::client_address(&state);
    if let Some(retry_after) = state.db.take_signup(&address, state.settings.signups_per_hour_per_address).await? {
        return Err(AppError::code(ErrorCode::TooManySignUps).retry_after(retry_after));
    }
    let hash = state.password_hashing.hash(password).await.map_err(ssr::hash_error)?;
    let token = state.session_key.mint().map_err(ssr::generic)?;
    let was_an_account = match state.db.create_account(&session.0, &username, &hash, &token).await {
        Ok(was_an_account) => was_an_account,
        Err(store::AccountError::Taken) => return Err(AppError::code(ErrorCode::UsernameTaken)),
        Err(store::AccountError::Store(e)) => return Err(e.into()),
    };
    ssr::set_session_cookie(&state, &token);
    ssr::end_sockets(&state, &session.0, ssr::replaced_end(was_an_account));
    ssr::back_to_chat();
    Ok(())
}

#[server(endpoint = "account/signin")]
pub async fn sign_in(username: String, password: String) -> Result<(), AppError> {
    use crate::protocol::ErrorCode;
    crate::auth::check_same_origin()?;
    let username = username.trim().to_string();
    ssr::check_credentials(&username, &password)?;
    let state = crate::state::app_state()?;
    let key = username.to_lowercase();
    let address = ssr::client_address(&state);
    let name_key = format!("u:{key}|ip:{address}");
    let address_key = format!("ip:{address}");
    let since = crate::db::now_ms() - ssr::FAILURE_WINDOW_MS;
    let limits = (ssr::FAILURES_PER_NAME, ssr::FAILURES_PER_ADDRESS);
    let Some(attempt) = state.db.reserve_sign_in(&name_key, &address_key, since, limits).await? else {
        return Err(AppError::code(ErrorCode::TooManyAttempts));
    };
    let account = state.db.account_by_name(&key).await?;
    let (user_id, hash) = match account {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    // A refused or failed verification keeps its reservation: it counts as a failure.
    if !state.password_hashing.verify(password, hash).await.map_err(ssr::hash_error)? {
        return Err(ssr::wrong_credentials());
    }
    let user_id = user_id.ok_or_else(ssr::wrong_credentials)?;
    state.db.sign_in_succeeded(&attempt, &name_key).await?;
    let session = crate::auth::require_session()?;
    let token = state.session_key.mint().map_err(ssr::generic)?;
    let was_an_account = state.db.sign_in(&session.0, &user_id, &token).await?;
    ssr::set_session_cookie(&state, &token);
    // The browser's other tabs reconnect as the account (`session_changed`), with the
    // cookie this response sets; one that comes back sooner is sent on again.
    ssr::end_sockets(&state, &session.0, ssr::replaced_end(was_an_account));
    ssr::back_to_chat();
    Ok(())
}

#[server(endpoint = "account/signout")]
pub async fn sign_out() -> Result<(), AppError> {
    crate::auth::check_same_origin()?;
    let state = crate::state::app_state()?;
    if let Some(session) = crate::auth::current_session() {
        state.db.sign_out(&session.0).await?;
        // The session's sockets end now (`session_ended`): the browser's other tabs
        // show another student's conversations no longer.
        ssr::end_sockets(&state, &session.0, ssr::SessionEnd::SignedOut);
    }
    // A fresh guest session for this browser from now on.
    let token = state.session_key.mint().map_err(ssr::generic)?;
    ssr::set_session_cookie(&state, &token);
    ssr::back_to_chat();
    Ok(())
}

/// The signed-in account's username, `None` for a guest.
#[server(endpoint = "account/me")]
pub async fn who_am_i() -> Result<Option<String>, AppError> {
    let state = crate::state::app_state()?;
    let Some(user) = crate::auth::session_user(&state.db).await? else { return Ok(None) };
    Ok(state.db.username_of(&user).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(valid_username("anna_k"));
        assert!(valid_username("Анна.К"));
        assert!(!valid_username("ab"));
        assert!(!valid_username("has space"));
        assert!(!valid_username(&"a".repeat(33)));
        assert!(!valid_username("<script>"));
    }
}
