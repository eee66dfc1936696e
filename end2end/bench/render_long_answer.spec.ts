// How much of the browser's main thread a long streamed answer costs (#14 item 7):
// a Markdown answer of BENCH_WORDS words (default 4,000) arrives in two chunks a
// word, and the page's main-thread time is read from the Chrome DevTools Protocol
// (Performance.getMetrics: every task, scripting, style and layout) before the
// question and once the answer is complete and painted. Long tasks (over 50 ms) come
// from a PerformanceObserver, and frame gaps from a requestAnimationFrame loop.
// It only reports. Run it (the app caps answers at max_tokens, hence the setting):
//   cd end2end && TUTOR_MAX_TOKENS=4000 TUTOR_E2E_BINARY=$PWD/../target/debug/tutor-chat \
//     npx playwright test --config bench.config.ts
import { test, expect } from '@playwright/test';
import { ready, send } from '../tests/helpers';
import { serversForThisFile } from '../tests/servers';

serversForThisFile();

const words = Number(process.env.BENCH_WORDS ?? 4000);

type Watch = { longTasks: number[]; frames: number[]; stop: boolean };

test(`main-thread time to render a ${words}-word answer streamed in ${2 * words} chunks`, async ({ page }) => {
  let chunks = 0;
  page.on('websocket', (socket) =>
    socket.on('framereceived', (frame) => {
      if (typeof frame.payload === 'string' && frame.payload.includes('"type":"chunk"')) chunks++;
    }),
  );
  await page.goto('/');
  await ready(page);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  const read = async () => {
    const { metrics } = await cdp.send('Performance.getMetrics');
    return Object.fromEntries(metrics.map((m) => [m.name, m.value])) as Record<string, number>;
  };
  await page.evaluate(() => {
    const w = window as unknown as { watch: Watch };
    w.watch = { longTasks: [], frames: [], stop: false };
    new PerformanceObserver((list) => list.getEntries().forEach((e) => w.watch.longTasks.push(e.duration))).observe({
      type: 'longtask',
    });
    let last = performance.now();
    const tick = (now: number) => {
      w.watch.frames.push(now - last);
      last = now;
      if (!w.watch.stop) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  const before = await read();
  const started = Date.now();
  await send(page, `[md] [tokens=${words}] [delay=1] Explain everything at length`);
  const answer = page.locator('.msg-tutor').last();
  await expect(answer).toHaveAttribute('data-status', 'complete', { timeout: 580_000 });
  // The last chunk's render waits for a frame: two more frames and it is painted.
  await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
  const wall = Date.now() - started;
  const after = await read();
  const watch = await page.evaluate(() => {
    const w = window as unknown as { watch: Watch };
    w.watch.stop = true;
    return w.watch;
  });
  const ms = (name: string) => Math.round((after[name] - before[name]) * 1000);
  const report = {
    words,
    chunks,
    wall_ms: wall,
    main_thread_task_ms: ms('TaskDuration'),
    script_ms: ms('ScriptDuration'),
    style_and_layout_ms: ms('RecalcStyleDuration') + ms('LayoutDuration'),
    long_tasks: watch.longTasks.length,
    longest_task_ms: Math.round(Math.max(0, ...watch.longTasks)),
    frames: watch.frames.length,
    longest_frame_gap_ms: Math.round(Math.max(0, ...watch.frames)),
    text_chars: ((await answer.locator('.msg-text').textContent()) ?? '').length,
  };
  console.log(`render_long_answer ${JSON.stringify(report)}`);
});
