import { test, expect } from '@playwright/test';
import { ask, openReady, ready } from './helpers';
import { serversForThisFile } from './servers';

test.describe.configure({ mode: 'serial' });

serversForThisFile();

test('a student rates an answer 👎 with a reason and a comment, and it is kept', async ({ page }) => {
  const errors = await openReady(page);
  await ask(page, '[tokens=4] explain backpressure');
  const answer = page.locator('.msg-tutor').last();
  // Named for screen readers by what they do, not by their emoji.
  await expect(answer.getByRole('button', { name: 'Helpful', exact: true })).toBeVisible();
  await expect(answer.getByRole('button', { name: 'Not helpful', exact: true })).toBeVisible();
  await answer.locator('.rate-down').click();
  await expect(answer.locator('.rate-down')).toHaveAttribute('aria-pressed', 'true');
  const reasons = answer.locator('.feedback-reasons');
  await reasons.getByLabel('Unclear').check();
  await reasons.locator('textarea').fill('I did not follow the second step');
  await reasons.locator('.feedback-send').click();
  await expect(answer.locator('.feedback')).toHaveAttribute('data-rating', 'down');

  // After a reload the page shows what was sent.
  await page.reload();
  await ready(page);
  const stored = page.locator('.msg-tutor').last();
  await expect(stored.locator('.rate-down')).toHaveAttribute('aria-pressed', 'true');
  await expect(stored.getByLabel('Unclear')).toBeChecked();
  await expect(stored.locator('.feedback-reasons textarea')).toHaveValue('I did not follow the second step');

  // 👍 replaces it; pressing it again withdraws it.
  await stored.locator('.rate-up').click();
  await expect(stored.locator('.feedback')).toHaveAttribute('data-rating', 'up');
  await stored.locator('.rate-up').click();
  await expect(stored.locator('.feedback')).toHaveAttribute('data-rating', 'none');
  expect(errors).toEqual([]);
});
