//! 👍 / 👎 under an answer, and on 👎 the reasons and a comment. Two small forms that
//! post to the same server function, with JavaScript or without.

use leptos::prelude::*;

use super::api::RateAnswer;
use super::{Feedback, Rating, Reason, MAX_COMMENT_CHARS};
use crate::i18n::Lang;

#[component]
pub fn FeedbackBar(message_id: String, initial: Option<Feedback>) -> impl IntoView {
    let lang = expect_context::<RwSignal<Lang>>();
    let t = move || lang.get().t();
    let action = ServerAction::<RateAnswer>::new();
    let current = RwSignal::new(initial);
    Effect::new(move |_| {
        if let Some(Ok(feedback)) = action.value().get() {
            current.set(feedback);
        }
    });
    let rating = move || current.get().map(|f| f.rating);
    let has_reason = move |reason: Reason| current.get().is_some_and(|f| f.reasons.contains(&reason));
    let reason_label = move |reason: Reason| reason.label(t());
    let id = StoredValue::new(message_id.clone());
    view! {
        <div class="feedback" data-rating=move || rating().map(Rating::as_str).unwrap_or("none")>
            <ActionForm action=action attr:class="feedback-rate">
                <input type="hidden" name="message_id" value=message_id.clone() />
                <button
                    type="submit"
                    name="rating"
                    class="rate-up"
                    value=move || if rating() == Some(Rating::Up) { "none" } else { "up" }
                    aria-pressed=move || (rating() == Some(Rating::Up)).to_string()
                    title=move || t().feedback_helpful
                    aria-label=move || t().feedback_helpful
                >
                    "👍"
                </button>
                <button
                    type="submit"
                    name="rating"
                    class="rate-down"
                    value=move || if rating() == Some(Rating::Down) { "none" } else { "down" }
                    aria-pressed=move || (rating() == Some(Rating::Down)).to_string()
                    title=move || t().feedback_not_helpful
                    aria-label=move || t().feedback_not_helpful
                >
                    "👎"
                </button>
            </ActionForm>
            <Show when=move || rating() == Some(Rating::Down)>
                <ActionForm action=action attr:class="feedback-reasons">
                    <input type="hidden" name="message_id" value=id.get_value() />
                    <input type="hidden" name="rating" value="down" />
                    <fieldset>
                        <legend>{move || t().feedback_why}</legend>
                        {Reason::ALL
                            .into_iter()
                            .map(|reason| view! {
                                <label>
                                    <input type="checkbox" name=reason.as_str() value="on" checked=move || has_reason(reason) />
                                    {move || reason_label(reason)}
                                </label>
                            })
                            .collect_view()}
                    </fieldset>
                    <label class="feedback-share">
                        <input type="checkbox" name="share" value="on" checked=move || current.get().is_some_and(|f| f.share) />
                        {move || t().feedback_share}
                    </label>
                    <textarea
                        name="comment"
                        maxlength=MAX_COMMENT_CHARS.to_string()
                        placeholder=move || t().feedback_comment
                        aria-label=move || t().feedback_comment
                        prop:value=move || current.get().map(|f| f.comment).unwrap_or_default()
                    ></textarea>
                    <button type="submit" class="feedback-send">{move || t().feedback_send}</button>
                </ActionForm>
            </Show>
            {move || {
                action.value().get().and_then(Result::err).map(|e| {
                    view! { <p class="form-error" role="alert">{e.text(lang.get())}</p> }
                })
            }}
        </div>
    }
}
