import { test, expect } from '@playwright/test';
import { ask, cutTheSocketAtTheStartOf, openReady, ready } from './helpers';
import { serversForThisFile, upstreamLog } from './servers';

test.describe.configure({ mode: 'serial' });

serversForThisFile();

test('ask, reload: the history is in the server HTML and stays after hydration', async ({ page }) => {
  await openReady(page);
  const question = '[tokens=6] What is server-sent events?';
  const answer = await ask(page, question);
  expect(answer.length).toBeGreaterThan(0);
  await expect(page).toHaveURL(/\/c\/[0-9a-f-]{36}$/);
  await expect(page.locator('.conversation.active .conversation-title')).toHaveText(question);

  // The server's HTML for this browser's session holds the conversation, before any script.
  const html = await (await page.request.get(page.url())).text();
  expect(html).toContain(question);
  // Rendered as a Markdown paragraph, which drops the answer's trailing space.
  expect(html).toContain(answer.trim());

  await page.reload();
  await ready(page);
  await expect(page.locator('.msg-stored.msg-student .msg-text')).toHaveText(question);
  await expect(page.locator('.msg-stored.msg-tutor .msg-text')).toHaveText(answer);
  await expect(page.locator('.msg-stored.msg-tutor')).toHaveAttribute('data-status', 'complete');
  await expect(page.locator('.empty')).toHaveCount(0);
});

test('the history is readable with JavaScript off', async ({ browser, page }) => {
  await openReady(page);
  const answer = await ask(page, '[tokens=5] Readable without scripts?');
  await expect(page).toHaveURL(/\/c\//);
  const context = await browser.newContext({
    javaScriptEnabled: false,
    storageState: await page.context().storageState(),
  });
  const noJs = await context.newPage();
  await noJs.goto(page.url());
  await expect(noJs.locator('.msg-stored.msg-tutor .msg-text')).toHaveText(answer);
  await expect(noJs.locator('.conversation-title')).toHaveText('[tokens=5] Readable without scripts?');
  await context.close();
});

test('open an old conversation from the sidebar and continue it', async ({ page }) => {
  await openReady(page);
  const firstQuestion = '[tokens=4] first: what is a WebSocket?';
  const firstAnswer = await ask(page, firstQuestion);
  const firstUrl = page.url();

  await page.locator('a.new-chat').click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.locator('.empty')).toBeVisible();
  await ask(page, '[tokens=4] second: what is SSE?');
  await expect(page.locator('.conversation')).toHaveCount(2);
  // Newest first.
  await expect(page.locator('.conversation-title').first()).toHaveText('[tokens=4] second: what is SSE?');

  await page.locator('.conversation-title', { hasText: 'first: what is a WebSocket' }).click();
  await expect(page).toHaveURL(firstUrl);
  await expect(page.locator('.msg-stored.msg-student .msg-text')).toHaveText(firstQuestion);
  await expect(page.locator('.msg-stored.msg-tutor .msg-text')).toHaveText(firstAnswer);
  await expect(page.locator('.msg', { hasText: 'second: what is SSE' })).toHaveCount(0);

  await ask(page, '[tokens=3] and how do they differ?');
  // The model received the earlier turns of this conversation, and only those.
  // (The lesson sources added for the question are checked in lessons.spec.ts.)
  const sent = (await upstreamLog()).at(-1)!;
  const turns = sent.messages.filter(
    (m) => !(m.role === 'system' && m.content.startsWith("Sources from the course's lessons")),
  );
  expect(turns.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user']);
  expect(turns[1].content).toBe(firstQuestion);
  expect(turns[2].content.trim()).toBe(firstAnswer.trim());
  expect(turns[3].content).toBe('[tokens=3] and how do they differ?');

  await page.reload();
  await ready(page);
  await expect(page.locator('.msg-stored')).toHaveCount(4);
});

test('rename and delete a conversation from the sidebar', async ({ page }) => {
  await openReady(page);
  await ask(page, '[tokens=2] to be renamed');
  const item = page.locator('.conversation.active');
  await expect(item.getByRole('button', { name: 'Delete', exact: true })).toBeVisible();
  await item.getByRole('button', { name: 'Rename', exact: true }).click();
  const input = item.locator('input.rename-input');
  await input.fill('Streaming, explained');
  await input.press('Enter');
  await expect(item.locator('.conversation-title')).toHaveText('Streaming, explained');
  await page.reload();
  await ready(page);
  await expect(page.locator('.conversation.active .conversation-title')).toHaveText('Streaming, explained');

  // A title the server refuses (past the field's maxlength, as a hand-edited page
  // sends it) says why in the page's words, and the title stays.
  await page.locator('.conversation.active button.rename').click();
  const tooLong = page.locator('.conversation.active input.rename-input');
  await tooLong.evaluate((el) => el.removeAttribute('maxlength'));
  await tooLong.fill('x'.repeat(130));
  await tooLong.press('Enter');
  const refusal = page.locator('.conversation.active .msg-error');
  await expect(refusal).toHaveAttribute('data-code', 'invalid_title');
  await expect(refusal).toHaveText('A title has 1 to 120 characters.');
  await expect(page.locator('.conversation.active .conversation-title')).toHaveText('Streaming, explained');

  const count = await page.locator('.conversation').count();
  await page.locator('.conversation.active button.delete').click();
  await expect(page.locator('.conversation.active button.delete')).toHaveText('Delete?');
  await page.locator('.conversation.active button.delete').click();
  await expect(page.locator('.conversation')).toHaveCount(count - 1);
  await expect(page).toHaveURL(/\/$/);
  await expect(page.locator('.empty')).toBeVisible();
});

test('reload mid-answer: the answer is still being written, and the page follows it to the end', async ({ page }) => {
  await openReady(page);
  const input = page.locator('.composer textarea');
  await input.fill('[tokens=150] [delay=60] a long answer to reload in the middle of');
  await input.press('Enter');
  const live = page.locator('.msg-tutor:not(.msg-stored)');
  await expect(live).toHaveAttribute('data-status', 'streaming');
  await expect(page).toHaveURL(/\/c\//);
  await expect.poll(async () => ((await live.locator('.msg-text').textContent()) ?? '').length).toBeGreaterThan(40);

  await page.reload();
  await ready(page);
  const answer = page.locator('.msg-tutor').last();
  // Written on the server while the page was away, and still going.
  await expect(answer).toHaveAttribute('data-status', 'streaming');
  await expect(answer.locator('.cursor')).toBeVisible();
  await expect(page.locator('.composer textarea')).toBeDisabled();
  await expect(answer).toHaveAttribute('data-status', 'complete', { timeout: 20_000 });
  await expect(answer.locator('.cursor')).toHaveCount(0);
  const sent = (await upstreamLog()).at(-1)!;
  expect(sent.completed).toBe(true);
  await expect(answer.locator('.msg-text')).toHaveText(sent.answer);
  await expect(page.locator('.composer textarea')).toBeEnabled();
});

test('the network drops after a question went out and before its answer began: the answer comes, asked once', async ({ page }) => {
  const cut = await cutTheSocketAtTheStartOf(page, 'ask');
  await openReady(page);
  const question = '[tokens=30] [delay=40] asked just as the network dropped';
  await page.locator('.composer textarea').fill(question);
  await page.locator('.composer textarea').press('Enter');
  const answer = page.locator('.msg-tutor:not(.msg-stored)');
  await expect.poll(cut).toBe(true);
  // The page reconnects, sends the same question again, and follows the answer the
  // server began for the first: to its end, with no error and no second question.
  await expect(answer).toHaveAttribute('data-status', 'complete', { timeout: 20_000 });
  await expect(page.locator('.msg-error')).toHaveCount(0);
  const sent = (await upstreamLog()).filter((r) => r.messages.some((m) => m.content.includes(question)));
  expect(sent.length).toBe(1);
  await expect(answer.locator('.msg-text')).toHaveText(sent[0].answer);
  await expect(page).toHaveURL(/\/c\//);
  await page.reload();
  await ready(page);
  await expect(page.locator('.msg-student .msg-text')).toHaveText([question]);
  await expect(page.locator('.msg-tutor .msg-text')).toHaveText([sent[0].answer]);
});

test('a reload just after Enter, before the question reached the server: the page asks it again, once', async ({ page }) => {
  // The first question any socket of this page carries is lost on the way: the
  // server never hears of it.
  let lost = false;
  await page.routeWebSocket(/\/ws\/chat/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((message) => {
      if (!lost && String(message).includes('"type":"ask"')) {
        lost = true;
        return;
      }
      server.send(message);
    });
    server.onMessage((message) => ws.send(message));
  });
  await openReady(page);
  const question = '[tokens=20] [delay=30] asked just before a reload';
  await page.locator('.composer textarea').fill(question);
  await page.locator('.composer textarea').press('Enter');
  await expect.poll(() => lost).toBe(true);
  await expect(page.locator('.msg-tutor:not(.msg-stored)')).toHaveAttribute('data-status', 'waiting');

  await page.reload();
  await ready(page);
  // The tab kept the question: shown again, sent again, answered.
  await expect(page.locator('.msg-student .msg-text')).toHaveText([question]);
  const answer = page.locator('.msg-tutor:not(.msg-stored)');
  await expect(answer).toHaveAttribute('data-status', 'complete', { timeout: 20_000 });
  await expect(page).toHaveURL(/\/c\//);
  const sent = (await upstreamLog()).filter((r) => r.messages.some((m) => m.content.includes(question)));
  expect(sent.length).toBe(1);
  await page.reload();
  await ready(page);
  await expect(page.locator('.msg-student .msg-text')).toHaveText([question]);
  await expect(page.locator('.msg-tutor .msg-text')).toHaveText([sent[0].answer]);
});

test('the same words asked again and cut off by a reload before they reached the server: asked again, not taken for the first', async ({ page }) => {
  // The second question any socket of this page carries is lost on the way.
  let asks = 0;
  await page.routeWebSocket(/\/ws\/chat/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((message) => {
      if (String(message).includes('"type":"ask"') && ++asks === 2) return;
      server.send(message);
    });
    server.onMessage((message) => ws.send(message));
  });
  await openReady(page);
  const question = '[tokens=6] [stamp] explain backoff once more';
  await ask(page, question);
  await page.locator('.composer textarea').fill(question);
  await page.locator('.composer textarea').press('Enter');
  await expect.poll(() => asks).toBe(2);
  await expect(page.locator('.msg-tutor:not(.msg-stored)').last()).toHaveAttribute('data-status', 'waiting');

  await page.reload();
  await ready(page);
  // The page has the first question stored, in the same words: the tab's copy is
  // still this one's (its `ask_id` differs), shown again and asked.
  await expect(page.locator('.msg-student .msg-text')).toHaveText([question, question]);
  await expect(page.locator('.msg-tutor:not(.msg-stored)')).toHaveAttribute('data-status', 'complete', { timeout: 20_000 });
  const sent = (await upstreamLog()).filter((r) => r.messages.some((m) => m.content.includes(question)));
  expect(sent.length).toBe(2);
  await page.reload();
  await ready(page);
  await expect(page.locator('.msg-student .msg-text')).toHaveText([question, question]);
  await expect(page.locator('.msg-tutor .msg-text')).toHaveText([sent[0].answer, sent[1].answer]);
});

test('a reload while the answer had begun but its start had not arrived: the page follows that answer, asked once', async ({ page }) => {
  // The first socket that carries a question hears nothing from the server after
  // it: the server stores and answers the question (its `start` goes out), the page
  // never hears so.
  let deaf = false;
  let startSent = false;
  await page.routeWebSocket(/\/ws\/chat/, (ws) => {
    const server = ws.connectToServer();
    let mine = false;
    ws.onMessage((message) => {
      if (!deaf && String(message).includes('"type":"ask"')) {
        deaf = true;
        mine = true;
      }
      server.send(message);
    });
    server.onMessage((message) => {
      if (!mine) ws.send(message);
      else if (String(message).includes('"type":"start"')) startSent = true;
    });
  });
  await openReady(page);
  const question = '[tokens=60] [delay=40] asked, and its start never came';
  await page.locator('.composer textarea').fill(question);
  await page.locator('.composer textarea').press('Enter');
  await expect.poll(() => startSent).toBe(true);
  await expect(page.locator('.msg-tutor:not(.msg-stored)')).toHaveAttribute('data-status', 'waiting');

  await page.reload();
  await ready(page);
  const answer = page.locator('.msg-tutor:not(.msg-stored)');
  await expect(answer).toHaveAttribute('data-status', 'complete', { timeout: 20_000 });
  await expect(page.locator('.msg-error')).toHaveCount(0);
  const sent = (await upstreamLog()).filter((r) => r.messages.some((m) => m.content.includes(question)));
  expect(sent.length).toBe(1);
  await expect(answer.locator('.msg-text')).toHaveText(sent[0].answer);
  await expect(page).toHaveURL(/\/c\//);
  await page.reload();
  await ready(page);
  await expect(page.locator('.msg-student .msg-text')).toHaveText([question]);
  await expect(page.locator('.msg-tutor .msg-text')).toHaveText([sent[0].answer]);
});

test('a question whose answer began while the student was on another page is not asked again by a later page', async ({ page }) => {
  // The server's `start` for the first question is held until the page has left
  // the chat for the lessons.
  let release: (() => void) | null = null;
  await page.routeWebSocket(/\/ws\/chat/, (ws) => {
    const server = ws.connectToServer();
    let held: (string | Buffer)[] | null = null;
    ws.onMessage((message) => {
      if (release === null && String(message).includes('"type":"ask"')) {
        held = [];
        release = () => {
          for (const m of held ?? []) ws.send(m);
          held = null;
        };
      }
      server.send(message);
    });
    server.onMessage((message) => {
      if (held !== null) held.push(message);
      else ws.send(message);
    });
  });
  await openReady(page);
  const question = '[tokens=5] asked, then off to the lessons';
  await page.locator('.composer textarea').fill(question);
  await page.locator('.composer textarea').press('Enter');
  await expect.poll(() => release !== null).toBe(true);
  await page.locator('a.sidebar-lessons').click();
  await expect(page).toHaveURL(/\/lessons$/);
  release!();
  await expect.poll(async () => (await upstreamLog()).filter((r) => r.messages.some((m) => m.content.includes(question))).length).toBe(1);
  await page.waitForTimeout(300); // the start and the answer reach the page
  // A new chat, loaded: empty, and nothing asked again.
  await page.goto('/');
  await ready(page);
  await expect(page.locator('.empty')).toBeVisible();
  await page.waitForTimeout(500);
  await expect(page.locator('.msg-student')).toHaveCount(0);
  expect((await upstreamLog()).filter((r) => r.messages.some((m) => m.content.includes(question))).length).toBe(1);
});

test('leave a conversation mid-answer and come back: the page follows the answer to its end', async ({ page }) => {
  await openReady(page);
  await ask(page, '[tokens=3] an earlier conversation');
  await page.locator('a.new-chat').click();
  await expect(page.locator('.empty')).toBeVisible();
  const input = page.locator('.composer textarea');
  // Long enough (200 × 60 ms) to be still streaming when the page comes back to it.
  await input.fill('[tokens=200] [delay=60] a long answer to leave and come back to');
  await input.press('Enter');
  await expect(page.locator('.msg-tutor:not(.msg-stored)')).toHaveAttribute('data-status', 'streaming');
  await expect(page).toHaveURL(/\/c\//);
  const longUrl = page.url();

  // Away to the earlier conversation while the answer streams, then back by the sidebar.
  await page.locator('.conversation-title', { hasText: 'an earlier conversation' }).click();
  await expect(page.locator('.msg-stored.msg-student .msg-text')).toHaveText('[tokens=3] an earlier conversation');
  // The composer waits for that answer (the socket follows one at a time), and says so.
  await expect(page.locator('.composer-hint')).toContainText('still being written in another conversation');
  await page.waitForTimeout(800);
  await page.locator('.conversation-title', { hasText: 'a long answer to leave' }).click();
  await expect(page).toHaveURL(longUrl);
  const answer = page.locator('.msg-tutor').last();
  // Shown again while still being written, and followed from there to its end.
  await expect(answer).toHaveAttribute('data-status', 'streaming');
  await expect(answer).toHaveAttribute('data-status', 'complete', { timeout: 30_000 });
  const sent = (await upstreamLog()).at(-1)!;
  expect(sent.completed).toBe(true);
  await expect(answer.locator('.msg-text')).toHaveText(sent.answer);
  await expect(page.locator('.composer textarea')).toBeEnabled();
});
