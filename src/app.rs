//! The document shell and the router. Both read the same in both builds: what
//! differs between the server and the browser is behind [`crate::platform`] and the
//! chat's [`ChatClient`].

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{Lazy, LazyRoute, ParamSegment, SsrMode, StaticSegment};

use crate::account::view::{SignInPage, SignUpPage};
use crate::chat::client::ChatClient;
use crate::chat::state::ChatUi;
use crate::chat::view::{ChatPage, Hydrated, UnsentAsk};
use crate::faq::view::FaqPage;
use crate::history::view::Sidebar;
use crate::lessons::view::{LessonList, LessonView};
use crate::not_found::NotFound;
use crate::escalation::view::{QueuePage, TeacherConversationPage};
use crate::teacher::view::TeachPage;
use crate::platform;
use crate::protocol::ClientFrame;

/// The document around [`App`], rendered on the server only. `<html>` carries the
/// language and lesson mode, which the browser reads back when it hydrates.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let lang = platform::page_lang();
    let lesson_mode = if platform::lesson_mode() { "true" } else { "false" };
    let teachers_read_all = if platform::teachers_read_all() { "true" } else { "false" };
    platform::send_page_policy(options.env == leptos::config::Env::DEV);
    view! {
        <!DOCTYPE html>
        <html lang=lang.code() data-lesson-mode=lesson_mode data-teachers-read-all=teachers_read_all>
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <AutoReload options=options.clone() />
                // The stylesheet by its hashed name (docs/page.md): here, where the options are.
                <HashedStylesheet options=options.clone() id="leptos" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let lang = RwSignal::new(platform::page_lang());
    provide_context(lang);
    // One chat state and one socket for the page's lifetime: moving between
    // conversations must not drop the connection or an answer in flight.
    let ui = ChatUi::new();
    // The conversation in the address, known before anything renders: set later, by the
    // chat page, it would change a signal the sidebar above it has already read, and a
    // server render would then re-run the sidebar's reads after the page's owner is
    // gone (a panic that left the response unfinished; docs/BENCHMARKS.md "Whole pages").
    ui.conversation_id.set(crate::page::conversation_in_path(&platform::request_path()));
    provide_context(ui);
    provide_context(ui.page_state());
    let client = ChatClient::new(ui);
    provide_context(client);
    // Set by `crate::hydrate` when the whole page has hydrated: a page on a lazily
    // loaded route finishes only when its part has arrived, after Effects have run.
    let hydrated = use_context::<Hydrated>().unwrap_or_else(|| Hydrated(RwSignal::new(false)));
    provide_context(hydrated);
    Effect::new(move |_| client.start());
    // A question a reload cut off before its answer began (docs/client.md): taken once
    // per page load, for the chat page to restore; kept while one waits, on any page.
    let unsent = UnsentAsk(StoredValue::new(platform::take_unsent_ask()));
    provide_context(unsent);
    Effect::new(move |_| {
        // Only the page this load began on restores it; a chat page opened later does not.
        if hydrated.0.get() {
            unsent.0.set_value(None);
        }
    });
    // Questions only: a version cut off by a reload is shown as it was, and asked for
    // again from its button.
    let waiting_ask = Memo::new(move |_| {
        ui.pending.with(|p| p.as_ref().and_then(|p| p.ask.clone()).filter(|f| matches!(f, ClientFrame::Ask { .. })))
    });
    Effect::new(move |_| {
        let json = waiting_ask.with(|ask| ask.as_ref().and_then(|ask| serde_json::to_string(ask).ok()));
        platform::keep_unsent_ask(json.as_deref());
    });
    view! {
        <Title text=move || lang.get().t().product />
        <Router>
            <main class="layout" data-hydrated=move || hydrated.0.get().to_string()>
                <Sidebar />
                <Routes fallback=NotFound>
                    // In order: the history is in the HTML where it belongs, readable with
                    // JavaScript off (out-of-order streaming needs a script to place it).
                    <Route path=StaticSegment("") view=ChatPage ssr=SsrMode::InOrder />
                    <Route
                        path=(StaticSegment("c"), ParamSegment("id"))
                        view=ChatPage
                        ssr=SsrMode::InOrder
                    />
                    <Route path=StaticSegment("lessons") view={Lazy::<LessonListRoute>::new()} ssr=SsrMode::InOrder />
                    <Route path=StaticSegment("faq") view={Lazy::<FaqRoute>::new()} ssr=SsrMode::InOrder />
                    <Route path=StaticSegment("signin") view={Lazy::<SignInRoute>::new()} ssr=SsrMode::InOrder />
                    <Route path=StaticSegment("signup") view={Lazy::<SignUpRoute>::new()} ssr=SsrMode::InOrder />
                    // Async: the 404 for anyone but the teacher is decided before the first byte.
                    <Route path=StaticSegment("teach") view={Lazy::<TeachRoute>::new()} ssr=SsrMode::Async />
                    <Route path=(StaticSegment("teach"), StaticSegment("queue")) view={Lazy::<QueueRoute>::new()} ssr=SsrMode::Async />
                    <Route
                        path=(StaticSegment("teach"), StaticSegment("c"), ParamSegment("id"))
                        view={Lazy::<TeacherConversationRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("lessons"), ParamSegment("slug"))
                        view={Lazy::<LessonRoute>::new()}
                        ssr=SsrMode::InOrder
                    />
                </Routes>
            </main>
        </Router>
    }
}

/// Pages a student rarely or never opens: the teacher's pages, the lessons, the FAQ and
/// the account pages. A split release build (`cargo leptos build --split`, docs/page.md)
/// puts each page's code in a part of the WASM the browser fetches when the page is
/// first shown; the server names the parts in the `<head>` of a page opened on one of
/// them, so they load beside the main module.
///
/// A part can fail to arrive: offline, or a page open across a release whose parts are
/// gone. The page then says so, with a reload button, and the chat keeps working (a
/// `#[lazy]` view would panic and leave the page dead), hence `fallible` split functions
/// written out here rather than `#[lazy_route]`.
///
/// A build that is not split (`cargo leptos watch`) must not call split functions: each
/// call imports a placeholder module that does not exist and the page never hydrates.
/// `cfg(wasm_split)` (build.rs) is set only for a split WASM; without it the view is
/// built in place. The server's build never splits; it names the part for the page.
macro_rules! lazy_page {
    ($route:ident, $page:ident, $part:ident, $preload:ident) => {
        pub struct $route;

        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            /// The router awaits this before it renders (or hydrates) the route: a view
            /// still waiting for its part when the page hydrates would not match the
            /// server's HTML. A part that fails here is reported by `view`, or, while
            /// the page hydrates, by `part_missing_while_hydrating`.
            async fn preload() {
                #[cfg(wasm_split)]
                if $preload().await.is_err() {
                    part_missing_while_hydrating(stringify!($part)).await;
                }
            }

            async fn view(_this: Self) -> AnyView {
                #[cfg(feature = "ssr")]
                leptos::prefetch_lazy_fn_on_server(stringify!($part));
                #[cfg(wasm_split)]
                let view = $part().await.unwrap_or_else(|_| part_missing());
                #[cfg(not(wasm_split))]
                let view = view! { <$page /> }.into_any();
                view
            }
        }

        #[cfg(wasm_split)]
        #[leptos::wasm_split::wasm_split(
            $part,
            wasm_split_path = ::leptos::wasm_split,
            fallible,
            preload($preload)
        )]
        fn $part() -> Result<AnyView, leptos::wasm_split::SplitLoaderError> {
            Ok(view! { <$page /> }.into_any())
        }
    };
}

lazy_page!(TeachRoute, TeachPage, teach_page, preload_teach_page);
lazy_page!(QueueRoute, QueuePage, queue_page, preload_queue_page);
lazy_page!(TeacherConversationRoute, TeacherConversationPage, teacher_conversation_page, preload_teacher_conversation_page);
lazy_page!(LessonListRoute, LessonList, lesson_list_page, preload_lesson_list_page);
lazy_page!(LessonRoute, LessonView, lesson_page, preload_lesson_page);
lazy_page!(FaqRoute, FaqPage, faq_page, preload_faq_page);
lazy_page!(SignInRoute, SignInPage, sign_in_page, preload_sign_in_page);
lazy_page!(SignUpRoute, SignUpPage, sign_up_page, preload_sign_up_page);

/// A page opened on a lazily loaded route cannot hydrate without its part: what `view`
/// shows instead would not match the server's HTML, and a mismatch panics. The page is
/// loaded once more (a release may have replaced the parts); if that was tried in the
/// last minute, hydration stops here and the server's page stays as it is: readable,
/// its links followed by the browser, as without JavaScript.
#[cfg(wasm_split)]
async fn part_missing_while_hydrating(part: &str) {
    let hydrating = Owner::current_shared_context().is_some_and(|context| context.during_hydration());
    if hydrating {
        if !platform::reload_once(part) {
            platform::follow_links_plainly();
        }
        std::future::pending::<()>().await;
    }
}

/// In place of a page whose part of the WASM did not arrive.
#[cfg_attr(not(wasm_split), allow(dead_code))]
fn part_missing() -> AnyView {
    let lang = expect_context::<RwSignal<crate::i18n::Lang>>();
    let t = move || lang.get().t();
    view! {
        <div class="lesson-page part-missing" role="alert">
            <nav class="lesson-nav"><a href="/">{move || t().back_to_chat}</a></nav>
            <p>{move || t().page_part_missing}</p>
            <button type="button" class="reload-page" on:click=|_| platform::reload_page()>
                {move || t().reload_page}
            </button>
        </div>
    }
    .into_any()
}
