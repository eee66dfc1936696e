//! Answers cut by a crash are finished (docs/storage.md). Once a second every instance
//! looks for streaming answers whose lease lapsed — their instance was killed, or a
//! shutdown released them — and takes over those it can: the model is asked to
//! continue the stored partial text (the conversation, the partial answer as the
//! assistant's turn, then [`CONTINUE_INSTRUCTION`]); lesson mode and the FAQ continue
//! their own text. The rest streams to whoever follows, `seq` continuing. At most one
//! instance wins an answer (the claim is conditional), and after `max_continuations`
//! crashes it stays interrupted.

use std::time::Duration;

use tracing::Instrument;

use super::ask::{faq_hits, faq_matches, search_lessons, tutor_notes, LESSON_MODE_WORD_GAP, RETRIEVAL_EARLIER_TURNS};
use super::leases::{ContinuationContext, LapsedAnswer};
use super::live::{AnswerPlaces, StartFrom};
use super::prompt::model_messages;
use crate::db::now_ms;
use crate::history::MessageRole;
use crate::lessons::excerpts;
use crate::state::AppState;
use crate::upstream::{AnswerStream, ChatMessage, CONTINUE_INSTRUCTION};

/// How often an instance looks for answers to take over.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Answers taken over in one look; the rest wait for the next second.
const PER_SWEEP: i64 = 20;
/// An answer cut this long ago is not continued: the student has moved on.
const TOO_OLD_MS: i64 = 3_600_000;

/// Looks for answers to take over once a second, for the instance's life. The first
/// look also takes this instance's own answers left streaming before it started. The
/// same tick carries the instance's heartbeat and numbers the guests that arrived.
pub fn spawn_sweeper(state: AppState) {
    let started_at = now_ms();
    tokio::spawn(
        async move {
            let mut first = true;
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if *state.shutdown.borrow() {
                    return;
                }
                let own = first.then_some(started_at);
                first = false;
                // Its sockets count (across instances) while it says so.
                if let Err(error) = state.db.instance_alive(&state.instance_id, now_ms()).await {
                    tracing::warn!(%error, "cannot say this instance is alive");
                }
                // New guests get their numbers here, off their first question's path.
                if let Err(error) = state.db.number_guests_in_background().await {
                    tracing::warn!(%error, "cannot number new guests; trying again in a second");
                }
                if let Err(error) = sweep(&state, own).await {
                    tracing::warn!(%error, "cannot look for answers to take over; trying again in a second");
                }
            }
        }
        .in_current_span(),
    );
}

/// One look: takes over (or ends) the lapsed answers it can; returns how many.
pub async fn sweep(state: &AppState, own_before: Option<i64>) -> Result<usize, crate::db::StoreError> {
    let settings = &state.settings;
    let lease_ms = i64::try_from(settings.answer_lease.as_millis()).unwrap_or(i64::MAX / 2);
    let now = now_ms();
    let own = own_before.map(|before| (&*state.instance_id, before));
    let lapsed = state.db.lapsed_answers(now, lease_ms, own, PER_SWEEP).await?;
    let mut handled = 0;
    for answer in lapsed {
        if state.live.get(&answer.id).is_some() {
            continue; // streaming here: a renewal is just late
        }
        let exhausted = !answer.released && answer.continued >= u64::from(settings.max_continuations);
        if exhausted || answer.created_at < now - TOO_OLD_MS {
            if state.db.interrupt_lapsed(&answer, now).await? {
                tracing::warn!(message_id = %answer.id, continued = answer.continued, "a cut answer stays interrupted");
                state.bus.announce_takeover(&answer.id, answer.generation + 1);
                handled += 1;
            }
            continue;
        }
        let Ok(slot) = state.answer_slots.clone().try_acquire_owned() else {
            break; // full: another instance, or a later look, takes the rest
        };
        if !state.db.claim_answer(&answer, &state.instance_id, now + lease_ms).await? {
            continue; // another instance was quicker
        }
        handled += 1;
        state.metrics.record_takeover();
        let generation = answer.generation + 1;
        tracing::info!(message_id = %answer.id, generation, released = answer.released, "taking over a cut answer");
        let Some(context) = state.db.continuation_context(&answer, settings.context_budget_chars()).await? else {
            state.db.interrupt_lapsed(&LapsedAnswer { generation, ..answer.clone() }, now_ms()).await?;
            state.bus.announce_takeover(&answer.id, generation + 1);
            continue;
        };
        let stream = match continuation(state, &answer, &context).await {
            Some(stream) => stream,
            None => {
                tracing::warn!(message_id = %answer.id, "cannot continue this answer; it stays interrupted");
                state.db.interrupt_lapsed(&LapsedAnswer { generation, ..answer.clone() }, now_ms()).await?;
                state.bus.announce_takeover(&answer.id, generation + 1);
                continue;
            }
        };
        let from = StartFrom { text: answer.content.clone(), seq: answer.chunk_seq, generation };
        let places = AnswerPlaces { slot, per_address: None };
        state.live.start_from(answer.id.clone(), context.user_id, stream, places, from);
        // Announced once it streams here, so followers that re-sync find it.
        state.bus.announce_takeover(&answer.id, generation);
    }
    Ok(handled)
}

/// The rest of the answer: the FAQ's or lesson mode's own text after the stored part,
/// or the model asked to continue it. `None` when it cannot be continued (the text it
/// would continue no longer starts with the stored part, or the model refused).
async fn continuation(state: &AppState, answer: &LapsedAnswer, context: &ContinuationContext) -> Option<AnswerStream> {
    let own_text = |full: String| -> Option<AnswerStream> {
        let rest = full.strip_prefix(answer.content.as_str())?;
        Some(AnswerStream::local(excerpts::words(rest), LESSON_MODE_WORD_GAP))
    };
    if let Some(faq_id) = &answer.faq_id {
        let _ = state.faq.refresh(&state.db).await;
        return own_text(state.faq.entry(faq_id)?.answer);
    }
    // The sources the answer began with: the same search as when it was asked (the
    // FAQ's loose matches, then the lessons read with the two questions before it).
    let earlier: Vec<String> = context
        .turns
        .iter()
        .rev()
        .filter(|(role, _)| *role == MessageRole::User)
        .take(RETRIEVAL_EARLIER_TURNS as usize)
        .map(|(_, content)| content.clone())
        .collect();
    let mut hits = faq_hits(&context.question, &faq_matches(state, &context.question).await);
    hits.extend(search_lessons(state, &context.question, earlier).await);
    if state.lesson_mode {
        return own_text(excerpts::excerpt_answer(&context.question, &hits));
    }
    let notes = tutor_notes(state, &hits).await;
    let system_prompt = &state.upstream.settings().system_prompt;
    let mut messages = model_messages(system_prompt, &notes, context.turns.clone(), &hits, context.question.clone());
    messages.push(ChatMessage::assistant(answer.content.clone()));
    messages.push(ChatMessage::user(CONTINUE_INSTRUCTION));
    match state.upstream.stream_chat(&messages) {
        Ok(stream) => Some(stream),
        Err(error) => {
            tracing::warn!(%error, message_id = %answer.id, "the model would not continue the answer");
            None
        }
    }
}
