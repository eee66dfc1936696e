import { test, expect } from '@playwright/test';
import type { ChildProcess } from 'node:child_process';
import { askUntilSettled, openReady } from './helpers';
import { startLessonModeApp, stop } from './servers';

// The question budget's meter (issue #14): two questions at once, one back every 10 s
// (lesson mode's answers stream for a few seconds; two must fit in one refill).
test.describe.configure({ mode: 'serial' });

const PORT = 3104;
const BASE = `http://127.0.0.1:${PORT}`;
let app: ChildProcess | undefined;
test.beforeAll(async () => {
  app = await startLessonModeApp(PORT, { TUTOR_QUESTION_BUDGET: '2', TUTOR_QUESTION_REFILL_MS: '10000' });
});
test.afterAll(async () => {
  await stop(app);
});

test('the meter counts questions down, disables Send at zero, and refills on its own', async ({ page }) => {
  const errors = await openReady(page, `${BASE}/`);
  const meter = page.locator('.budget');
  await expect(meter).toHaveAttribute('data-remaining', '2');
  await expect(meter).toHaveAttribute('data-capacity', '2');
  await expect(meter.locator('.budget-pip.full')).toHaveCount(2);
  await expect(meter.locator('.budget-next')).toHaveCount(0);

  await askUntilSettled(page, 'What is a token bucket?');
  await expect(meter).toHaveAttribute('data-remaining', '1');
  await expect(meter.locator('.budget-pip.full')).toHaveCount(1);
  await askUntilSettled(page, 'What is jitter?');
  await expect(meter).toHaveAttribute('data-remaining', '0');

  // At zero: Send waits, and the page says for how long, counting down.
  await page.locator('.composer textarea').fill('One more?');
  await expect(page.locator('button.send')).toBeDisabled();
  const hint = page.locator('.composer-hint');
  await expect(hint).toContainText(/you can ask again in \d+ s/);
  const next = Number(await meter.getAttribute('data-next'));
  expect(next).toBeGreaterThan(0);
  expect(next).toBeLessThanOrEqual(10);
  await expect.poll(async () => Number(await meter.getAttribute('data-next'))).toBeLessThan(next);

  // The meter refills from the server's durations, without asking the server.
  await expect(meter).toHaveAttribute('data-remaining', '1', { timeout: 15_000 });
  await expect(page.locator('button.send')).toBeEnabled();
  await expect(hint).not.toContainText('you can ask again');
  // And the server agrees: the question is answered.
  await askUntilSettled(page, 'One more?');
  await expect(page.locator('.msg-tutor').last()).toHaveAttribute('data-status', 'complete');
  await expect(meter).toHaveAttribute('data-remaining', '0');
  expect(errors).toEqual([]);
});
