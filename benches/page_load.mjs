// The chat page on a slow phone connection (issue #13 item 5): Debian's Chromium,
// throttled through the DevTools protocol to 1.6 Mbit/s down, 750 kbit/s up and
// 150 ms round trip, loads `/` until the page is hydrated and its socket connected.
// Cold: an empty cache. Warm: the same browser profile loading the page again.
// A benchmark, not a test: it prints numbers for docs/BENCHMARKS.md and asserts
// nothing. Commands in docs/BENCHMARKS.md ("Page load on a slow connection").
//
//   node benches/page_load.mjs [--runs 5] [--binary target/release/tutor-chat]
//                              [--url http://127.0.0.1:3200] [--cpu 4] [--path /lessons/…]
//
// Without --url it starts the binary itself in lesson mode (no model needed) on
// port 3200 with a fresh data folder, and stops it at the end.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// Playwright is installed for the browser tests; the benchmark borrows it.
const require = createRequire(path.join(root, 'end2end', 'package.json'));
const { chromium } = require('playwright-core');

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith('--')) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const runs = Number(args.runs ?? 5);
const cpuSlowdown = Number(args.cpu ?? 1);
const binary = args.binary ?? path.join(root, 'target', 'release', 'tutor-chat');
const PORT = 3200;
// The page to load: the chat by default; a lesson (`--path /lessons/05-rate-limiting-en`)
// shows what a page on a lazily loaded route costs.
const pagePath = args.path ?? '/';
const pageIsChat = pagePath === '/' || pagePath.startsWith('/c/');

// A slow phone connection, as Chrome's DevTools "Slow 4G"-class presets define one.
const NETWORK = {
  offline: false,
  latency: 150, // ms added to each round trip
  downloadThroughput: (1.6 * 1024 * 1024) / 8, // bytes per second
  uploadThroughput: (750 * 1024) / 8,
};

async function waitForHealth(url, deadlineMs) {
  const deadline = Date.now() + deadlineMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer /healthz`);
}

async function startServer() {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'tutor-page-load-'));
  const child = spawn(binary, [], {
    cwd: root,
    env: {
      ...process.env,
      RUST_LOG: 'warn',
      OPENAI_BASE_URL: '',
      OPENAI_API_KEY: '',
      LEPTOS_SITE_ROOT: path.join(root, 'target', 'site'),
      LEPTOS_SITE_PKG_DIR: 'pkg',
      LEPTOS_ENV: 'PROD',
      LEPTOS_SITE_ADDR: `127.0.0.1:${PORT}`,
      TUTOR_BIND: `127.0.0.1:${PORT}`,
      TUTOR_DATA_DIR: data,
      LESSONS_DIR: path.join(root, 'lessons'),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${PORT}`;
  await waitForHealth(url, 30_000);
  return { child, url };
}

/** One load of `/` in `page`: ms to hydrated-and-connected, and bytes on the wire. */
async function load(page, cdp, url) {
  let bytes = 0;
  const paths = new Map();
  const requests = [];
  const onFinished = (event) => {
    bytes += event.encodedDataLength;
    if (paths.has(event.requestId)) requests.push(`${paths.get(event.requestId)} ${event.encodedDataLength} B`);
  };
  const onResponse = (event) => {
    const r = event.response;
    const from = r.fromDiskCache ? 'disk cache' : r.fromMemoryCache ? 'memory cache' : r.fromPrefetchCache ? 'prefetch cache' : 'network';
    const encoding = r.headers['content-encoding'] || r.headers['Content-Encoding'] || 'identity';
    paths.set(event.requestId, `${new URL(r.url).pathname} ${r.status} from ${from} (${encoding})`);
  };
  cdp.on('Network.loadingFinished', onFinished);
  cdp.on('Network.responseReceived', onResponse);
  const started = Date.now();
  await page.goto(url, { waitUntil: 'commit' });
  await page.locator('[data-hydrated="true"]').waitFor({ timeout: 60_000 });
  let hydrated = Date.now() - started;
  // Only the chat shows its socket's state; other pages are done when hydrated.
  if (pageIsChat) await page.locator('.conn[data-state="connected"]').waitFor({ state: 'attached', timeout: 60_000 });
  let connected = Date.now() - started;
  // The page's own clock (MARKS below) when it has it: Playwright notices a change
  // only at its next poll, which can come hundreds of milliseconds late.
  const marks = await page.evaluate(() => window.__pageLoadMarks);
  if (marks?.hydrated) hydrated = Math.round(marks.hydrated);
  if (marks?.hydrated) connected = Math.round(pageIsChat ? marks.connected ?? connected : marks.hydrated);
  cdp.off('Network.loadingFinished', onFinished);
  cdp.off('Network.responseReceived', onResponse);
  return { hydrated, connected, bytes, requests };
}

/** Notes when the page says it is hydrated and connected, in ms since navigation start. */
const MARKS = () => {
  const marks = (window.__pageLoadMarks = {});
  new MutationObserver(() => {
    if (!marks.hydrated && document.querySelector('[data-hydrated="true"]')) marks.hydrated = performance.now();
    if (!marks.connected && document.querySelector('.conn[data-state="connected"]')) marks.connected = performance.now();
  }).observe(document, { subtree: true, childList: true, attributes: true });
};

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const server = args.url ? { url: args.url } : await startServer();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
  });
  const cold = [];
  const warm = [];
  try {
    for (let run = 0; run < runs; run++) {
      // A fresh context is an empty cache and no cookies: a first visit.
      const context = await browser.newContext();
      await context.addInitScript(MARKS);
      const page = await context.newPage();
      const cdp = await context.newCDPSession(page);
      await cdp.send('Network.enable');
      await cdp.send('Network.emulateNetworkConditions', NETWORK);
      if (cpuSlowdown > 1) await cdp.send('Emulation.setCPUThrottlingRate', { rate: cpuSlowdown });
      cold.push(await load(page, cdp, server.url + pagePath));
      // The same profile again: what a student gets the next time they open the chat.
      warm.push(await load(page, cdp, server.url + pagePath));
      await context.close();
    }
  } finally {
    await browser.close();
    server.child?.kill('SIGTERM');
  }
  const report = (name, loads) => {
    const kb = (median(loads.map((l) => l.bytes)) / 1024).toFixed(0);
    console.log(
      `${name}: hydrated ${median(loads.map((l) => l.hydrated))} ms, connected ${median(loads.map((l) => l.connected))} ms ` +
        `(median of ${loads.length}; all: ${loads.map((l) => l.connected).join(', ')} ms), ${kb} KiB on the wire`,
    );
  };
  console.log(`network: 1.6 Mbit/s down, 750 kbit/s up, 150 ms round trip; CPU slowdown ${cpuSlowdown}x`);
  report('cold', cold);
  report('warm', warm);
  console.log('cold requests:\n  ' + cold[0].requests.join('\n  '));
  console.log('warm requests:\n  ' + warm[0].requests.join('\n  '));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
