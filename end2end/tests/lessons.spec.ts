import { test, expect } from '@playwright/test';
import type { ChildProcess } from 'node:child_process';
import { hydrated, openReady, ready, send } from './helpers';
import { serversForThisFile, startLessonModeApp, stop, upstreamLog } from './servers';

test.describe.configure({ mode: 'serial' });

serversForThisFile();

test('an answer lists its sources; only its own [n] are links; a source opens the lesson at its section', async ({ page }) => {
  const errors = await openReady(page);
  await send(page, '[tokens=6] [delay=20] [cite=1,7] How does a token bucket allow short bursts of requests?');

  const answer = page.locator('.msg-tutor').last();
  await expect(answer).toHaveAttribute('data-status', 'complete');
  // Three sources, best first, each a link to its lesson section.
  const sources = answer.locator('.sources li');
  await expect(sources).toHaveCount(3);
  await expect(sources.first().locator('.source-lesson')).toHaveText('Rate limiting');
  await expect(sources.first().locator('.source-section')).toHaveText(' › Token bucket');
  await expect(sources.first().locator('a')).toHaveAttribute('href', '/lessons/05-rate-limiting-en#token-bucket');

  // The model cited [1] (a source) and [7] (made up), each split across two chunks.
  const text = answer.locator('.msg-text');
  await expect(text).toContainText('[7]');
  await expect(text.locator('a.cite')).toHaveCount(1);
  await expect(text.locator('a.cite')).toHaveText('[1]');
  await expect(text.locator('a', { hasText: '[7]' })).toHaveCount(0);

  // The model was given the sources it cited.
  const sent = (await upstreamLog()).pop()!;
  expect(sent.messages.some((m) => m.role === 'system' && m.content.includes('[1] Rate limiting › Token bucket'))).toBe(true);

  // Clicking the source opens the lesson page at that section.
  const [lesson] = await Promise.all([
    page.context().waitForEvent('page'),
    sources.first().locator('a').click(),
  ]);
  await lesson.waitForLoadState();
  expect(new URL(lesson.url()).pathname).toBe('/lessons/05-rate-limiting-en');
  expect(new URL(lesson.url()).hash).toBe('#token-bucket');
  const section = lesson.locator('h2#token-bucket');
  await expect(section).toHaveText('Token bucket');
  await expect(section).toBeInViewport();
  await expect(lesson.locator('article.lesson')).toContainText('A token bucket holds up to N tokens');

  // The inline citation goes to the same place.
  await expect(text.locator('a.cite')).toHaveAttribute('href', '/lessons/05-rate-limiting-en#token-bucket');

  // After a reload, history brings the sources and the citation back, from the server.
  await page.reload();
  await ready(page);
  const stored = page.locator('.msg-tutor').last();
  await expect(stored.locator('.sources li')).toHaveCount(3);
  await expect(stored.locator('a.cite')).toHaveCount(1);
  await expect(stored.locator('.msg-text')).toContainText('[7]');
  expect(errors).toEqual([]);
});

test('a Russian lesson page keeps readable anchors', async ({ page }) => {
  await page.goto('/lessons/04-reconnection-ru#экспоненциальная-задержка-с-джиттером');
  const section = page.locator('h2', { hasText: 'Экспоненциальная задержка с джиттером' });
  await expect(section).toHaveAttribute('id', 'экспоненциальная-задержка-с-джиттером');
  await expect(section).toBeInViewport();
});

test('the language switches on pages other than the chat too, and is remembered', async ({ page }) => {
  await page.goto('/lessons');
  await hydrated(page);
  await expect(page.locator('html')).toHaveAttribute('lang', 'en');
  await expect(page.locator('.sidebar-title')).toHaveText('Conversations');
  await page.locator('.sidebar-lang button.lang-switch').click();
  await expect(page.locator('html')).toHaveAttribute('lang', 'ru');
  await expect(page.locator('.sidebar-title')).toHaveText('Разговоры');
  await expect(page.locator('.sidebar-lessons')).toHaveText('Уроки');
  await page.reload();
  await hydrated(page);
  await expect(page.locator('.sidebar-title')).toHaveText('Разговоры');
  // The chat page has its own switch in its top bar: one on the page, not two.
  await page.goto('/');
  await ready(page);
  await expect(page.locator('button.lang-switch')).toHaveCount(1);
  await expect(page.locator('.topbar button.lang-switch')).toHaveText('English');
  await page.locator('.topbar button.lang-switch').click();
  await expect(page.locator('html')).toHaveAttribute('lang', 'en');
});

test.describe('a fresh install with no API key', () => {
  const PORT = 3102;
  const BASE = `http://127.0.0.1:${PORT}`;
  let app: ChildProcess | undefined;
  test.beforeAll(async () => {
    app = await startLessonModeApp(PORT);
  });
  test.afterAll(async () => {
    await stop(app);
  });

  test('streams cited excerpts from the lessons, saying they are excerpts', async ({ page }) => {
    const errors = await openReady(page, `${BASE}/`);
    await expect(page.locator('.lesson-mode-note')).toContainText('no language model is connected');

    await page.evaluate(() => {
      const w = window as unknown as { samples: number[] };
      w.samples = [];
      new MutationObserver(() => {
        const el = document.querySelector('.msg-tutor .msg-text');
        if (el) w.samples.push((el.textContent || '').length);
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    await send(page, 'How does an SSE client resume after a dropped connection with Last-Event-ID?');
    const answer = page.locator('.msg-tutor').last();
    await expect(answer).toHaveAttribute('data-status', 'complete');
    const text = answer.locator('.msg-text');
    await expect(text).toContainText('These are excerpts from the course lessons, not a generated answer');
    await expect(text).toContainText('Last-Event-ID');
    // Every excerpt is cited, and every citation is a link to a source.
    await expect(text.locator('a.cite')).toHaveCount(3);
    await expect(answer.locator('.sources li')).toHaveCount(3);
    await expect(answer.locator('.sources a[href="/lessons/03-server-sent-events-en#last-event-id-and-resuming"]')).toHaveCount(1);
    // It streamed: the page saw the text grow many times.
    const growth = await page.evaluate(() => new Set((window as unknown as { samples: number[] }).samples).size);
    expect(growth).toBeGreaterThan(10);

    // A Russian question gets Russian excerpts.
    await send(page, 'Зачем нужна экспоненциальная задержка при переподключении?');
    const ru = page.locator('.msg-tutor').last();
    await expect(ru).toHaveAttribute('data-status', 'complete');
    await expect(ru.locator('.msg-text')).toContainText('Это выдержки из уроков курса');
    await expect(ru.locator('.sources a').first()).toHaveAttribute('href', /04-reconnection-ru/);
    expect(errors).toEqual([]);
  });
});
