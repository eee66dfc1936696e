import { test, expect } from '@playwright/test';
import type { ChildProcess } from 'node:child_process';
import { askUntilSettled, hydrated, openReady, watchForTrouble } from './helpers';
import { startLessonModeApp, stop } from './servers';

test.describe.configure({ mode: 'serial' });

const PORT = 3103;
const BASE = `http://127.0.0.1:${PORT}`;
let app: ChildProcess | undefined;
test.beforeAll(async () => {
  app = await startLessonModeApp(PORT, {
    TUTOR_QUESTION_BUDGET: '2',
    TUTOR_QUESTION_REFILL_MS: '60000',
    // The first test opens three tabs of one student; the last opens a fourth.
    TUTOR_MAX_CONNECTIONS_PER_USER: '3',
  });
});
test.afterAll(async () => {
  await stop(app);
});

test('an empty question budget: the page holds the question back and counts down, in every tab', async ({ page, context }) => {
  // A tab opened before the student's first question (the student has no account row
  // yet): it hears of that question, and of the budget it spent (see the last part).
  const early = await context.newPage();
  await openReady(early, `${BASE}/`);

  await openReady(page, `${BASE}/`);
  await askUntilSettled(page, 'What is a token bucket?');
  await askUntilSettled(page, 'What is jitter?');
  await expect(page.locator('.budget')).toHaveAttribute('data-remaining', '0');

  // The page does not send: Send waits, Enter does nothing, the hint counts down.
  await page.locator('.composer textarea').fill('And a sliding window?');
  await expect(page.locator('button.send')).toBeDisabled();
  await page.locator('.composer textarea').press('Enter');
  await expect(page.locator('.msg-student')).toHaveCount(2);
  const hint = page.locator('.composer-hint');
  await expect(hint).toContainText(/you can ask again in \d+ s/);
  const first = Number(await hint.getAttribute('data-wait'));
  expect(first).toBeGreaterThan(50);
  await expect.poll(async () => Number(await hint.getAttribute('data-wait'))).toBeLessThan(first);

  // A new tab of the same student starts from the server's count.
  const other = await context.newPage();
  await openReady(other, `${BASE}/`);
  await expect(other.locator('.budget')).toHaveAttribute('data-remaining', '0');
  await other.locator('.composer textarea').fill('From another tab?');
  await expect(other.locator('button.send')).toBeDisabled();

  // The early tab's meter followed the other tab's questions: it holds the question
  // back too. (A page that asks anyway is refused by the server with the time to wait:
  // tests/api/budget.rs.)
  await expect(early.locator('.budget')).toHaveAttribute('data-remaining', '0');
  await early.locator('.composer textarea').fill('From the early tab?');
  await expect(early.locator('button.send')).toBeDisabled();
  await early.locator('.composer textarea').press('Enter');
  await expect(early.locator('.msg-student')).toHaveCount(0);
  await expect(early.locator('.conversation')).toHaveCount(1);

  // After a reload, the refused question is not in the history: nothing was stored.
  await openReady(page, page.url());
  await expect(page.locator('.msg-student')).toHaveCount(2);
});

test('one tab too many: the page says so instead of reconnecting, and connects once a tab closes', async ({ context }) => {
  const tabs = [];
  for (let i = 0; i < 3; i++) {
    const tab = await context.newPage();
    await openReady(tab, `${BASE}/`);
    tabs.push(tab);
  }
  const extra = await context.newPage();
  const errors = watchForTrouble(extra);
  await extra.goto(`${BASE}/`);
  await hydrated(extra);
  const conn = extra.locator('.conn');
  await expect(conn).toHaveAttribute('data-state', 'too_many_tabs');
  await expect(conn.locator('.conn-label')).toHaveText('too many tabs');
  await expect(extra.locator('.composer-hint')).toHaveText(
    'Too many tabs of this chat are open in this browser (or chat connections on your network). Close one, and this tab connects by itself.',
  );
  await expect(extra.locator('button.send')).toBeDisabled();
  // It waits (the server said how long) instead of trying again at once, for ever.
  await extra.waitForTimeout(2_000);
  await expect(conn).toHaveAttribute('data-state', 'too_many_tabs');

  await tabs[0].close();
  // Tried again after 10–15 s (the refusal's retry_after, jittered).
  await expect(conn).toHaveAttribute('data-state', 'connected', { timeout: 30_000 });
  await askUntilSettled(extra, 'What is a token bucket?');
  await expect(extra.locator('.msg-tutor').last()).toHaveAttribute('data-status', 'complete');
  expect(errors).toEqual([]);
});
