//! UI strings in Russian and English. The language comes from the `lang` cookie
//! (set by the switcher), else from Accept-Language, else English.

use crate::cookies::cookie_value;
use crate::protocol::ErrorCode;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Lang {
    #[default]
    En,
    Ru,
}

pub const LANG_COOKIE: &str = "lang";

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        let primary = code.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "ru" => Some(Lang::Ru),
            _ => None,
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Ru,
            Lang::Ru => Lang::En,
        }
    }

    /// Picks the supported language the browser prefers most (by q-value).
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("");
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(lang) = Lang::from_code(tag) {
                if best.is_none_or(|(best_q, _)| q > best_q) {
                    best = Some((q, lang));
                }
            }
        }
        best.map(|(_, lang)| lang)
    }

    /// The cookie wins (the student chose it), then the browser's preference.
    pub fn negotiate(cookie_header: Option<&str>, accept_language: Option<&str>) -> Lang {
        cookie_header
            .and_then(|cookies| cookie_value(cookies, LANG_COOKIE))
            .and_then(Lang::from_code)
            .or_else(|| accept_language.and_then(Lang::from_accept_language))
            .unwrap_or_default()
    }

    pub fn t(self) -> &'static Strings {
        match self {
            Lang::En => &EN,
            Lang::Ru => &RU,
        }
    }
}

/// True when a text is written in Russian (any Cyrillic letter): the language a
/// question's sources and lesson-mode answers prefer.
pub fn is_russian(text: &str) -> bool {
    text.chars().any(|c| matches!(c, 'а'..='я' | 'А'..='Я' | 'ё' | 'Ё'))
}

pub struct Strings {
    pub product: &'static str,
    pub tagline: &'static str,
    pub connecting: &'static str,
    pub connected: &'static str,
    pub reconnecting: &'static str,
    pub offline: &'static str,
    pub placeholder: &'static str,
    pub send: &'static str,
    pub stop: &'static str,
    pub you: &'static str,
    pub tutor: &'static str,
    pub empty_title: &'static str,
    pub empty_hint: &'static str,
    pub switch_to: &'static str,
    pub jump_to_latest: &'static str,
    pub stopped_note: &'static str,
    pub connection_lost: &'static str,
    pub not_connected_hint: &'static str,
    pub hint_keys: &'static str,
    pub err_bad_request: &'static str,
    pub err_too_large: &'static str,
    pub err_busy: &'static str,
    pub err_not_found: &'static str,
    pub err_rate_limited: &'static str,
    pub err_unauthorized: &'static str,
    pub err_unavailable: &'static str,
    pub err_timeout: &'static str,
    pub err_internal: &'static str,
    pub err_limit_reached: &'static str,
    pub err_interrupted: &'static str,
    pub err_foreign_origin: &'static str,
    pub err_no_session: &'static str,
    pub err_invalid_username: &'static str,
    pub err_invalid_password: &'static str,
    pub err_username_taken: &'static str,
    pub err_wrong_credentials: &'static str,
    pub err_too_many_attempts: &'static str,
    pub err_too_many_sign_ups: &'static str,
    pub err_session_ended: &'static str,
    pub err_invalid_title: &'static str,
    pub retry_in: &'static str,
    pub new_chat: &'static str,
    pub conversations: &'static str,
    pub no_conversations: &'static str,
    pub load_earlier: &'static str,
    pub interrupted_note: &'static str,
    pub still_streaming_note: &'static str,
    pub context_note: &'static str,
    pub rename: &'static str,
    pub delete: &'static str,
    pub confirm_delete: &'static str,
    pub conversation_missing: &'static str,
    pub history_unavailable: &'static str,
    pub sources: &'static str,
    pub lessons: &'static str,
    pub lesson_missing: &'static str,
    pub back_to_chat: &'static str,
    pub lesson_mode_note: &'static str,
    pub copy: &'static str,
    pub ask_again_in: &'static str,
    pub sign_in: &'static str,
    pub sign_up: &'static str,
    pub sign_out: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    pub signed_in_as: &'static str,
    pub have_account: &'static str,
    pub no_account: &'static str,
    pub sign_up_hint: &'static str,
    pub teach_title: &'static str,
    pub teach_period: &'static str,
    pub teach_per_day: &'static str,
    pub teach_day: &'static str,
    pub teach_questions: &'static str,
    pub teach_students: &'static str,
    pub teach_endings: &'static str,
    pub teach_ratings: &'static str,
    /// A guest as teachers see it: "Guest {n}".
    pub teach_guest: &'static str,
    // dashboard
    pub teach_period_choice: &'static str,
    pub teach_days_option: &'static str,
    pub teach_table_view: &'static str,
    pub teach_activity: &'static str,
    pub teach_active_students: &'static str,
    pub ending_complete: &'static str,
    pub ending_stopped: &'static str,
    pub ending_error: &'static str,
    pub ending_interrupted: &'static str,
    pub ending_rate_limited: &'static str,
    pub ending_in_progress: &'static str,
    pub teach_cited_lessons: &'static str,
    pub teach_cited_sections: &'static str,
    pub teach_never_cited: &'static str,
    pub teach_citations: &'static str,
    pub teach_lesson: &'static str,
    pub teach_section: &'static str,
    pub teach_gaps_title: &'static str,
    pub teach_gaps_summary: &'static str,
    pub teach_gap_word: &'static str,
    pub teach_gap_examples: &'static str,
    pub teach_downvotes_title: &'static str,
    pub teach_downvotes_count: &'static str,
    pub teach_question: &'static str,
    pub teach_answer: &'static str,
    pub teach_reasons: &'static str,
    pub teach_comment: &'static str,
    pub teach_student: &'static str,
    pub teach_not_shared: &'static str,
    pub teach_queue_title: &'static str,
    pub teach_queue_open: &'static str,
    pub teach_queue_answered: &'static str,
    pub teach_queue_resolved: &'static str,
    pub teach_queue_median: &'static str,
    pub teach_model_title: &'static str,
    pub teach_tokens_chart: &'static str,
    pub teach_prompt_tokens: &'static str,
    pub teach_completion_tokens: &'static str,
    pub teach_cost: &'static str,
    pub teach_ttft_chart: &'static str,
    pub teach_ttft_p50: &'static str,
    pub teach_ttft_p95: &'static str,
    pub teach_nothing_yet: &'static str,
    pub feedback_helpful: &'static str,
    pub feedback_not_helpful: &'static str,
    pub feedback_why: &'static str,
    pub feedback_wrong: &'static str,
    pub feedback_unclear: &'static str,
    pub feedback_off_topic: &'static str,
    pub feedback_too_long: &'static str,
    pub feedback_comment: &'static str,
    pub feedback_send: &'static str,
    pub err_comment_too_long: &'static str,
    pub err_instructions_too_long: &'static str,
    pub instructions_title: &'static str,
    pub instructions_hint: &'static str,
    pub instructions_scope: &'static str,
    pub instructions_course: &'static str,
    pub instructions_save: &'static str,
    pub instructions_changes: &'static str,
    pub instructions_cleared: &'static str,
}

impl Strings {
    pub fn error_text(&self, code: ErrorCode) -> &'static str {
        match code {
            ErrorCode::BadRequest => self.err_bad_request,
            ErrorCode::TooLarge => self.err_too_large,
            ErrorCode::Busy => self.err_busy,
            ErrorCode::NotFound => self.err_not_found,
            ErrorCode::RateLimited => self.err_rate_limited,
            ErrorCode::UpstreamUnauthorized => self.err_unauthorized,
            ErrorCode::UpstreamUnavailable => self.err_unavailable,
            ErrorCode::Timeout => self.err_timeout,
            ErrorCode::Internal => self.err_internal,
            ErrorCode::LimitReached => self.err_limit_reached,
            ErrorCode::Interrupted => self.err_interrupted,
            ErrorCode::ForeignOrigin => self.err_foreign_origin,
            ErrorCode::NoSession => self.err_no_session,
            ErrorCode::InvalidUsername => self.err_invalid_username,
            ErrorCode::InvalidPassword => self.err_invalid_password,
            ErrorCode::UsernameTaken => self.err_username_taken,
            ErrorCode::WrongCredentials => self.err_wrong_credentials,
            ErrorCode::TooManyAttempts => self.err_too_many_attempts,
            ErrorCode::TooManySignUps => self.err_too_many_sign_ups,
            ErrorCode::SessionEnded => self.err_session_ended,
            ErrorCode::CommentTooLong => self.err_comment_too_long,
            ErrorCode::InstructionsTooLong => self.err_instructions_too_long,
            ErrorCode::InvalidTitle => self.err_invalid_title,
        }
    }
}

pub static EN: Strings = Strings {
    product: "Tutor Chat",
    tagline: "Ask about the course — answers stream as they are written.",
    connecting: "connecting…",
    connected: "connected",
    reconnecting: "reconnecting…",
    offline: "offline",
    placeholder: "Ask a question about the course…",
    send: "Send",
    stop: "Stop",
    you: "You",
    tutor: "Tutor",
    empty_title: "What would you like to learn?",
    empty_hint: "Try: “What is the difference between HTTP and WebSocket?”",
    switch_to: "Русский",
    jump_to_latest: "↓ Latest",
    stopped_note: "Stopped.",
    connection_lost: "The connection dropped while this answer was streaming.",
    not_connected_hint: "Not connected — your question stays here until the connection is back.",
    hint_keys: "Enter sends · Shift+Enter adds a line",
    err_bad_request: "The server could not understand that message.",
    err_too_large: "That question is too long.",
    err_busy: "Please wait until the current answer finishes.",
    err_not_found: "This conversation does not exist (any more).",
    err_rate_limited: "Too many questions right now.",
    err_unauthorized: "The tutor's model refused our credentials. Tell your teacher.",
    err_unavailable: "The tutor's model is unavailable right now. Try again in a moment.",
    err_timeout: "The tutor's model took too long to answer.",
    err_internal: "Something went wrong on our side.",
    err_limit_reached: "You have reached a limit: too many open tabs, or too many conversations (delete some to start a new one).",
    err_interrupted: "The server restarted before this answer finished; the text so far is kept.",
    err_foreign_origin: "Requests from other sites are refused.",
    err_no_session: "Your session is missing: reload the page.",
    err_invalid_username: "A username has 3 to 32 letters, digits, dots, dashes or underscores.",
    err_invalid_password: "A password has 8 to 128 characters.",
    err_username_taken: "That username is taken.",
    err_wrong_credentials: "Wrong username or password.",
    err_too_many_attempts: "Too many failed sign-ins. Wait 15 minutes and try again.",
    err_too_many_sign_ups: "Too many accounts were created from this network just now. Try again later.",
    err_session_ended: "You signed out (or your session ended): reload the page to continue.",
    err_invalid_title: "A title has 1 to 120 characters.",
    retry_in: "Try again in",
    new_chat: "New chat",
    conversations: "Conversations",
    no_conversations: "Your conversations will appear here.",
    load_earlier: "Load earlier messages",
    interrupted_note: "This answer was interrupted; what was written so far is kept.",
    still_streaming_note: "This answer is still being written.",
    context_note: "Older messages of this conversation were left out of the tutor's context.",
    rename: "Rename",
    delete: "Delete",
    confirm_delete: "Delete?",
    conversation_missing: "This conversation does not exist, or it is not yours.",
    history_unavailable: "The history could not be loaded right now.",
    sources: "Sources",
    lessons: "Lessons",
    lesson_missing: "There is no such lesson.",
    back_to_chat: "Back to the chat",
    lesson_mode_note: "Lesson mode: no language model is connected, so answers are excerpts from the course lessons, with their sources.",
    copy: "Copy",
    ask_again_in: "Question limit reached: you can ask again in",
    sign_in: "Sign in",
    sign_up: "Sign up",
    sign_out: "Sign out",
    username: "Username",
    password: "Password",
    signed_in_as: "Signed in",
    have_account: "Already have an account? Sign in",
    no_account: "No account yet? Sign up",
    sign_up_hint: "Your conversations in this browser move into the new account.",
    teach_title: "Your course",
    teach_period: "Last {days} days",
    teach_per_day: "Questions and students per day",
    teach_day: "Day",
    teach_questions: "questions",
    teach_students: "students",
    teach_endings: "How answers ended",
    teach_ratings: "What students said of the answers",
    teach_guest: "Guest {n}",
    // dashboard
    teach_period_choice: "Period",
    teach_days_option: "{days} days",
    teach_table_view: "Table view",
    teach_activity: "Questions per day, by how the answer ended",
    teach_active_students: "Active students",
    ending_complete: "Complete",
    ending_stopped: "Stopped",
    ending_error: "Error",
    ending_interrupted: "Interrupted",
    ending_rate_limited: "Rate-limited",
    ending_in_progress: "In progress",
    teach_cited_lessons: "Most cited lessons",
    teach_cited_sections: "Most cited sections",
    teach_never_cited: "Lessons never cited",
    teach_citations: "Citations",
    teach_lesson: "Lesson",
    teach_section: "Section",
    teach_gaps_title: "Content gaps",
    teach_gaps_summary: "{nothing} questions found nothing in the lessons, {weak} only weak matches. Grouped by a word they share:",
    teach_gap_word: "Shared word",
    teach_gap_examples: "Examples (shared conversations only)",
    teach_downvotes_title: "Answers rated 👎",
    teach_downvotes_count: "{n} in the period; the newest are listed.",
    teach_question: "Question",
    teach_answer: "Answer",
    teach_reasons: "Reasons",
    teach_comment: "Comment",
    teach_student: "Student",
    teach_not_shared: "not shared",
    teach_queue_title: "Ask my teacher",
    teach_queue_open: "Open",
    teach_queue_answered: "Answered",
    teach_queue_resolved: "Resolved",
    teach_queue_median: "Median time to a reply",
    teach_model_title: "Model use",
    teach_tokens_chart: "Tokens per day",
    teach_prompt_tokens: "Prompt tokens",
    teach_completion_tokens: "Completion tokens",
    teach_cost: "Cost over the period: {cost}",
    teach_ttft_chart: "Time to first token per day, ms",
    teach_ttft_p50: "Median (p50)",
    teach_ttft_p95: "p95",
    teach_nothing_yet: "None in this period.",
    feedback_helpful: "Helpful",
    feedback_not_helpful: "Not helpful",
    feedback_why: "What was wrong with it?",
    feedback_wrong: "Wrong",
    feedback_unclear: "Unclear",
    feedback_off_topic: "Off topic",
    feedback_too_long: "Too long",
    feedback_comment: "A comment for your teacher (optional)",
    feedback_send: "Send",
    err_comment_too_long: "A comment has at most 500 characters.",
    err_instructions_too_long: "Instructions have at most 2000 characters, a lesson note at most 1000.",
    instructions_title: "Instructions for the tutor",
    instructions_hint: "Added to what the model is told for every question (course) or when that lesson's sections are its sources (lesson). Lesson mode, with no model, does not use them.",
    instructions_scope: "For",
    instructions_course: "the whole course",
    instructions_save: "Save",
    instructions_changes: "Latest changes",
    instructions_cleared: "(cleared)",
};

pub static RU: Strings = Strings {
    product: "Tutor Chat",
    tagline: "Спросите о курсе — ответ появляется по мере написания.",
    connecting: "подключение…",
    connected: "в сети",
    reconnecting: "переподключение…",
    offline: "нет сети",
    placeholder: "Задайте вопрос по курсу…",
    send: "Отправить",
    stop: "Стоп",
    you: "Вы",
    tutor: "Тьютор",
    empty_title: "Что вы хотите узнать?",
    empty_hint: "Например: «Чем HTTP отличается от WebSocket?»",
    switch_to: "English",
    jump_to_latest: "↓ К последнему",
    stopped_note: "Остановлено.",
    connection_lost: "Соединение прервалось, пока шёл ответ.",
    not_connected_hint: "Нет соединения — вопрос останется здесь, пока связь не вернётся.",
    hint_keys: "Enter — отправить · Shift+Enter — новая строка",
    err_bad_request: "Сервер не понял это сообщение.",
    err_too_large: "Вопрос слишком длинный.",
    err_busy: "Дождитесь окончания текущего ответа.",
    err_not_found: "Такого разговора нет (или уже нет).",
    err_rate_limited: "Слишком много вопросов сейчас.",
    err_unauthorized: "Модель тьютора не приняла наши учётные данные. Сообщите преподавателю.",
    err_unavailable: "Модель тьютора сейчас недоступна. Попробуйте чуть позже.",
    err_timeout: "Модель тьютора слишком долго не отвечала.",
    err_internal: "У нас что-то пошло не так.",
    err_limit_reached: "Достигнут предел: слишком много открытых вкладок или бесед (удалите часть, чтобы начать новую).",
    err_interrupted: "Сервер перезапустился, не закончив ответ; уже написанный текст сохранён.",
    err_foreign_origin: "Запросы с других сайтов не принимаются.",
    err_no_session: "Сессия не найдена: перезагрузите страницу.",
    err_invalid_username: "Имя пользователя: от 3 до 32 букв, цифр, точек, дефисов или подчёркиваний.",
    err_invalid_password: "Пароль: от 8 до 128 символов.",
    err_username_taken: "Это имя уже занято.",
    err_wrong_credentials: "Неверное имя пользователя или пароль.",
    err_too_many_attempts: "Слишком много неудачных попыток входа. Подождите 15 минут и попробуйте снова.",
    err_too_many_sign_ups: "Из этой сети только что создано слишком много аккаунтов. Попробуйте позже.",
    err_session_ended: "Вы вышли из аккаунта (или сессия истекла): перезагрузите страницу.",
    err_invalid_title: "Название: от 1 до 120 символов.",
    retry_in: "Повторите через",
    new_chat: "Новый чат",
    conversations: "Разговоры",
    no_conversations: "Здесь появятся ваши разговоры.",
    load_earlier: "Показать более ранние сообщения",
    interrupted_note: "Ответ прервался; написанное сохранено.",
    still_streaming_note: "Этот ответ ещё пишется.",
    context_note: "Более ранние сообщения разговора не вошли в контекст тьютора.",
    rename: "Переименовать",
    delete: "Удалить",
    confirm_delete: "Удалить?",
    conversation_missing: "Такого разговора нет, или он не ваш.",
    history_unavailable: "Историю сейчас не удалось загрузить.",
    sources: "Источники",
    lessons: "Уроки",
    lesson_missing: "Такого урока нет.",
    back_to_chat: "Вернуться в чат",
    lesson_mode_note: "Режим уроков: языковая модель не подключена, поэтому ответы — выдержки из уроков курса с источниками.",
    copy: "Копировать",
    ask_again_in: "Лимит вопросов исчерпан: задать вопрос можно через",
    sign_in: "Войти",
    sign_up: "Зарегистрироваться",
    sign_out: "Выйти",
    username: "Имя пользователя",
    password: "Пароль",
    signed_in_as: "Вы вошли",
    have_account: "Уже есть аккаунт? Войти",
    no_account: "Ещё нет аккаунта? Зарегистрироваться",
    sign_up_hint: "Беседы из этого браузера перейдут в новый аккаунт.",
    teach_title: "Ваш курс",
    teach_period: "Последние {days} дн.",
    teach_per_day: "Вопросы и студенты по дням",
    teach_day: "День",
    teach_questions: "вопросов",
    teach_students: "студентов",
    teach_endings: "Чем закончились ответы",
    teach_ratings: "Оценки ответов студентами",
    teach_guest: "Гость {n}",
    // dashboard
    teach_period_choice: "Период",
    teach_days_option: "{days} дн.",
    teach_table_view: "Таблица",
    teach_activity: "Вопросы по дням и чем закончились ответы",
    teach_active_students: "Активные студенты",
    ending_complete: "Завершён",
    ending_stopped: "Остановлен",
    ending_error: "Ошибка",
    ending_interrupted: "Прерван",
    ending_rate_limited: "Лимит запросов",
    ending_in_progress: "Идёт",
    teach_cited_lessons: "Чаще всего цитируемые уроки",
    teach_cited_sections: "Чаще всего цитируемые разделы",
    teach_never_cited: "Уроки, которые не цитировались",
    teach_citations: "Цитирований",
    teach_lesson: "Урок",
    teach_section: "Раздел",
    teach_gaps_title: "Пробелы в материалах",
    teach_gaps_summary: "Вопросов без совпадений в уроках: {nothing}, только со слабыми: {weak}. По общим словам:",
    teach_gap_word: "Общее слово",
    teach_gap_examples: "Примеры (только из открытых диалогов)",
    teach_downvotes_title: "Ответы с 👎",
    teach_downvotes_count: "За период: {n}; показаны последние.",
    teach_question: "Вопрос",
    teach_answer: "Ответ",
    teach_reasons: "Причины",
    teach_comment: "Комментарий",
    teach_student: "Студент",
    teach_not_shared: "не открыт",
    teach_queue_title: "Вопросы преподавателю",
    teach_queue_open: "Открыто",
    teach_queue_answered: "С ответом",
    teach_queue_resolved: "Закрыто",
    teach_queue_median: "Медиана времени до ответа",
    teach_model_title: "Использование модели",
    teach_tokens_chart: "Токены по дням",
    teach_prompt_tokens: "Токены запроса",
    teach_completion_tokens: "Токены ответа",
    teach_cost: "Стоимость за период: {cost}",
    teach_ttft_chart: "Время до первого токена по дням, мс",
    teach_ttft_p50: "Медиана (p50)",
    teach_ttft_p95: "p95",
    teach_nothing_yet: "За этот период ничего.",
    feedback_helpful: "Полезно",
    feedback_not_helpful: "Не помогло",
    feedback_why: "Что не так с ответом?",
    feedback_wrong: "Неверно",
    feedback_unclear: "Непонятно",
    feedback_off_topic: "Не по теме",
    feedback_too_long: "Слишком длинно",
    feedback_comment: "Комментарий для преподавателя (необязательно)",
    feedback_send: "Отправить",
    err_comment_too_long: "Комментарий — не больше 500 символов.",
    err_instructions_too_long: "Инструкции — не больше 2000 символов, заметка к уроку — не больше 1000.",
    instructions_title: "Инструкции для тьютора",
    instructions_hint: "Добавляются к тому, что получает модель с каждым вопросом (курс) или когда разделы урока служат источниками (урок). В режиме уроков, без модели, не используются.",
    instructions_scope: "Для",
    instructions_course: "всего курса",
    instructions_save: "Сохранить",
    instructions_changes: "Последние изменения",
    instructions_cleared: "(очищено)",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_prefers_highest_q() {
        assert_eq!(
            Lang::from_accept_language("de-DE,ru;q=0.9,en;q=0.8"),
            Some(Lang::Ru)
        );
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9,ru;q=0.5"), Some(Lang::En));
        assert_eq!(Lang::from_accept_language("fr,de"), None);
    }

    #[test]
    fn cookie_beats_accept_language() {
        assert_eq!(
            Lang::negotiate(Some("a=1; lang=ru"), Some("en-US")),
            Lang::Ru
        );
        assert_eq!(Lang::negotiate(Some("lang=xx"), Some("ru-RU")), Lang::Ru);
        assert_eq!(Lang::negotiate(None, None), Lang::En);
    }
}
