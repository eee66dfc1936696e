// Accessible and comfortable everywhere (#14 item 6): axe-core finds nothing serious on
// any page in either colour scheme, the chat works from the keyboard alone, a screen
// reader hears an answer once, motion can be turned off, and a phone gets a drawer and
// no sideways scrolling. Screenshots at 360 and 1280 px in both languages land in
// test-results/ for a person to look at.
import { test, expect, type Page } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { ask, hydrated, openReady, ready, watchForTrouble } from './helpers';
import { APP, serversForThisFile } from './servers';

test.describe.configure({ mode: 'serial' });

serversForThisFile();

const LESSON = '/lessons/05-rate-limiting-en';

/** axe-core's serious and critical findings on the page as it is now, one line each. */
async function seriousViolations(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

async function useLanguage(page: Page, lang: 'en' | 'ru') {
  await page.context().addCookies([{ name: 'lang', value: lang, url: APP }]);
}

for (const scheme of ['light', 'dark'] as const) {
  test(`axe-core finds no serious or critical violations on any page (${scheme})`, async ({ page }) => {
    await page.emulateMedia({ colorScheme: scheme });
    const errors = watchForTrouble(page);
    const found: Record<string, string[]> = {};

    await page.goto('/');
    await ready(page);
    found['chat, empty'] = await seriousViolations(page);

    await ask(page, '[tokens=12] [cite=1] How does a token bucket limit a student?');
    found['chat, with an answer'] = await seriousViolations(page);

    await page.goto(LESSON);
    await hydrated(page);
    found['lesson'] = await seriousViolations(page);

    await page.goto('/signin');
    await hydrated(page);
    found['sign in'] = await seriousViolations(page);

    await page.goto('/signup');
    await hydrated(page);
    found['sign up'] = await seriousViolations(page);

    await page.goto('/no-such-page');
    await hydrated(page);
    found['404'] = await seriousViolations(page);

    expect(found).toEqual({
      'chat, empty': [],
      'chat, with an answer': [],
      lesson: [],
      'sign in': [],
      'sign up': [],
      '404': [],
    });
    expect(errors).toEqual([]);
  });
}

test('the dark theme follows prefers-color-scheme', async ({ page }) => {
  const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await page.emulateMedia({ colorScheme: 'light' });
  await openReady(page);
  const light = await background();
  await page.emulateMedia({ colorScheme: 'dark' });
  const dark = await background();
  expect(dark).not.toBe(light);
  // Dark means dark: each channel of the page's background is low.
  const channels = dark.match(/\d+/g)!.slice(0, 3).map(Number);
  expect(Math.max(...channels)).toBeLessThan(64);
});

test('keyboard only: Tab to the input, Enter sends, focus stays there, Esc stops the answer', async ({ page }) => {
  const errors = await openReady(page);
  const input = page.locator('.composer textarea');
  // Reach the input the way a keyboard user does, from the top of the page.
  let reached = false;
  for (let i = 0; i < 40 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await input.evaluate((el) => el === document.activeElement);
  }
  expect(reached).toBe(true);

  await page.keyboard.type('[tokens=200] [delay=50] Explain backoff slowly');
  await page.keyboard.press('Enter');
  const answer = page.locator('.msg-tutor').last();
  await expect(answer).toHaveAttribute('data-status', 'streaming');
  await expect(input).toBeFocused();
  await expect(input).toHaveValue('');

  await page.keyboard.press('Escape');
  await expect(answer).toHaveAttribute('data-status', 'stopped');
  await expect(page.locator('.msg-tutor .msg-note').last()).toBeVisible();
  await expect(input).toBeFocused();

  // The next question goes from the same place, no mouse needed.
  await page.keyboard.type('[tokens=3] And again');
  await page.keyboard.press('Enter');
  await expect(page.locator('.msg-tutor').last()).toHaveAttribute('data-status', 'complete', { timeout: 20_000 });
  await expect(input).toBeFocused();

  // Clicking Send or Stop gives focus back to the input too.
  await input.fill('[tokens=200] [delay=50] Once more, slowly');
  await page.locator('button.send').click();
  await expect(input).toBeFocused();
  await page.locator('button.stop').click();
  await expect(page.locator('.msg-tutor').last()).toHaveAttribute('data-status', 'stopped');
  await expect(input).toBeFocused();
  expect(errors).toEqual([]);
});

test('the live region announces an answer once, when it ends', async ({ page }) => {
  const errors = await openReady(page);
  await page.evaluate(() => {
    const w = window as unknown as { announced: string[] };
    w.announced = [];
    const region = document.querySelector('.announcer[aria-live]')!;
    new MutationObserver(() => {
      const text = (region.textContent ?? '').trim();
      if (w.announced[w.announced.length - 1] !== text) w.announced.push(text);
    }).observe(region, { subtree: true, childList: true, characterData: true });
  });
  const answer = await ask(page, '[tokens=30] [delay=40] What does a live region announce?');
  const announced = await page.evaluate(() => (window as unknown as { announced: string[] }).announced);
  expect(announced).toHaveLength(1);
  expect(announced[0]).toContain(answer.trim().split(/\s+/).slice(-3).join(' '));
  // No other live region holds the answer as it streams (that would read every token).
  await expect(page.locator('[aria-live] .msg-tutor, [aria-live].msg-tutor')).toHaveCount(0);
  expect(errors).toEqual([]);
});

test('reduced motion stops the streaming cursor blinking', async ({ page }) => {
  const cursorAnimation = async () => {
    const input = page.locator('.composer textarea');
    await input.fill('[tokens=200] [delay=50] Blink or not?');
    await input.press('Enter');
    const cursor = page.locator('.msg-tutor .cursor').last();
    await expect(cursor).toBeVisible();
    const name = await cursor.evaluate((el) => getComputedStyle(el).animationName);
    await page.keyboard.press('Escape');
    await expect(page.locator('.msg-tutor').last()).toHaveAttribute('data-status', 'stopped');
    return name;
  };
  await openReady(page);
  await page.emulateMedia({ reducedMotion: 'no-preference' });
  expect(await cursorAnimation()).not.toBe('none');
  await page.emulateMedia({ reducedMotion: 'reduce' });
  expect(await cursorAnimation()).toBe('none');
});

test('on a phone the sidebar is a drawer behind a button, and Esc closes it', async ({ page }) => {
  await page.setViewportSize({ width: 360, height: 740 });
  const errors = await openReady(page);
  const toggle = page.locator('button.sidebar-toggle');
  const sidebar = page.locator('nav.sidebar');
  await expect(toggle).toBeVisible();
  await expect(toggle).toHaveAttribute('aria-expanded', 'false');
  await expect(sidebar).toBeHidden();

  // Opened from the keyboard: focus goes into the drawer.
  await toggle.focus();
  await page.keyboard.press('Enter');
  await expect(toggle).toHaveAttribute('aria-expanded', 'true');
  await expect(sidebar).toBeVisible();
  await expect(sidebar.locator('.new-chat')).toBeFocused();

  // While it is open, Tab stays in the drawer and its button, as in a dialog.
  await page.keyboard.press('Shift+Tab');
  await expect(toggle).toBeFocused();
  await page.keyboard.press('Shift+Tab');
  expect(await page.evaluate(() => document.activeElement?.closest('nav.sidebar') != null)).toBe(true);
  await page.keyboard.press('Tab');
  await expect(toggle).toBeFocused();
  await page.keyboard.press('Tab');
  await expect(sidebar.locator('.new-chat')).toBeFocused();

  // Esc closes it and gives focus back to the button.
  await page.keyboard.press('Escape');
  await expect(sidebar).toBeHidden();
  await expect(toggle).toHaveAttribute('aria-expanded', 'false');
  await expect(toggle).toBeFocused();

  // The button closes it too, and following a link inside it closes it.
  await toggle.click();
  await expect(sidebar).toBeVisible();
  await toggle.click();
  await expect(sidebar).toBeHidden();
  await toggle.click();
  await sidebar.locator('.sidebar-lessons').click();
  await expect(page).toHaveURL(/\/lessons$/);
  await expect(sidebar).toBeHidden();

  // With JavaScript off the button could not work: the sidebar stays in the page.
  const noScript = await page.context().browser()!.newContext({ javaScriptEnabled: false, viewport: { width: 360, height: 740 } });
  const plain = await noScript.newPage();
  await plain.goto(APP + '/');
  await expect(plain.locator('nav.sidebar .new-chat')).toBeVisible();
  await expect(plain.locator('button.sidebar-toggle')).toBeHidden();
  expect(await plain.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
  await noScript.close();

  // On a wide screen there is no drawer: the sidebar is simply there.
  await page.setViewportSize({ width: 1280, height: 800 });
  await expect(toggle).toBeHidden();
  await expect(sidebar).toBeVisible();
  expect(errors).toEqual([]);
});

for (const lang of ['en', 'ru'] as const) {
  test(`nothing scrolls sideways at 360 px, screenshots at 360 and 1280 px (${lang})`, async ({ page }, testInfo) => {
    await useLanguage(page, lang);
    const errors = watchForTrouble(page);
    const pages: [string, string, (p: Page) => Promise<void>][] = [
      ['chat', '/', ready],
      ['lesson', LESSON.replace(/-en$/, `-${lang}`), hydrated],
      ['signin', '/signin', hydrated],
    ];
    for (const width of [360, 1280]) {
      await page.setViewportSize({ width, height: width === 360 ? 740 : 800 });
      for (const [name, url, wait] of pages) {
        await page.goto(url);
        await wait(page);
        await expect(page.locator('html')).toHaveAttribute('lang', lang);
        if (name === 'chat') await ask(page, '[tokens=40] A long answer that has to wrap on a narrow phone screen');
        const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
        expect(scrollWidth, `${name} at ${width} px`).toBeLessThanOrEqual(width);
        await page.screenshot({ path: testInfo.outputPath(`${name}-${lang}-${width}.png`), fullPage: true });
      }
    }
    // The drawer open, as a student on a phone sees it.
    await page.setViewportSize({ width: 360, height: 740 });
    await page.goto('/');
    await ready(page);
    await page.locator('button.sidebar-toggle').click();
    await expect(page.locator('nav.sidebar')).toBeVisible();
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
    await page.screenshot({ path: testInfo.outputPath(`drawer-${lang}-360.png`), animations: 'disabled' });
    expect(errors).toEqual([]);
  });
}
