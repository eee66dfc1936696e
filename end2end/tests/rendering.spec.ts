import { test, expect, type Locator } from '@playwright/test';
import { ready, send, watchForTrouble } from './helpers';
import { APP, serversForThisFile, upstreamLog } from './servers';

test.describe.configure({ mode: 'serial' });

serversForThisFile();

test('model output renders as Markdown, and nothing in it runs, even split across chunks', async ({ page, context }) => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: APP });
  const errors = watchForTrouble(page);
  const images: string[] = [];
  page.on('request', (r) => {
    if (r.url().includes('tracker.example')) images.push(r.url());
  });
  await page.goto('/');
  await ready(page);
  // Watch for any active element appearing while the answer streams in.
  await page.evaluate(() => {
    const w = window as unknown as { dangerous: string[] };
    w.dangerous = [];
    new MutationObserver((records) => {
      for (const r of records)
        r.addedNodes.forEach((n) => {
          if (n instanceof Element) {
            // Inside a message's text: the page's own controls around it (the "ask my
            // teacher" <details>) are ours, not the model's.
            const found = [n, ...Array.from(n.querySelectorAll('*'))].filter((e) =>
              e.closest('.msg-body') !== null && (
                ['SCRIPT', 'IMG', 'SVG', 'IFRAME', 'DETAILS', 'svg'].includes(e.tagName) ||
                Array.from(e.attributes).some((a) => a.name.startsWith('on'))),
            );
            w.dangerous.push(...found.map((e) => e.outerHTML));
          }
        });
    }).observe(document.querySelector('#messages')!, { subtree: true, childList: true });
  });

  await send(page, '[xss] [delay=3] show me what you can do');
  const answer = page.locator('.msg-tutor').last();
  await expect(answer).toHaveAttribute('data-status', 'complete');
  const md = answer.locator('.md');

  // The attack text is visible, as text.
  await expect(md).toContainText("<script>window.__xss = 1; alert('script')</script>");
  await expect(md).toContainText('onerror=');
  await expect(md).toContainText('<iframe src="javascript:alert(7)"></iframe>');
  // Nothing ran, nothing active was ever in the page, no image was fetched.
  expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
  expect(await page.evaluate(() => (window as unknown as { dangerous: string[] }).dangerous)).toEqual([]);
  await expect(md.locator('script, img, svg, iframe, details')).toHaveCount(0);
  expect(images).toEqual([]);
  // Links: only the safe one, opened safely; the javascript: and data: links are text.
  const links = md.locator('a');
  await expect(links).toHaveCount(1);
  await expect(links.first()).toHaveAttribute('href', 'https://example.org/docs');
  await expect(links.first()).toHaveAttribute('rel', 'noopener noreferrer');
  await expect(links.first()).toHaveAttribute('target', '_blank');
  await expect(md).toContainText('a script link');
  // The Markdown still renders.
  await expect(md.locator('strong')).toHaveText('Still Markdown:');
  await expect(md.locator('p code')).toHaveText('inline code');
  const block = md.locator('.code-block code');
  await expect(block).toHaveText("<script>alert('in code')</script>\n");
  // The copy button copies the code block.
  await md.locator('.copy-code').click();
  await expect(md.locator('.copy-code')).toHaveAttribute('data-copied', 'true');
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe("<script>alert('in code')</script>\n");

  // The server renders the stored answer just as inertly.
  const conversation = new URL(page.url()).pathname;
  const html = await (await context.request.get(conversation)).text();
  expect(html).toContain('class="msg-text md"');
  expect(html).not.toContain('<script>window.__xss');
  expect(html).toContain('&lt;script&gt;window.__xss = 1;');
  await page.reload();
  await ready(page);
  await expect(page.locator('.msg-tutor .md').last()).toContainText("<script>window.__xss = 1;");
  await expect(page.locator('.msg-tutor .md').last().locator('script, img, svg, iframe, details')).toHaveCount(0);
  expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
  expect(errors).toEqual([]);
});

/** The HTML inside an answer's text, whichever elements the page split it into. */
function answerHtml(md: Locator): Promise<string> {
  return md.evaluate((el) => Array.from(el.children).map((part) => part.innerHTML).join(''));
}

test('a long answer streamed in thousands of chunks renders whole: every word, its lists and code blocks, and the HTML the server renders', async ({ page }) => {
  const errors = watchForTrouble(page);
  await page.goto('/');
  await ready(page);
  // 1,000 words in 2,000 chunks (half a word each) with headings, lists and code.
  await send(page, '[md] [tokens=1000] [delay=1] Explain it all at length');
  const answer = page.locator('.msg-tutor').last();
  // A finished block's element, taken while the answer still streams, stays the same
  // node to the end: finished blocks are not rendered again.
  await expect(answer.locator('.md h2')).not.toHaveCount(0);
  await answer.locator('.md h2').first().evaluate((h2) => {
    (window as unknown as { firstHeading: Element }).firstHeading = h2;
  });
  await expect(answer).toHaveAttribute('data-status', 'complete', { timeout: 50_000 });
  expect(
    await answer.locator('.md h2').first().evaluate((h2) => h2 === (window as unknown as { firstHeading: Element }).firstHeading),
  ).toBe(true);
  const sent = (await upstreamLog()).at(-1)!;
  expect(sent.completed).toBe(true);
  const md = answer.locator('.md');

  // Every word the model sent, in order: the Markdown's own marks and the copy buttons aside.
  const words = (text: string) => text.split(/\s+/).filter(Boolean).join(' ');
  const expected = words(sent.answer.replace(/^## /gm, '').replace(/^- /gm, '').replace(/^```.*$/gm, ''));
  const shown = await md.evaluate((el) => {
    const copy = el.cloneNode(true) as Element;
    copy.querySelectorAll('.copy-code').forEach((button) => button.remove());
    return copy.textContent ?? '';
  });
  expect(words(shown)).toBe(expected);
  expect(expected.split(' ').length).toBeGreaterThan(1000);
  await expect(md.locator('h2')).toHaveCount(10);
  await expect(md.locator('ul > li')).toHaveCount(40);
  await expect(md.locator('.code-block pre > code.language-rust')).toHaveCount(10);
  await expect(md.locator('.code-block code').first()).toHaveText('the moment it arrives. WebSocket\nkeeps one connection open, so\n');

  // What streamed in is exactly what the server renders for the stored answer.
  const live = await answerHtml(md);
  await page.reload();
  await ready(page);
  expect(await answerHtml(page.locator('.msg-tutor .md').last())).toBe(live);
  expect(errors).toEqual([]);
});


test('an answer that ends shows its last words at once, in a tab that gets no animation frames', async ({ page }) => {
  const errors = watchForTrouble(page);
  // A tab in the background gets no animation frames; the streaming text renders on
  // them. Here none ever comes.
  await page.addInitScript(() => {
    window.requestAnimationFrame = () => 0;
  });
  await page.goto('/');
  await ready(page);
  await send(page, '[tokens=5] [stamp] Five words, please');
  const answer = page.locator('.msg-tutor').last();
  await expect(answer).toHaveAttribute('data-status', 'complete');
  // Read in the same task as the status: no later render may fill the text in.
  const [status, text] = await answer.evaluate((el) => [
    el.getAttribute('data-status'),
    el.querySelector('.msg-text')?.textContent ?? '',
  ]);
  const sent = (await upstreamLog()).at(-1)!;
  expect(sent.completed).toBe(true);
  expect(status).toBe('complete');
  expect(text.trim().split(/\s+/)).toEqual(sent.answer.trim().split(/\s+/));
  expect(errors).toEqual([]);
});
