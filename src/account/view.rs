//! The sign-up and sign-in pages, and the account line in the sidebar. The forms are
//! ActionForms: with JavaScript they call the server functions; without, they post
//! to the same URLs as plain forms and the server redirects to the chat.

use leptos::prelude::*;

use super::{
    who_am_i, SignIn, SignOut, SignUp, MAX_PASSWORD_CHARS, MAX_USERNAME_CHARS, MIN_PASSWORD_CHARS,
    MIN_USERNAME_CHARS,
};
use crate::error::AppError;
use crate::i18n::Lang;
use crate::platform;

/// After a change of identity the page starts over, so that the socket, the sidebar
/// and the conversation all belong to the new session.
fn reload_on_success(done: impl Get<Value = Option<Result<(), AppError>>> + Send + Sync + 'static) {
    Effect::new(move |_| {
        if matches!(done.get(), Some(Ok(()))) {
            // A question still waiting for its answer was the old identity's.
            platform::keep_unsent_ask(None);
            platform::load_page("/");
        }
    });
}

fn error_line(value: impl Get<Value = Option<Result<(), AppError>>> + Send + Sync + Copy + 'static) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    move || {
        value.get().and_then(Result::err).map(|e| {
            view! { <p class="form-error" role="alert">{e.text(lang.get())}</p> }
        })
    }
}

#[component]
pub fn SignUpPage() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let action = ServerAction::<SignUp>::new();
    reload_on_success(action.value());
    view! {
        <div class="lesson-page account-page">
            <nav class="lesson-nav"><a href="/">{move || t().back_to_chat}</a></nav>
            <h1>{move || t().sign_up}</h1>
            <p class="account-hint">{move || t().sign_up_hint}</p>
            <ActionForm action=action attr:class="account-form">
                <label>{move || t().username}
                    <input type="text" name="username" autocomplete="username" required minlength=MIN_USERNAME_CHARS.to_string() maxlength=MAX_USERNAME_CHARS.to_string() />
                </label>
                <label>{move || t().password}
                    <input type="password" name="password" autocomplete="new-password" required minlength=MIN_PASSWORD_CHARS.to_string() maxlength=MAX_PASSWORD_CHARS.to_string() />
                </label>
                <button type="submit" class="send" disabled=move || action.pending().get()>{move || t().sign_up}</button>
            </ActionForm>
            {error_line(action.value())}
            <p class="account-switch"><a href="/signin">{move || t().have_account}</a></p>
        </div>
    }
}

#[component]
pub fn SignInPage() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let action = ServerAction::<SignIn>::new();
    reload_on_success(action.value());
    view! {
        <div class="lesson-page account-page">
            <nav class="lesson-nav"><a href="/">{move || t().back_to_chat}</a></nav>
            <h1>{move || t().sign_in}</h1>
            <ActionForm action=action attr:class="account-form">
                <label>{move || t().username}
                    <input type="text" name="username" autocomplete="username" required />
                </label>
                <label>{move || t().password}
                    <input type="password" name="password" autocomplete="current-password" required />
                </label>
                <button type="submit" class="send" disabled=move || action.pending().get()>{move || t().sign_in}</button>
            </ActionForm>
            {error_line(action.value())}
            <p class="account-switch"><a href="/signup">{move || t().no_account}</a></p>
        </div>
    }
}

/// Who is signed in, with sign-out; or the way to sign in.
#[component]
pub fn AccountBox() -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    // Read again when the browser signs in in another tab (the chat's socket hears it).
    let account_version = use_context::<crate::page::PageState>().map(|page| page.account_version);
    let me = Resource::new(move || account_version.map(|v| v.get()), |_| who_am_i());
    let sign_out = ServerAction::<SignOut>::new();
    reload_on_success(sign_out.value());
    view! {
        <div class="account-box">
            <Suspense>
                {move || Suspend::new(async move {
                    match me.await.ok().flatten() {
                        Some(name) => view! {
                            <span class="account-name" title=move || t().signed_in_as>{name}</span>
                            <ActionForm action=sign_out attr:class="sign-out-form">
                                <button type="submit" class="sign-out">{move || t().sign_out}</button>
                            </ActionForm>
                        }
                        .into_any(),
                        None => view! {
                            <a href="/signin" class="sign-in-link">{move || t().sign_in}</a>
                            " · "
                            <a href="/signup" class="sign-up-link">{move || t().sign_up}</a>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}
