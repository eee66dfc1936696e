import { test, expect } from '@playwright/test';
import { ask, openReady } from './helpers';
import { serversForThisFile } from './servers';

test.describe.configure({ mode: 'serial' });

serversForThisFile();

test('the page hydrates and answers under its Content-Security-Policy, which blocks a foreign script', async ({ page }) => {
  const violations: string[] = [];
  await page.exposeFunction('reportViolation', (what: string) => violations.push(what));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) =>
      (window as unknown as { reportViolation: (s: string) => void }).reportViolation(
        `${e.violatedDirective} ${e.blockedURI}`,
      ),
    );
  });
  const response = await page.goto('/');
  const policy = response?.headers()['content-security-policy'] ?? '';
  expect(policy).toContain("frame-ancestors 'none'");
  expect(policy).toMatch(/'nonce-[^']+'/);

  const errors = await openReady(page);
  const answer = await ask(page, '[tokens=3] hello under a policy');
  expect(answer.length).toBeGreaterThan(0);
  expect(violations).toEqual([]);
  expect(errors).toEqual([]);

  // An injected inline script (what an XSS would add) does not run.
  await page.evaluate(() => {
    const s = document.createElement('script');
    s.textContent = 'window.__injected = true;';
    document.body.appendChild(s);
  });
  await expect.poll(() => violations.length).toBeGreaterThan(0);
  expect(await page.evaluate(() => (window as unknown as { __injected?: boolean }).__injected)).toBeUndefined();
});
