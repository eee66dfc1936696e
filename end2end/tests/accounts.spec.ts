import { test, expect } from '@playwright/test';
import { ask, hydrated, openReady, ready, send, submitSignIn } from './helpers';
import { APP, serversForThisFile } from './servers';

test.describe.configure({ mode: 'serial' });

serversForThisFile();

const name = `student_${Date.now() % 1_000_000}`;
const password = 'a long enough password';

test('a guest signs up and keeps their conversation; sign out; sign in again', async ({ page }) => {
  await openReady(page);
  await send(page, '[tokens=3] asked before signing up');
  await expect(page.locator('.msg-tutor').last()).toHaveAttribute('data-status', 'complete');
  await expect(page.locator('.conversation')).toHaveCount(1);

  await page.locator('.sign-up-link').click();
  await expect(page).toHaveURL(/\/signup$/);
  await hydrated(page);
  await page.locator('input[name=username]').fill(name);
  await page.locator('input[name=password]').fill(password);
  await page.locator('.account-form button[type=submit]').click();
  await expect(page).toHaveURL(`${APP}/`);
  await ready(page);
  await expect(page.locator('.account-name')).toHaveText(name);
  await expect(page.locator('.conversation-title')).toHaveText('[tokens=3] asked before signing up');

  // A taken name is refused with a message, in the page.
  await page.goto('/signup');
  await hydrated(page);
  await page.locator('input[name=username]').fill(name.toUpperCase());
  await page.locator('input[name=password]').fill(password);
  await page.locator('.account-form button[type=submit]').click();
  await expect(page.locator('.form-error')).toContainText('taken');

  await openReady(page);
  await page.locator('.sign-out').click();
  await expect(page.locator('.sign-in-link')).toBeVisible();
  await expect(page.locator('.conversation')).toHaveCount(0);

  await page.goto('/signin');
  await hydrated(page);
  await page.locator('input[name=username]').fill(name);
  await page.locator('input[name=password]').fill('not the password');
  await page.locator('.account-form button[type=submit]').click();
  await expect(page.locator('.form-error')).toContainText('Wrong username or password');
  await page.locator('input[name=password]').fill(password);
  await page.locator('.account-form button[type=submit]').click();
  await expect(page).toHaveURL(`${APP}/`);
  await ready(page);
  await expect(page.locator('.account-name')).toHaveText(name);
  await expect(page.locator('.conversation-title')).toHaveText('[tokens=3] asked before signing up');
  // The socket belongs to the account: asking works.
  await send(page, '[tokens=2] asked signed in');
  await expect(page.locator('.msg-tutor').last()).toHaveAttribute('data-status', 'complete');
});

test('signing in in one tab moves the other tabs to the account, without a reload', async ({ browser }) => {
  // The account, made earlier on another computer.
  const tabName = `tabs_${Date.now() % 1_000_000}`;
  const elsewhere = await browser.newContext();
  const signUp = await elsewhere.newPage();
  await signUp.goto('/signup');
  await hydrated(signUp);
  await signUp.locator('input[name=username]').fill(tabName);
  await signUp.locator('input[name=password]').fill(password);
  await signUp.locator('.account-form button[type=submit]').click();
  await expect(signUp.locator('.account-name')).toHaveText(tabName);
  await elsewhere.close();

  // One browser, two tabs: the chat, asked in as a guest, and a sign-in in the other.
  const context = await browser.newContext();
  const chat = await context.newPage();
  const errors = await openReady(chat);
  await ask(chat, '[tokens=3] asked as a guest');
  await expect(chat.locator('.sign-in-link')).toBeVisible();
  const other = await context.newPage();
  await other.goto('/signin');
  await hydrated(other);
  await submitSignIn(other, tabName, password);
  await expect(other.locator('.account-name')).toHaveText(tabName);

  // The chat tab follows: it says who is signed in, lists the conversation it asked
  // in, tells of no ended session, and asks on as the account.
  await expect(chat.locator('.account-name')).toHaveText(tabName);
  await ready(chat);
  await expect(chat.locator('.conversation-title')).toHaveText('[tokens=3] asked as a guest');
  await expect(chat.locator('.msg-error')).toHaveCount(0);
  await ask(chat, '[tokens=2] asked after signing in in the other tab');
  await expect(chat.locator('.msg-error')).toHaveCount(0);
  await other.reload();
  await ready(other);
  await expect(other.locator('.conversation')).toHaveCount(1);
  expect(errors).toEqual([]);
  await context.close();
});

test('the forms work with JavaScript off', async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(`${APP}/signin`);
  await page.locator('input[name=username]').fill(name);
  await page.locator('input[name=password]').fill(password);
  await page.locator('.account-form button[type=submit]').click();
  await expect(page).toHaveURL(`${APP}/`);
  await expect(page.locator('.account-name')).toHaveText(name);
  await expect(page.locator('.conversation')).toHaveCount(2);
  await page.locator('.sign-out').click();
  await expect(page).toHaveURL(`${APP}/`);
  await expect(page.locator('.sign-in-link')).toBeVisible();
  await context.close();
});
