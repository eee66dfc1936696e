// The teacher side, as a student and a teacher use it in two browsers at once: a 👎
// with a reason, shared; "ask my teacher"; the teacher's dashboard, queue and reply;
// the reply appearing on the student's open page without a reload.
import { test, expect, type Browser, type Page } from '@playwright/test';
import { ask, hydrated, openReady, submitSignIn } from './helpers';
import { addTeacher, serversForThisFile } from './servers';

test.describe.configure({ mode: 'serial' });

serversForThisFile({ freshDatabase: true });

const TEACHER = 'ms_teacher';
const PASSWORD = 'a long teacher password';

async function signInAsTeacher(browser: Browser): Promise<Page> {
  // A teacher nine hours east of UTC (Tokyo keeps no summer time): the queue's times are
  // shown in the teacher's own zone.
  const page = await (await browser.newContext({ timezoneId: 'Asia/Tokyo' })).newPage();
  await page.goto('/signin');
  await hydrated(page);
  await submitSignIn(page, TEACHER, PASSWORD);
  return page;
}

test('a student asks the teacher, the teacher replies, the open page shows it live', async ({ page, browser }, testInfo) => {
  await addTeacher(TEACHER, PASSWORD);
  const errors = await openReady(page);
  await ask(page, '[tokens=5] What is the difference between SSE and WebSocket?');
  const answer = page.locator('.msg-tutor').last();

  // 👎 with a reason, shared with the teacher.
  await answer.locator('.rate-down').click();
  const reasons = answer.locator('.feedback-reasons');
  await reasons.getByLabel('Wrong').check();
  await reasons.getByLabel('Share this conversation with my teacher').check();
  await reasons.locator('.feedback-send').click();
  await expect(answer.locator('.feedback')).toHaveAttribute('data-rating', 'down');
  await expect(page.locator('.privacy-note')).toContainText('only if you share it');

  // Ask my teacher, with a note.
  await answer.locator('.ask-teacher summary').click();
  await answer.locator('.ask-teacher-form textarea').fill('Which one for a chat?');
  await answer.locator('.ask-teacher-send').click();
  await expect(answer.locator('.teacher-request')).toHaveAttribute('data-status', 'open');

  // The teacher sees both on the dashboard and in the queue.
  const teacher = await signInAsTeacher(browser);
  await teacher.goto('/teach');
  await hydrated(teacher);
  await expect(teacher.locator('.teach-ratings [data-rating="down"] td')).toHaveText('1');
  await teacher.screenshot({ path: testInfo.outputPath('teach-dashboard.png'), fullPage: true });
  await testInfo.attach('teach-dashboard', { path: testInfo.outputPath('teach-dashboard.png'), contentType: 'image/png' });
  await teacher.locator('.queue-link').click();
  await expect(teacher).toHaveURL(/\/teach\/queue$/);
  const request = teacher.locator('.queue-item[data-status="open"]');
  await expect(request).toHaveCount(1);
  await expect(request.locator('.queue-note')).toHaveText('Which one for a chat?');
  await expect(request.locator('.queue-student')).toHaveText(/^Guest \d+$/);
  const when = request.locator('.queue-when time');
  const utc = new Date((await when.getAttribute('datetime'))!);
  const tokyo = new Date(utc.getTime() + 9 * 3600_000).toISOString().slice(0, 16).replace('T', ' ');
  await expect(when).toHaveText(tokyo);
  await expect(when).toHaveAttribute('title', `${utc.toISOString().slice(0, 16).replace('T', ' ')} UTC`);
  await teacher.screenshot({ path: testInfo.outputPath('teach-queue.png'), fullPage: true });
  await testInfo.attach('teach-queue', { path: testInfo.outputPath('teach-queue.png'), contentType: 'image/png' });

  // The teacher opens the conversation and replies in Markdown.
  await request.locator('.queue-open-link').click();
  await hydrated(teacher);
  await expect(teacher.locator('.teacher-read .msg-rating')).toContainText('Wrong');
  await teacher.locator('.reply-form textarea').fill('For a chat: a **WebSocket**, since both sides talk.');
  await teacher.locator('.reply-send').click();
  await expect(teacher.locator('.teacher-read .msg-teacher')).toContainText('both sides talk');

  // The student's page, never reloaded, shows the reply marked as the teacher's.
  const reply = page.locator('.msg-teacher');
  await expect(reply).toContainText('For a chat: a WebSocket, since both sides talk.');
  await expect(reply.locator('strong')).toHaveText('WebSocket');
  await expect(reply.locator('.msg-who')).toHaveText('Your teacher');
  await expect(answer.locator('.teacher-request')).toHaveAttribute('data-status', 'answered');
  expect(errors).toEqual([]);

  // The teacher endorses the tutor's answer for the course FAQ, rewording it first.
  const endorsed = teacher.locator('.teacher-read .msg-tutor').first();
  await endorsed.locator('.endorse summary').click();
  await endorsed.locator('.endorse-form textarea[name=question]').fill('What is the difference between SSE and WebSocket?');
  await endorsed
    .locator('.endorse-form textarea[name=answer]')
    .fill('SSE streams from the server over plain HTTP; a WebSocket carries messages both ways.');
  await endorsed.locator('.endorse-form button[type=submit]').click();
  await expect(endorsed.locator('.form-done')).toBeVisible();

  // A second student's paraphrase gets the endorsed answer, with its badge.
  const second = await (await browser.newContext()).newPage();
  const secondErrors = await openReady(second);
  await ask(second, 'SSE vs WebSockets: how do they differ?');
  const direct = second.locator('.msg-tutor').last();
  await expect(direct).toContainText('a WebSocket carries messages both ways');
  await expect(direct.locator('.faq-badge')).toHaveText('answered by your teacher');
  await direct.locator('.faq-badge a').click();
  await expect(second).toHaveURL(/\/faq#faq-/);
  const entry = new URL(second.url()).hash;
  await expect(second.locator(`${entry}.faq-entry .faq-question`)).toHaveText('What is the difference between SSE and WebSocket?');
  expect(secondErrors).toEqual([]);
});
