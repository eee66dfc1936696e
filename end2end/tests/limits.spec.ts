import { test, expect } from '@playwright/test';
import type { ChildProcess } from 'node:child_process';
import { askUntilSettled, openReady } from './helpers';
import { startLessonModeApp, stop } from './servers';

test.describe.configure({ mode: 'serial' });

const PORT = 3103;
const BASE = `http://127.0.0.1:${PORT}`;
let app: ChildProcess | undefined;
test.beforeAll(async () => {
  app = await startLessonModeApp(PORT, { TUTOR_QUESTION_BUDGET: '2', TUTOR_QUESTION_REFILL_MS: '60000' });
});
test.afterAll(async () => {
  await stop(app);
});

test('over the rate limit: the question is refused and the page counts down until asking works again', async ({ page, context }) => {
  await openReady(page, `${BASE}/`);
  await askUntilSettled(page, 'What is a token bucket?');
  await askUntilSettled(page, 'What is jitter?');
  await askUntilSettled(page, 'And a sliding window?');

  const refused = page.locator('.msg-tutor').last();
  await expect(refused).toHaveAttribute('data-status', 'failed');
  await expect(refused.locator('.msg-error')).toHaveAttribute('data-code', 'rate_limited');
  await expect(refused.locator('.msg-error')).toContainText('Too many questions');
  // The hint says when asking works again, and counts down; Send waits for it.
  const hint = page.locator('.composer-hint');
  await expect(hint).toContainText(/you can ask again in \d+ s/);
  const first = Number(await hint.getAttribute('data-wait'));
  expect(first).toBeGreaterThan(50);
  await expect.poll(async () => Number(await hint.getAttribute('data-wait'))).toBeLessThan(first);
  await page.locator('.composer textarea').fill('one more?');
  await expect(page.locator('button.send')).toBeDisabled();

  // A new tab of the same student is limited too (the count lives on the server).
  const other = await context.newPage();
  await openReady(other, `${BASE}/`);
  await askUntilSettled(other, 'From another tab?');
  await expect(other.locator('.msg-tutor').last().locator('.msg-error')).toHaveAttribute('data-code', 'rate_limited');
  // After a reload, the refused question is not in the history: nothing was stored.
  await openReady(page, page.url());
  await expect(page.locator('.msg-student')).toHaveCount(2);
});
