import { test, expect } from '@playwright/test';
import * as fs from 'node:fs';
import { ask, openReady } from './helpers';
import { serversForThisFile } from './servers';

// Searching one's conversations and downloading one (issue #14).
test.describe.configure({ mode: 'serial' });

serversForThisFile();

test('the sidebar finds conversations by their words, in English and Russian', async ({ page }) => {
  const errors = await openReady(page);
  const english = '[tokens=3] How do zeppelins stay up?';
  await ask(page, english);
  await page.locator('.new-chat').click();
  await expect(page).toHaveURL(/\/$/);
  const russian = '[tokens=3] Как работают потоковые ответы?';
  await ask(page, russian);
  await expect(page.locator('.conversation')).toHaveCount(2);

  const search = page.locator('.sidebar-search input');
  await search.fill('zeppelin');
  await search.press('Enter');
  await expect(page.locator('.search-results .conversation')).toHaveCount(1);
  await expect(page.locator('.search-results .conversation-title')).toHaveText(english);

  await search.fill('потоковый ответ');
  await search.press('Enter');
  await expect(page.locator('.search-results .conversation-title')).toHaveText(russian);

  await search.fill('nothing like this');
  await search.press('Enter');
  await expect(page.locator('.search-empty')).toBeVisible();

  // Clearing the search brings the whole list back; a result opens its conversation.
  await page.locator('.search-clear').click();
  await expect(page.locator('.conversation')).toHaveCount(2);
  await search.fill('zeppelins');
  await search.press('Enter');
  await page.locator('.search-results .conversation-title').click();
  await expect(page.locator('.msg-stored.msg-student .msg-text')).toHaveText(english);
  expect(errors).toEqual([]);
});

test('a conversation downloads as Markdown from its page', async ({ page }) => {
  const errors = await openReady(page);
  const question = '[tokens=4] What is a token bucket?';
  const answer = await ask(page, question);
  await expect(page).toHaveURL(/\/c\/[0-9a-f-]{36}$/);

  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('.export-link').click()]);
  // The title as the name (RFC 6266 filename*), as far as the file system allows.
  expect(download.suggestedFilename()).toMatch(/What is a token bucket.*\.md$/);
  const text = fs.readFileSync((await download.path())!, 'utf8');
  expect(text.startsWith(`# ${question}\n`)).toBe(true);
  expect(text).toMatch(/\n## Question · \d{4}-\d\d-\d\d \d\d:\d\d UTC\n\n/);
  expect(text).toContain(`\n${question}\n`);
  expect(text).toContain(`\n${answer.trim()}\n`);
  // The page itself stays put: a download, not a navigation.
  await expect(page.locator('.msg-tutor').last()).toHaveAttribute('data-status', 'complete');
  expect(errors).toEqual([]);
});

test('printing shows the conversation without the sidebar, composer or buttons', async ({ page }) => {
  await openReady(page);
  await ask(page, '[tokens=3] Printable?');
  await page.emulateMedia({ media: 'print' });
  await expect(page.locator('.sidebar')).toBeHidden();
  await expect(page.locator('.composer')).toBeHidden();
  await expect(page.locator('.export-link')).toBeHidden();
  await expect(page.locator('.msg-student').last()).toBeVisible();
  await page.emulateMedia({ media: 'screen' });
  await expect(page.locator('.sidebar')).toBeVisible();
});

test('a tab opened before the first question lists the conversation the other tab starts', async ({ browser }) => {
  // A new student with two tabs open and no question asked yet.
  const context = await browser.newContext();
  const first = await context.newPage();
  const errors = await openReady(first);
  const second = await context.newPage();
  await openReady(second);
  await expect(first.locator('.conversation')).toHaveCount(0);

  const question = '[tokens=2] Two tabs, one student';
  await ask(second, question);
  await expect(first.locator('.conversation-title')).toHaveText(question);
  // Its meter counts the question too.
  await expect(first.locator('.budget')).toHaveAttribute('data-remaining', await second.locator('.budget').getAttribute('data-remaining') ?? '');
  // And from then on the tab hears the student's doings: a second conversation.
  await second.locator('.new-chat').click();
  await ask(second, '[tokens=2] And a second one');
  await expect(first.locator('.conversation')).toHaveCount(2);
  expect(errors).toEqual([]);
  await context.close();
});
