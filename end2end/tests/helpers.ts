// What a student does in the page, written once for every spec: open the chat when it
// is ready to use, ask, and watch for script errors. Server processes are in servers.ts.
import { expect, type Page } from '@playwright/test';

/** Account pages have no chat socket: wait for hydration only. */
export async function hydrated(page: Page) {
  await expect(page.locator('[data-hydrated="true"]')).toBeVisible();
}

/** Server-rendered buttons exist before their handlers: wait for hydration and the socket. */
export async function ready(page: Page) {
  await hydrated(page);
  await expect(page.locator('.conn')).toHaveAttribute('data-state', 'connected');
}

/** Collects script errors and dialogs (the page never calls alert()); a test expects none. */
export function watchForTrouble(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // The page's Content-Security-Policy refusing something of ours is a bug too.
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) errors.push(m.text());
  });
  page.on('dialog', (d) => {
    errors.push(`unexpected dialog: ${d.message()}`);
    void d.dismiss();
  });
  return errors;
}

/** Opens the chat, ready to use, and collects script errors and dialogs. */
export async function openReady(page: Page, url = '/'): Promise<string[]> {
  const errors = watchForTrouble(page);
  await page.goto(url);
  await ready(page);
  return errors;
}

/** Types a question and sends it with Enter; does not wait for the answer. */
export async function send(page: Page, question: string) {
  await page.locator('.composer textarea').fill(question);
  await page.locator('.composer textarea').press('Enter');
}

/** Asks in the page and waits for the answer to complete; returns the answer's text. */
export async function ask(page: Page, question: string): Promise<string> {
  const answers = page.locator('.msg-tutor:not(.msg-stored)');
  const before = await answers.count();
  await send(page, question);
  const answer = answers.nth(before);
  await expect(answer).toHaveAttribute('data-status', 'complete', { timeout: 20_000 });
  return (await answer.locator('.msg-text').textContent()) ?? '';
}

/** Asks and waits until the answer is settled either way: complete, failed or refused. */
export async function askUntilSettled(page: Page, question: string) {
  await send(page, question);
  await expect(page.locator('.msg-tutor').last()).not.toHaveAttribute('data-status', /waiting|streaming/);
}

/**
 * Signs in on the open sign-in page and waits for the page to start over as the new
 * user: the form's redirect moves within the page first, then the page reloads
 * (account/view.rs), and a `goto` between the two would be cut short by the reload.
 */
export async function submitSignIn(page: Page, username: string, password: string) {
  await page.locator('input[name=username]').fill(username);
  await page.locator('input[name=password]').fill(password);
  const reloaded = page.waitForEvent('load');
  await page.locator('.account-form button[type=submit]').click();
  await reloaded;
  await ready(page);
}

/**
 * Every chat socket of the page passes through here. The first that carries a frame of
 * `type` (`ask`, `regenerate`, `edit`) is cut the moment the server's `start` comes back
 * after it: the frame reached the server, the page never heard so. Returns whether the
 * cut has happened.
 */
export async function cutTheSocketAtTheStartOf(page: Page, type: string): Promise<() => boolean> {
  let cut = false;
  await page.routeWebSocket(/\/ws\/chat/, (ws) => {
    const server = ws.connectToServer();
    let sent = false;
    ws.onMessage((message) => {
      if (!cut && String(message).includes(`"type":"${type}"`)) sent = true;
      server.send(message);
    });
    server.onMessage((message) => {
      if (!cut && sent && String(message).includes('"type":"start"')) {
        cut = true;
        ws.close({ code: 4000, reason: 'the network dropped' });
        server.close();
        return;
      }
      ws.send(message);
    });
  });
  return () => cut;
}
