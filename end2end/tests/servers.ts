// Starts and stops the release server and our OpenAI-compatible test upstream, so
// that a test can restart the server under a live page.
import { test } from '@playwright/test';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..', '..');
// TUTOR_E2E_BINARY: a developer's quicker debug build (`cargo leptos build`); CI uses release.
const binary = process.env.TUTOR_E2E_BINARY || path.join(root, 'target', 'release', 'tutor-chat');

// TUTOR_E2E_PORT: another port pair (the app's, and the next for the test upstream),
// so two worktrees on one machine can run browser tests at once.
export const APP_PORT = Number(process.env.TUTOR_E2E_PORT || 3100);
export const FAKE_PORT = APP_PORT + 1;
export const APP = `http://127.0.0.1:${APP_PORT}`;
export const FAKE = `http://127.0.0.1:${FAKE_PORT}`;

async function waitFor(url: string, child: ChildProcess, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not answer ${url} within 30 s`);
}

function launch(args: string[], env: Record<string, string>, tag: string): ChildProcess {
  const child = spawn(binary, args, {
    cwd: root,
    env: { ...process.env, RUST_LOG: 'warn', ...env },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  child.stderr?.on('data', (d) => process.stderr.write(`[${tag}] ${d}`));
  return child;
}

export async function startFake(): Promise<ChildProcess> {
  const child = launch(
    ['fake-upstream', '--port', String(FAKE_PORT), '--require-key', 'e2e-key'],
    {},
    'fake',
  );
  await waitFor(`${FAKE}/v1/models`, child, 'fake upstream');
  return child;
}

// One database per test run, kept across restarts within it.
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tutor-e2e-'));
// Removed when this worker exits (its spec files have stopped their apps by then).
process.once('exit', () => fs.rmSync(dataDir, { recursive: true, force: true }));

// The database the running app uses (a file may ask for a fresh one of its own).
let currentData = dataDir;

export async function startApp(data: string = dataDir): Promise<ChildProcess> {
  currentData = data;
  return startAppWith(APP_PORT, data, {
    OPENAI_BASE_URL: `${FAKE}/v1`,
    OPENAI_API_KEY: 'e2e-key',
    OPENAI_MODEL: 'e2e-model',
  });
}

/** The app as a fresh install runs it: no key, no endpoint, so lesson mode. */
export async function startLessonModeApp(
  port: number,
  env: Record<string, string> = {},
): Promise<ChildProcess> {
  const ownData = fs.mkdtempSync(path.join(os.tmpdir(), 'tutor-e2e-lessons-'));
  return startAppWith(port, ownData, { OPENAI_BASE_URL: '', OPENAI_API_KEY: '', ...env });
}

async function startAppWith(
  port: number,
  data: string,
  model: Record<string, string>,
): Promise<ChildProcess> {
  const child = launch(
    [],
    {
      LEPTOS_SITE_ROOT: path.join(root, 'target', 'site'),
      LEPTOS_SITE_PKG_DIR: 'pkg',
      LEPTOS_ENV: 'PROD',
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      TUTOR_BIND: `127.0.0.1:${port}`,
      TUTOR_DATA_DIR: data,
      TUTOR_INSTANCE_ID: `e2e-${port}`,
      LESSONS_DIR: path.join(root, 'lessons'),
      ...model,
    },
    'app',
  );
  await waitFor(`http://127.0.0.1:${port}/healthz`, child, 'app');
  return child;
}

export async function stop(child: ChildProcess | undefined): Promise<void> {
  // Already gone: exited, or killed by a signal (then exitCode stays null).
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

export type Recorded = { messages: { role: string; content: string }[]; answer: string; completed: boolean };

export async function upstreamLog(): Promise<Recorded[]> {
  const response = await fetch(`${FAKE}/_log`);
  return (await response.json()) as Recorded[];
}

/**
 * Starts the test upstream and the app before a spec file's tests and stops them
 * after; the handle lets a test stop and restart the app under a live page.
 */
export function serversForThisFile(options: { freshDatabase?: boolean } = {}) {
  const running: { app?: ChildProcess; fake?: ChildProcess } = {};
  // A file that counts what is in the database (the teacher's dashboard) gets its own.
  const data = options.freshDatabase ? fs.mkdtempSync(path.join(os.tmpdir(), 'tutor-e2e-own-')) : dataDir;
  test.beforeAll(async () => {
    running.fake = await startFake();
    running.app = await startApp(data);
  });
  test.afterAll(async () => {
    await stop(running.app);
    await stop(running.fake);
    if (options.freshDatabase) fs.rmSync(data, { recursive: true, force: true });
  });
  return {
    stopApp: () => stop(running.app),
    restartApp: async () => {
      running.app = await startApp(data);
    },
  };
}

/**
 * Makes a teacher account in this run's database with `tutor-chat teacher add`, the
 * password piped on stdin as an operator would.
 */
export async function addTeacher(username: string, password: string): Promise<void> {
  const child = spawn(binary, ['teacher', 'add', username], {
    cwd: root,
    env: { ...process.env, RUST_LOG: 'warn', TUTOR_DATA_DIR: currentData },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  child.stdin?.end(`${password}\n`);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`teacher add ${username} exited with ${code}: ${output}`);
}
