// What the page downloads (docs/page.md): the release build splits the WASM
// (`cargo leptos build --split`), so a student's first visit loads the chat's code only;
// the lessons' and the teacher's pages bring theirs when they are first shown.
import { test, expect, type Page } from '@playwright/test';
import { ask, hydrated, openReady, watchForTrouble } from './helpers';
import { serversForThisFile } from './servers';

test.describe.configure({ mode: 'serial' });

serversForThisFile();

const LESSON = '/lessons/05-rate-limiting-en';

/** The names of the WASM files the page fetches, in the order it asks for them. */
function wasmFetched(page: Page): string[] {
  const names: string[] = [];
  page.on('request', (request) => {
    const path = new URL(request.url()).pathname;
    if (path.endsWith('.wasm')) names.push(path.split('/').pop()!);
  });
  return names;
}

test('the chat loads its own code only; the lessons bring theirs when the student opens them', async ({ page }) => {
  const wasm = wasmFetched(page);
  const errors = await openReady(page);
  await ask(page, '[tokens=4] what is backpressure');
  const conversation = page.url();
  // One module: the chat's. Nothing of the lessons or the teacher's pages.
  expect(wasm).toHaveLength(1);
  expect(wasm[0]).toMatch(/^tutor-chat\.[\w-]+\.wasm$/);
  expect(wasm.filter((name) => /^(split_|chunk_)/.test(name))).toEqual([]);

  // The sidebar's link moves within the page (no reload) and fetches the lesson list's code.
  await page.evaluate(() => ((window as unknown as { stillHere: boolean }).stillHere = true));
  await page.locator('.sidebar-lessons').click();
  await expect(page).toHaveURL(/\/lessons$/);
  const lessons = page.locator('.lesson-list li a');
  await expect(lessons.first()).toBeVisible();
  expect(await page.evaluate(() => (window as unknown as { stillHere?: boolean }).stillHere)).toBe(true);
  expect(wasm.some((name) => name.startsWith('split_lesson_list_page.'))).toBe(true);

  // One lesson, then back to the conversation: it and the socket are still there.
  await page.locator(`.lesson-list a[href="${LESSON}"]`).click();
  await expect(page.locator('article.lesson')).toContainText('A token bucket holds up to N tokens');
  expect(wasm.some((name) => name.startsWith('split_lesson_page.'))).toBe(true);
  await page.goBack();
  await page.goBack();
  await expect(page).toHaveURL(conversation);
  await expect(page.locator('.msg-tutor')).toHaveCount(1);
  await expect(page.locator('.conn')).toHaveAttribute('data-state', 'connected');
  expect(await page.evaluate(() => (window as unknown as { stillHere?: boolean }).stillHere)).toBe(true);

  expect(wasm.some((name) => /teach|queue/.test(name))).toBe(false);
  expect(errors).toEqual([]);
});

test('a lesson opened from a link names its code in the page, loads it and works', async ({ page }) => {
  const wasm = wasmFetched(page);
  const errors = watchForTrouble(page);
  const response = await page.goto(LESSON);
  // The server names the lesson's code (and the chunks it shares) for the browser to
  // fetch beside the main module, not after it.
  const links = (await response!.text()).match(/<link [^>]*>/g) ?? [];
  const preloaded = links.filter((link) => link.includes('rel="preload"'));
  expect(preloaded.some((link) => /href="\/pkg\/split_lesson_page\.[^"]+\.wasm"/.test(link))).toBe(true);
  expect(preloaded.some((link) => /teach|queue/.test(link))).toBe(false);
  await hydrated(page);
  await expect(page.locator('article.lesson h2#token-bucket')).toHaveText('Token bucket');
  expect(wasm.some((name) => name.startsWith('split_lesson_page.'))).toBe(true);

  // Hydrated for real: the page's own link moves within it.
  await page.evaluate(() => ((window as unknown as { stillHere: boolean }).stillHere = true));
  await page.locator('.lesson-nav a[href="/lessons"]').click();
  await expect(page.locator('.lesson-list li a').first()).toBeVisible();
  expect(await page.evaluate(() => (window as unknown as { stillHere?: boolean }).stillHere)).toBe(true);
  expect(errors).toEqual([]);
});

test('a page whose code does not arrive says so, the chat goes on, and a reload brings the page', async ({ page }) => {
  const errors = await openReady(page);
  await ask(page, '[tokens=3] first question');
  const conversation = page.url();
  // As for a page left open across a release that removed its parts, or gone offline.
  const gone = /\/pkg\/split_lesson_list_page\./;
  await page.route(gone, (route) => route.fulfill({ status: 404, body: 'gone' }));
  await page.locator('.sidebar-lessons').click();
  const missing = page.locator('.part-missing');
  await expect(missing).toBeVisible();
  await expect(missing).toContainText('could not be loaded');
  await expect(page).toHaveURL(/\/lessons$/);

  // The rest of the page works: back to the conversation, and ask again.
  await page.goBack();
  await expect(page).toHaveURL(conversation);
  await expect(page.locator('.conn')).toHaveAttribute('data-state', 'connected');
  await ask(page, '[tokens=3] second question');
  await expect(page.locator('.msg-tutor')).toHaveCount(2);

  // Forward again: still missing. Then the part is back: the button loads the page afresh.
  await page.goForward();
  await expect(missing).toBeVisible();
  await page.unroute(gone);
  await page.locator('.reload-page').click();
  await expect(page.locator('.lesson-list li a').first()).toBeVisible();
  await hydrated(page);
  await expect(missing).toHaveCount(0);
  // Hydrated for real: the list's links move within the page.
  await page.evaluate(() => ((window as unknown as { stillHere: boolean }).stillHere = true));
  await page.locator(`.lesson-list a[href="${LESSON}"]`).click();
  await expect(page.locator('article.lesson h2#token-bucket')).toHaveText('Token bucket');
  expect(await page.evaluate(() => (window as unknown as { stillHere?: boolean }).stillHere)).toBe(true);
  expect(errors).toEqual([]);
});

test('a lesson opened from a link whose code does not arrive loads once more, then stays readable', async ({ page }) => {
  const errors = watchForTrouble(page);
  let loads = 0;
  page.on('load', () => loads++);
  let refused = 0;
  const gone = /\/pkg\/split_lesson_page\./;
  await page.route(gone, (route) => {
    refused++;
    return route.fulfill({ status: 404, body: 'gone' });
  });
  await page.goto(LESSON);
  // The first failure loads the page again (a release may have replaced the parts);
  // the second leaves the server's page as it is, without a loop and without a crash.
  await expect.poll(() => refused).toBe(2);
  await page.waitForLoadState('load');
  expect(loads).toBe(2);
  await expect(page.locator('article.lesson h2#token-bucket')).toHaveText('Token bucket');
  await expect(page.locator('[data-hydrated="true"]')).toHaveCount(0);

  // Its links still work, as plain links: the lesson list loads and hydrates.
  await page.locator('.lesson-nav a[href="/lessons"]').click();
  await expect(page).toHaveURL(/\/lessons$/);
  await hydrated(page);
  await expect(page.locator('.lesson-list li a').first()).toBeVisible();
  expect(loads).toBe(3);
  expect(errors).toEqual([]);
});
