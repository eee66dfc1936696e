// Two instances of the app on one PostgreSQL, Debian's nginx in front with
// deploy/nginx.conf (#12). One student, two pages: the first through nginx (which
// sends it to instance A while A is up), the second straight on instance B. A question
// asked in the first streams in the second; then instance A is killed mid-answer and
// both pages see the answer finish — continued by B. Needs PostgreSQL
// (TUTOR_TEST_DATABASE_URL, set by .ci/with-postgres around the browser tests).
import { test, expect, type Page } from '@playwright/test';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startFake, stop, FAKE } from './servers';
import { openReady, ask, send } from './helpers';

const root = path.resolve(__dirname, '..', '..');
const binary = process.env.TUTOR_E2E_BINARY || path.join(root, 'target', 'release', 'tutor-chat');
const database = process.env.TUTOR_TEST_DATABASE_URL;
const A_PORT = 3110;
const B_PORT = 3111;
const NGINX_PORT = 3112;

// The test upstream's words (src/upstream/fake.rs), to know the whole answer.
const WORDS = 'WebSocket keeps one connection open, so the server can push each token the moment it arrives.'.split(' ');
const wholeAnswer = (tokens: number) => Array.from({ length: tokens }, (_, i) => WORDS[i % WORDS.length]).join(' ');

test.skip(!database, 'needs PostgreSQL: run under .ci/with-postgres');

function startInstance(id: string, port: number): ChildProcess {
  const child = spawn(binary, [], {
    cwd: root,
    env: {
      ...process.env,
      RUST_LOG: 'warn',
      LEPTOS_SITE_ROOT: path.join(root, 'target', 'site'),
      LEPTOS_SITE_PKG_DIR: 'pkg',
      LEPTOS_ENV: 'PROD',
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      TUTOR_BIND: `127.0.0.1:${port}`,
      TUTOR_INSTANCE_ID: id,
      DATABASE_URL: database!,
      TUTOR_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), `tutor-e2e-${id}-`)),
      TUTOR_SESSION_SECRET: 'the e2e deployment secret',
      TUTOR_TRUSTED_PROXIES: '127.0.0.1',
      TUTOR_ANSWER_LEASE_MS: '2000',
      LESSONS_DIR: path.join(root, 'lessons'),
      OPENAI_BASE_URL: `${FAKE}/v1`,
      OPENAI_API_KEY: 'e2e-key',
      OPENAI_MODEL: 'e2e-model',
    },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  child.stderr?.on('data', (d) => process.stderr.write(`[${id}] ${d}`));
  return child;
}

async function healthy(port: number) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`instance on ${port} did not start`);
}

/** nginx with deploy/nginx.conf: our port, A first and B as its backup. */
function startNginx(): ChildProcess {
  const template = fs.readFileSync(path.join(root, 'deploy', 'nginx.conf'), 'utf8');
  let servers = false;
  const config = template
    .split('\n')
    .flatMap((line) => {
      const trimmed = line.trim();
      if (trimmed.startsWith('listen ')) return [`        listen 127.0.0.1:${NGINX_PORT};`];
      if (trimmed.startsWith('server 127.0.0.1:')) {
        if (servers) return [];
        servers = true;
        return [
          `        server 127.0.0.1:${A_PORT} max_fails=1 fail_timeout=2s;`,
          `        server 127.0.0.1:${B_PORT} backup;`,
        ];
      }
      return [line];
    })
    .join('\n');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tutor-e2e-nginx-'));
  fs.mkdirSync(path.join(dir, 'tmp'));
  fs.writeFileSync(path.join(dir, 'nginx.conf'), config);
  const nginx = fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
  return spawn(nginx, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], {
    stdio: ['ignore', 'ignore', 'ignore'],
  });
}

const running: { fake?: ChildProcess; a?: ChildProcess; b?: ChildProcess; nginx?: ChildProcess } = {};

test.beforeAll(async () => {
  running.fake = await startFake();
  running.a = startInstance('e2e-a', A_PORT);
  running.b = startInstance('e2e-b', B_PORT);
  await healthy(A_PORT);
  await healthy(B_PORT);
  running.nginx = startNginx();
  await healthy(NGINX_PORT);
});

test.afterAll(async () => {
  await stop(running.nginx);
  await stop(running.a);
  await stop(running.b);
  await stop(running.fake);
});

const lastAnswer = (page: Page) => page.locator('.msg-tutor').last();

test('a question asked on one instance streams in a page on another, and finishes after its instance is killed', async ({
  context,
}) => {
  test.setTimeout(90_000);
  const first = await context.newPage();
  const firstErrors = await openReady(first, `http://127.0.0.1:${NGINX_PORT}/`);
  await ask(first, '[tokens=3] a first question');
  await expect(first).toHaveURL(/\/c\//);
  const conversation = new URL(first.url()).pathname;

  // The same student (the cookie is the same on every port of this host), another
  // page, straight on instance B.
  const second = await context.newPage();
  const secondErrors = await openReady(second, `http://127.0.0.1:${B_PORT}${conversation}`);
  await expect(second.locator('.msg-tutor')).toHaveCount(1);

  const tokens = 150;
  await send(first, `[tokens=${tokens}] [delay=50] the long one`);
  // It appears in the second page while it streams.
  await expect(second.locator('.msg-student').last()).toContainText('the long one');
  await expect(lastAnswer(second)).toHaveAttribute('data-status', 'streaming');
  await expect.poll(async () => ((await lastAnswer(second).textContent()) ?? '').split(' ').length).toBeGreaterThan(20);

  // Instance A (which streams it: nginx sends everything to A while A is up) dies.
  running.a?.kill('SIGKILL');
  const whole = wholeAnswer(tokens);
  for (const page of [first, second]) {
    await expect(lastAnswer(page)).toHaveAttribute('data-status', 'complete', { timeout: 30_000 });
    await expect(lastAnswer(page).locator('.msg-text')).toHaveText(whole);
  }
  expect(firstErrors).toEqual([]);
  expect(secondErrors).toEqual([]);
});
