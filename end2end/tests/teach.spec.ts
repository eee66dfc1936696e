// The course dashboard (/teach) as its teacher sees it: rendered by the server, then
// hydrated; inline SVG charts with table views; the period in the URL. Screenshots
// go to the test's output (desktop and phone widths) for a person to look at.
import { test, expect } from '@playwright/test';
import { ask, hydrated, openReady, submitSignIn, watchForTrouble } from './helpers';
import { addTeacher, serversForThisFile } from './servers';

test.describe.configure({ mode: 'serial' });

serversForThisFile({ freshDatabase: true });

const TEACHER = 'e2e_teacher';
const PASSWORD = 'the dashboard teacher password';

test('a teacher opens the dashboard; charts, tables and periods work, with and without JavaScript', async ({
  page,
  browser,
}, testInfo) => {
  // Something to count: a student asks two questions and rates one 👎.
  const studentErrors = await openReady(page);
  await ask(page, '[tokens=4] explain backpressure in streaming');
  await ask(page, '[tokens=4] what is a token bucket');
  const answer = page.locator('.msg-tutor').last();
  await answer.locator('.rate-down').click();
  await answer.locator('.feedback-reasons').getByLabel('Unclear').check();
  await answer.locator('.feedback-send').click();
  await expect(answer.locator('.feedback')).toHaveAttribute('data-rating', 'down');
  expect(studentErrors).toEqual([]);

  await addTeacher(TEACHER, PASSWORD);
  const context = await browser.newContext();
  const teacher = await context.newPage();
  const errors = watchForTrouble(teacher);
  await teacher.goto('/signin');
  await hydrated(teacher);
  await submitSignIn(teacher, TEACHER, PASSWORD);
  expect(new URL(teacher.url()).pathname).toBe('/');

  await teacher.goto('/teach');
  await hydrated(teacher);
  const dashboard = teacher.locator('.teach-page');
  await expect(dashboard).toHaveAttribute('data-days', '30');
  await expect(dashboard.locator('.teach-questions')).toHaveText('2');
  // Charts: one SVG each, labelled for screen readers, with its table view.
  const charts = dashboard.locator('figure.chart');
  await expect(charts).toHaveCount(3);
  for (const chart of await charts.all()) {
    await expect(chart.locator('svg[role="img"]')).toHaveAttribute('aria-label', /\S/);
    await expect(chart.locator('details table')).toHaveCount(1);
  }
  await expect(dashboard.locator('.ending-complete').first()).toBeVisible();
  await expect(dashboard.locator('tr[data-status="complete"] td')).toHaveText('2');
  await expect(dashboard.locator('.teach-downvotes tbody tr')).toHaveCount(1);
  await expect(dashboard.locator('.teach-downvotes tbody tr')).toContainText('not shared');
  // The table view opens.
  await charts.first().locator('summary').click();
  await expect(charts.first().locator('details table')).toBeVisible();
  await teacher.screenshot({ path: testInfo.outputPath('teach.png'), fullPage: true });
  await testInfo.attach('teach', { path: testInfo.outputPath('teach.png'), contentType: 'image/png' });

  // The period is a link, the URL carries it.
  await dashboard.locator('.teach-periods a', { hasText: '7' }).click();
  await teacher.waitForURL(/\/teach\?days=7$/);
  await expect(teacher.locator('.teach-page')).toHaveAttribute('data-days', '7');
  await expect(teacher.locator('.teach-periods a[aria-current="page"]')).toHaveAttribute('href', '/teach?days=7');

  // A phone.
  await teacher.setViewportSize({ width: 390, height: 844 });
  await teacher.goto('/teach?days=7');
  await hydrated(teacher);
  const width = await teacher.evaluate(() => document.documentElement.scrollWidth);
  expect(width).toBeLessThanOrEqual(390 + 1);
  await teacher.screenshot({ path: testInfo.outputPath('teach-phone.png'), fullPage: true });
  await testInfo.attach('teach-phone', { path: testInfo.outputPath('teach-phone.png'), contentType: 'image/png' });
  expect(errors).toEqual([]);

  // Without JavaScript: the server's page is the whole dashboard.
  const noJs = await browser.newContext({ javaScriptEnabled: false, storageState: await context.storageState() });
  const plain = await noJs.newPage();
  await plain.goto('/teach?days=90');
  await expect(plain.locator('.teach-page')).toHaveAttribute('data-days', '90');
  await expect(plain.locator('figure.chart svg')).toHaveCount(3);
  await plain.screenshot({ path: testInfo.outputPath('teach-no-js.png'), fullPage: true });
  await testInfo.attach('teach-no-js', { path: testInfo.outputPath('teach-no-js.png'), contentType: 'image/png' });
  await noJs.close();
  await context.close();
});
