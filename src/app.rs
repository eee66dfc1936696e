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
use crate::chat::view::{ChatPage, Hydrated};
use crate::faq::view::FaqPage;
use crate::history::view::Sidebar;
use crate::lessons::view::{LessonList, LessonView};
use crate::not_found::NotFound;
use crate::escalation::view::{QueuePage, TeacherConversationPage};
use crate::teacher::view::TeachPage;
use crate::platform;

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
    let hydrated = Hydrated(RwSignal::new(false));
    provide_context(hydrated);
    Effect::new(move |_| {
        hydrated.0.set(true);
        client.start();
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


/// Pages a student rarely or never opens: the teacher's pages and the lessons. A split
/// release build (`cargo leptos build --split`, docs/page.md) puts their code in WASM
/// the browser fetches when one is first shown; the server names it in the page when
/// one is opened from a link, so it loads beside the main module. A build that is not
/// split (`cargo leptos watch`) has them in the main module, with the same routes and
/// markup (`cfg(wasm_split)` comes from build.rs).
macro_rules! lazy_page {
    ($route:ident, $page:ident) => {
        pub struct $route;

        #[cfg(any(feature = "ssr", wasm_split))]
        #[leptos_router::lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(_this: Self) -> AnyView {
                view! { <$page /> }.into_any()
            }
        }

        #[cfg(not(any(feature = "ssr", wasm_split)))]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            async fn view(_this: Self) -> AnyView {
                view! { <$page /> }.into_any()
            }
        }
    };
}

lazy_page!(TeachRoute, TeachPage);
lazy_page!(QueueRoute, QueuePage);
lazy_page!(TeacherConversationRoute, TeacherConversationPage);
lazy_page!(LessonListRoute, LessonList);
lazy_page!(LessonRoute, LessonView);
lazy_page!(FaqRoute, FaqPage);
lazy_page!(SignInRoute, SignInPage);
lazy_page!(SignUpRoute, SignUpPage);
