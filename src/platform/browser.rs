//! The browser's twin of the platform helpers: it reads what the server put in the
//! document, so hydration renders what the server rendered, and changes the address
//! bar, the language cookie and the page.

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::i18n::{Lang, LANG_COOKIE};

fn html_attribute(name: &str) -> Option<String> {
    document().document_element()?.get_attribute(name)
}

/// The page language, from the `<html lang>` the server rendered.
pub fn page_lang() -> Lang {
    html_attribute("lang")
        .and_then(|code| Lang::from_code(&code))
        .unwrap_or_default()
}

/// A moment in Unix milliseconds as `YYYY-MM-DD HH:MM` in the browser's own time zone.
pub fn local_date_time(unix_ms: i64) -> Option<String> {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(unix_ms as f64));
    let year = date.get_full_year();
    // An invalid date reads NaN, which the getters turn into 0: leave the UTC text.
    (year > 0).then(|| {
        format!(
            "{year:04}-{:02}-{:02} {:02}:{:02}",
            date.get_month() + 1,
            date.get_date(),
            date.get_hours(),
            date.get_minutes()
        )
    })
}

/// Whether answers are lesson excerpts, from the `data-lesson-mode` the server
/// rendered on `<html>`.
pub fn lesson_mode() -> bool {
    html_attribute("data-lesson-mode").is_some_and(|v| v == "true")
}

/// Whether teachers read every conversation, from the `data-teachers-read-all` the
/// server rendered on `<html>`.
pub fn teachers_read_all() -> bool {
    html_attribute("data-teachers-read-all").is_some_and(|v| v == "true")
}

/// The status was the server's to set; in the browser there is none.
pub fn set_status_not_found() {}

/// Puts the conversation's address in the URL bar without a navigation, so a reload
/// or a shared link opens it, while the page (and the answer streaming) stays.
pub fn show_url(path: &str) {
    let Ok(history) = window().history() else {
        return;
    };
    let current = window().location().pathname().unwrap_or_default();
    if current != path {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(path));
    }
}

/// Keeps the student's choice of language: on `<html lang>` now, and in the cookie
/// the server reads for the next page.
pub fn remember_lang(lang: Lang) {
    let document = document();
    if let Some(html) = document.document_element() {
        let _ = html.set_attribute("lang", lang.code());
    }
    if let Ok(doc) = document.dyn_into::<web_sys::HtmlDocument>() {
        let _ = doc.set_cookie(&format!(
            "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
            lang.code()
        ));
    }
}

/// Loads `path` as a new page: everything on this one starts over.
pub fn load_page(path: &str) {
    let _ = window().location().set_href(path);
}

/// Loads this page again from the server (its address as it is now).
pub fn reload_page() {
    let _ = window().location().reload();
}

/// Where a tab keeps the question it sent whose answer has not begun: a reload in that
/// moment would otherwise lose it (the server may never have got it).
const UNSENT_ASK_KEY: &str = "tutor-unsent-ask";
/// Older than this, a kept question is not a reload's: it is not asked again.
const UNSENT_ASK_FOR_MS: i64 = 120_000;

/// Keeps the `ask` whose `start` has not come (its JSON), with the time, in this tab's
/// storage, which outlives a reload and no other tab reads; `None` forgets it.
pub fn keep_unsent_ask(ask_json: Option<&str>) {
    let Ok(Some(storage)) = window().session_storage() else { return };
    let _ = match ask_json {
        Some(json) => storage.set_item(UNSENT_ASK_KEY, &format!("{}\n{json}", js_sys::Date::now() as i64)),
        None => storage.remove_item(UNSENT_ASK_KEY),
    };
}

/// The `ask` kept by [`keep_unsent_ask`] before this page loaded, once, if it was
/// kept in the last two minutes.
pub fn take_unsent_ask() -> Option<String> {
    let storage = window().session_storage().ok()??;
    let kept = storage.get_item(UNSENT_ASK_KEY).ok()??;
    let _ = storage.remove_item(UNSENT_ASK_KEY);
    let (at, json) = kept.split_once('\n')?;
    let age = js_sys::Date::now() as i64 - at.parse::<i64>().ok()?;
    (0..UNSENT_ASK_FOR_MS).contains(&age).then(|| json.to_string())
}

/// Loads this page again, unless that was done for the same reason in the last minute:
/// a page whose part of the WASM is missing reloads once (a release may have replaced
/// the parts), not in a loop. Returns whether it reloads.
pub fn reload_once(reason: &str) -> bool {
    let Ok(Some(storage)) = window().session_storage() else { return false };
    // Whole milliseconds: parsing an f64 would bring float parsing into the WASM (~20 KB).
    let now = js_sys::Date::now() as i64;
    let key = format!("tutor-reload:{reason}");
    let recent = storage
        .get_item(&key)
        .ok()
        .flatten()
        .and_then(|at| at.parse::<i64>().ok())
        .is_some_and(|at| now - at < 60_000);
    if recent {
        return false;
    }
    let _ = storage.set_item(&key, &now.to_string());
    reload_page();
    true
}

/// From now on the browser follows links itself: for a page whose hydration stopped,
/// where the router would take a click and wait forever for the page to finish. Runs
/// before the router's listeners (capture, on the window) and keeps the click from them.
pub fn follow_links_plainly() {
    let on_click = wasm_bindgen::closure::Closure::<dyn FnMut(leptos::web_sys::Event)>::new(
        |event: leptos::web_sys::Event| {
            if super::landed_within(&event, "a[href]") {
                event.stop_immediate_propagation();
            }
        },
    );
    let _ = window().add_event_listener_with_callback_and_bool("click", on_click.as_ref().unchecked_ref(), true);
    // It lives as long as the page.
    on_click.forget();
}

/// The policy travels with the server's response; the browser has nothing to send.
pub fn send_page_policy(_dev: bool) {}

/// What can take the keyboard focus inside a container, in tab order (enough for our
/// own markup: no positive `tabindex`).
const FOCUSABLE: &str = "a[href], button:not([disabled]), input:not([disabled]), textarea:not([disabled]), \
                         select:not([disabled]), [tabindex]:not([tabindex='-1'])";

/// Keeps Tab and Shift+Tab inside `container` (an open drawer): from its last focusable
/// element Tab goes to `first_stop` (the button that opened it), and Shift+Tab from
/// there goes to the last one. Other keys pass.
pub fn keep_tab_inside(ev: &leptos::ev::KeyboardEvent, container: &web_sys::Element, first_stop: &web_sys::HtmlElement) {
    if ev.key() != "Tab" {
        return;
    }
    let Ok(found) = container.query_selector_all(FOCUSABLE) else { return };
    let visible: Vec<web_sys::HtmlElement> = (0..found.length())
        .filter_map(|i| found.item(i))
        .filter_map(|node| node.dyn_into::<web_sys::HtmlElement>().ok())
        .filter(|el| el.offset_parent().is_some())
        .collect();
    let Some(last) = visible.last() else { return };
    let active = document().active_element();
    let on = |el: &web_sys::HtmlElement| active.as_ref().is_some_and(|a| a == el.unchecked_ref::<web_sys::Element>());
    if !ev.shift_key() && on(last) {
        ev.prevent_default();
        let _ = first_stop.focus();
    } else if ev.shift_key() && on(first_stop) {
        ev.prevent_default();
        let _ = last.focus();
    }
}

/// The path the page was loaded at (the server rendered it for the same one).
pub fn request_path() -> String {
    window().location().pathname().unwrap_or_default()
}
