// The browser benchmarks (docs/BENCHMARKS.md): the same browser and servers as the
// tests, but they only report, so CI does not run them.
import { defineConfig } from '@playwright/test';
import base from './playwright.config';

export default defineConfig({ ...base, testDir: './bench', timeout: 600_000 });
