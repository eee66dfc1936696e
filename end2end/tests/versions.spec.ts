// Regenerate and edit with versions (issue #14, part 1): a student asks again, edits a
// question, and moves between versions with the mouse and with the keyboard alone;
// the page is rendered with the chosen branch after a reload.
import { test, expect, type Page } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { ask, cutTheSocketAtTheStartOf, openReady, ready } from './helpers';
import { serversForThisFile, upstreamLog } from './servers';

test.describe.configure({ mode: 'serial' });

serversForThisFile();

/** The answer on screen (stored or live), once settled. */
const answer = (page: Page) => page.locator('.msg-tutor').last();
const question = (page: Page) => page.locator('.msg-student').last();

async function settled(page: Page) {
  await expect(answer(page)).toHaveAttribute('data-status', 'complete', { timeout: 20_000 });
}

test('regenerate, edit and switch versions; a reload shows the chosen branch', async ({ page }) => {
  const errors = await openReady(page);
  // `[stamp]`: each answer's text differs, so versions can be told apart.
  const first = await ask(page, '[tokens=3] [stamp] What is SSE?');

  await answer(page).locator('.regenerate').click();
  // The new version shows first (its switcher), then it settles.
  await expect(answer(page).locator('.version-label')).toHaveText('2 / 2');
  await settled(page);
  const second = (await answer(page).locator('.msg-text').textContent()) ?? '';
  expect(second).not.toEqual(first);
  expect(second.trim()).not.toEqual('');

  await answer(page).locator('.version-previous').click();
  await expect(answer(page).locator('.version-label')).toHaveText('1 / 2');
  await expect(answer(page).locator('.msg-text')).toHaveText(first);
  await expect(answer(page).locator('.version-previous')).toBeDisabled();

  // Edit the question: a new version of it, answered from its new text.
  await question(page).locator('.edit-question-button').click();
  const field = question(page).locator('.edit-input');
  await expect(field).toHaveValue('[tokens=3] [stamp] What is SSE?');
  await field.fill('[tokens=2] [stamp] What is SSE, in one line?');
  await question(page).locator('.edit-send').click();
  await expect(question(page).locator('.version-label')).toHaveText('2 / 2');
  await settled(page);
  await expect(question(page).locator('.msg-text')).toHaveText('[tokens=2] [stamp] What is SSE, in one line?');
  await expect(answer(page).locator('.versions')).toHaveCount(0);
  await expect(page.locator('.msg-student')).toHaveCount(1);

  // Back to the first question: its answers come back, the newest shown.
  await question(page).locator('.version-previous').click();
  await expect(question(page).locator('.msg-text')).toHaveText('[tokens=3] [stamp] What is SSE?');
  await expect(answer(page).locator('.version-label')).toHaveText('2 / 2');
  await expect(answer(page).locator('.msg-text')).toHaveText(second);

  // A reload renders the same branch on the server.
  await page.reload();
  await ready(page);
  await expect(question(page).locator('.msg-text')).toHaveText('[tokens=3] [stamp] What is SSE?');
  await expect(question(page).locator('.version-label')).toHaveText('1 / 2');
  await expect(answer(page).locator('.msg-text')).toHaveText(second);
  const axe = await new AxeBuilder({ page }).analyze();
  const serious = axe.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(serious.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)).toEqual([]);
  expect(errors).toEqual([]);
});

test('the network drops after a regenerate went out and before its answer began: the new version comes, made once', async ({ page }) => {
  const cut = await cutTheSocketAtTheStartOf(page, 'regenerate');
  const errors = await openReady(page);
  const asked = '[tokens=30] [delay=40] [stamp] regenerated as the network dropped';
  const first = await ask(page, asked);
  await answer(page).locator('.regenerate').click();
  await expect.poll(cut).toBe(true);
  // The page reconnects, sends the same regenerate again, and follows the version the
  // server began: no "connection lost", no third version.
  await expect(answer(page).locator('.version-label')).toHaveText('2 / 2', { timeout: 20_000 });
  await settled(page);
  await expect(page.locator('.msg-error')).toHaveCount(0);
  const sent = (await upstreamLog()).filter((r) => r.messages.some((m) => m.content.includes(asked)));
  expect(sent.length).toBe(2);
  await expect(answer(page).locator('.msg-text')).toHaveText(sent[1].answer);
  expect(sent[1].answer).not.toEqual(first);
  await page.reload();
  await ready(page);
  await expect(answer(page).locator('.version-label')).toHaveText('2 / 2');
  await expect(answer(page).locator('.msg-text')).toHaveText(sent[1].answer);
  expect(errors).toEqual([]);
});

test('keyboard only: ask, regenerate, switch versions and edit', async ({ page }) => {
  const errors = await openReady(page);
  const composer = page.locator('.composer textarea');
  await composer.focus();
  await page.keyboard.type('[tokens=3] [stamp] Keyboard question');
  await page.keyboard.press('Enter');
  await settled(page);
  await expect(composer).toBeFocused();

  await answer(page).locator('.regenerate').focus();
  await page.keyboard.press('Enter');
  await expect(answer(page).locator('.version-label')).toHaveText('2 / 2');
  await settled(page);

  // The switch redraws the list; the keyboard stays on the switcher.
  await answer(page).locator('.version-previous').focus();
  await page.keyboard.press('Enter');
  await expect(answer(page).locator('.version-label')).toHaveText('1 / 2');
  await expect(answer(page).locator('.version-next')).toBeFocused();
  await page.keyboard.press('Enter');
  await expect(answer(page).locator('.version-label')).toHaveText('2 / 2');
  await expect(answer(page).locator('.version-previous')).toBeFocused();

  // Edit opens in place with the focus in the field; Esc leaves it, Enter sends.
  await question(page).locator('.edit-question-button').focus();
  await page.keyboard.press('Enter');
  const field = question(page).locator('.edit-input');
  await expect(field).toBeFocused();
  await page.keyboard.press('Escape');
  await expect(field).toHaveCount(0);
  await question(page).locator('.edit-question-button').focus();
  await page.keyboard.press('Enter');
  await expect(field).toBeFocused();
  await page.keyboard.press('ControlOrMeta+a');
  await page.keyboard.type('[tokens=2] Keyboard question, edited');
  await page.keyboard.press('Enter');
  await expect(question(page).locator('.version-label')).toHaveText('2 / 2');
  await settled(page);
  await expect(question(page).locator('.msg-text')).toHaveText('[tokens=2] Keyboard question, edited');
  expect(errors).toEqual([]);
});
