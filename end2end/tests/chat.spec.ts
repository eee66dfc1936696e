import { test, expect } from '@playwright/test';
import { openReady, ready } from './helpers';
import { APP, serversForThisFile, upstreamLog } from './servers';

test.describe.configure({ mode: 'serial' });

const servers = serversForThisFile();

test('the page HTML holds the chat before any script runs', async ({ browser, request }) => {
  const html = await (await request.get('/')).text();
  expect(html).toContain('<textarea');
  expect(html).toContain('Tutor Chat');
  expect(html).toContain('data-hydrated="false"');

  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(APP + '/');
  await expect(page.locator('h1')).toHaveText('Tutor Chat');
  await expect(page.locator('.composer textarea')).toBeVisible();
  await expect(page.locator('.conn')).toHaveAttribute('data-state', 'connecting');
  await expect(page.locator('[data-hydrated="false"]')).toHaveCount(1);
  await context.close();
});

test('hydration completes and the socket connects', async ({ page }) => {
  const errors = await openReady(page);
  await expect(page.locator('.conn-label')).toHaveText('connected');
  expect(errors).toEqual([]);
});

test('a question streams visibly, the cursor goes at the end, input is locked meanwhile', async ({ page }) => {
  const errors = await openReady(page);
  // Record every distinct text of the answer as the DOM changes.
  await page.evaluate(() => {
    const w = window as unknown as { samples: string[] };
    w.samples = [];
    new MutationObserver(() => {
      const el = document.querySelector('.msg-tutor .msg-text');
      // Answers are Markdown: a paragraph's text, without the markup's line breaks.
      const text = (el?.textContent ?? '').trim();
      if (text && w.samples[w.samples.length - 1] !== text) w.samples.push(text);
    }).observe(document.getElementById('messages')!, { subtree: true, childList: true, characterData: true });
  });
  const input = page.locator('.composer textarea');
  await input.fill('[tokens=20] [delay=80] What does streaming give a student?');
  await input.press('Enter');

  await expect(input).toBeDisabled();
  await expect(page.locator('.msg-student .msg-text')).toHaveText('[tokens=20] [delay=80] What does streaming give a student?');
  await expect(page.locator('.msg-tutor .cursor')).toBeVisible();
  await expect(page.locator('.msg-tutor')).toHaveAttribute('data-status', 'complete', { timeout: 20_000 });
  await expect(page.locator('.cursor')).toHaveCount(0);
  await expect(input).toBeEnabled();
  await expect(input).toHaveValue('');

  const samples = await page.evaluate(() => (window as unknown as { samples: string[] }).samples);
  expect(samples.length).toBeGreaterThanOrEqual(3);
  for (let i = 1; i < samples.length; i++) {
    expect(samples[i].startsWith(samples[i - 1])).toBe(true);
    expect(samples[i].length).toBeGreaterThan(samples[i - 1].length);
  }
  const sent = (await upstreamLog()).at(-1)!;
  expect(sent.completed).toBe(true);
  await expect(page.locator('.msg-tutor .msg-text')).toHaveText(sent.answer);
  expect(errors).toEqual([]);
});

test('Shift+Enter adds a line, Enter sends', async ({ page }) => {
  await openReady(page);
  const input = page.locator('.composer textarea');
  await input.fill('[tokens=3] line one');
  await input.press('Shift+Enter');
  await input.pressSequentially('line two');
  await expect(input).toHaveValue('[tokens=3] line one\nline two');
  await expect(page.locator('.msg')).toHaveCount(0);
  await input.press('Enter');
  await expect(page.locator('.msg-student .msg-text')).toHaveText('[tokens=3] line one\nline two');
  await expect(page.locator('.msg-tutor')).toHaveAttribute('data-status', 'complete');
});

test('an upstream error shows inline under the answer, and the next question works', async ({ page }) => {
  const errors = await openReady(page);
  const input = page.locator('.composer textarea');
  await input.fill('[fault=429] are you there?');
  await input.press('Enter');
  const error = page.locator('.msg-tutor .msg-error');
  await expect(error).toHaveAttribute('data-code', 'rate_limited');
  await expect(error).toContainText('Too many requests');
  await expect(error).toContainText('Try again in 7 s.');
  await expect(error).toHaveAttribute('title', /.+/); // the server's own (English) words
  // In Russian the whole notice is Russian, the unit too, and no English tooltip.
  await page.locator('button.lang-switch').click();
  await expect(error).toHaveText('Слишком много запросов сейчас. Повторите через 7 с.');
  await expect(error).not.toHaveAttribute('title');
  await page.locator('button.lang-switch').click();
  await input.fill('[tokens=4] and now?');
  await input.press('Enter');
  await expect(page.locator('.msg-tutor').nth(1)).toHaveAttribute('data-status', 'complete');
  expect(errors).toEqual([]); // no alert() dialog, no script error
});

test('the student can stop an answer', async ({ page }) => {
  await openReady(page);
  const input = page.locator('.composer textarea');
  await input.fill('[tokens=200] [delay=50] a long answer please');
  await input.press('Enter');
  await expect(page.locator('.msg-tutor')).toHaveAttribute('data-status', 'streaming');
  await page.locator('button.stop').click();
  await expect(page.locator('.msg-tutor')).toHaveAttribute('data-status', 'stopped');
  await expect(page.locator('.msg-tutor .msg-note')).toBeVisible();
  await expect(input).toBeEnabled();
});

test('autoscroll follows the answer and pauses when the student scrolls up', async ({ page }) => {
  await page.setViewportSize({ width: 800, height: 500 });
  await openReady(page);
  const input = page.locator('.composer textarea');
  await input.fill('[tokens=300] [delay=15] a long answer');
  await input.press('Enter');
  await expect(page.locator('.msg-tutor')).toHaveAttribute('data-status', 'streaming');
  const list = page.locator('#messages');
  // While following, the list stays at its bottom as text grows.
  await expect
    .poll(async () => list.evaluate((el) => el.scrollHeight > el.clientHeight + 50), { timeout: 15_000 })
    .toBe(true);
  const gap = () => list.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);
  await expect.poll(gap).toBeLessThan(60);
  // The student scrolls up: the page stops pulling them down and offers a jump button.
  await list.evaluate((el) => el.scrollTo({ top: 0 }));
  await expect(page.locator('button.jump')).toBeVisible();
  await page.waitForTimeout(500);
  expect(await list.evaluate((el) => el.scrollTop)).toBe(0);
  await page.locator('button.jump').click();
  await expect.poll(gap).toBeLessThan(60);
  await page.locator('button.stop').click();
});

test('the language is switchable and remembered', async ({ page }) => {
  await openReady(page);
  await page.locator('button.lang-switch').click();
  await expect(page.locator('.composer textarea')).toHaveAttribute('placeholder', 'Задайте вопрос по курсу…');
  await expect(page.locator('html')).toHaveAttribute('lang', 'ru');
  await page.reload();
  await ready(page);
  await expect(page.locator('.composer textarea')).toHaveAttribute('placeholder', 'Задайте вопрос по курсу…');
  await expect(page.locator('.conn-label')).toHaveText('в сети');
});

test('stop and restart the server: reconnecting, then connected, and asking works again', async ({ page }) => {
  await openReady(page);
  const conn = page.locator('.conn');
  await servers.stopApp();
  await expect(conn).toHaveAttribute('data-state', 'reconnecting');
  await servers.restartApp();
  await expect(conn).toHaveAttribute('data-state', 'connected', { timeout: 30_000 });
  const input = page.locator('.composer textarea');
  await input.fill('[tokens=5] back again?');
  await input.press('Enter');
  await expect(page.locator('.msg-tutor')).toHaveAttribute('data-status', 'complete');
  const sent = (await upstreamLog()).at(-1)!;
  await expect(page.locator('.msg-tutor .msg-text')).toHaveText(sent.answer);
});
