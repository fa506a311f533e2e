// check_support.mjs: what the interoperability check scripts share: failing with a reason, showing
// values, naming the SDK under test, walking cursor pages, and describing errors from either SDK.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export class CheckFailure extends Error {}

export const fail = (message) => {
  throw new CheckFailure(message);
};

export const log = (...args) => console.log(...args);

export const show = (value, max = 1500) => {
  let text;
  try {
    text = typeof value === 'string' ? value : JSON.stringify(value);
  } catch {
    text = String(value);
  }
  return text && text.length > max ? `${text.slice(0, max)}... [${text.length - max} more chars]` : text;
};

/** The installed version of an SDK; its package.json is not in its "exports", so find it from the entry point. */
export function sdkVersion(name) {
  try {
    const entry = createRequire(import.meta.url).resolve(name);
    return JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

export function describeError(error) {
  if (error instanceof CheckFailure) return `CHECK FAILED: ${error.message}`;
  if (error?.isMembraneError || error?.isIntegrationAppError) {
    // Both SDKs throw their own error when the error body has a known "type" (bad_request, connection, ...).
    const data = error.data ?? {};
    return (
      `${error.constructor?.name}: type=${data.type} key=${data.key ?? '-'} message=${data.message}` +
      (data.data ? `\n  data: ${show(data.data)}` : '')
    );
  }
  if (error?.isAxiosError) {
    // ... and axios' own error when the body has no "type" (or there was no response at all).
    const response = error.response;
    return (
      `HTTP error: ${error.config?.method?.toUpperCase()} ${error.config?.url} -> ` +
      (response ? `${response.status} ${show(response.data)}` : `${error.code ?? ''} ${error.message}`)
    );
  }
  return `${error?.name ?? 'Error'}: ${error?.message ?? error}\n${error?.stack ?? ''}`;
}

export async function step(title, fn) {
  log(`\n== ${title}`);
  const started = Date.now();
  try {
    const result = await fn();
    log(`   ok (${Date.now() - started} ms)`);
    return result;
  } catch (error) {
    error.step ??= title;
    throw error;
  }
}

/** Walk a `find`-style call page by page: no cursor first, stop when a page has none; refuse loops. */
export async function paginate(label, fetchPage, maxPages = 200) {
  const all = [];
  const seen = new Set();
  let cursor;
  for (let page = 1; page <= maxPages; page++) {
    const response = await fetchPage(cursor);
    if (!response || typeof response !== 'object' || !Array.isArray(response.items)) {
      fail(`${label}: page ${page} has no "items" array: ${show(response, 500)}`);
    }
    if (response.cursor !== undefined && response.cursor !== null && typeof response.cursor !== 'string') {
      fail(`${label}: page ${page} has a "cursor" that is not a string: ${show(response.cursor)}`);
    }
    log(`   page ${page}: cursor in=${cursor ?? '-'} items=${response.items.length} cursor out=${response.cursor ?? '-'}`);
    all.push(...response.items);
    if (!response.cursor) return all;
    if (seen.has(response.cursor)) fail(`${label}: cursor "${response.cursor}" came back twice; paging would loop`);
    seen.add(response.cursor);
    cursor = response.cursor;
  }
  return fail(`${label}: more than ${maxPages} pages`);
}

/** Run a check's `main` under a deadline: exit 0 when it passes, 1 with the reason when it fails, 2 on timeout. */
export function runCheck(main, timeoutMs) {
  const timer = setTimeout(() => {
    console.error(`\nTIMEOUT after ${timeoutMs} ms`);
    process.exit(2);
  }, timeoutMs);
  timer.unref();
  main().then(
    () => {
      clearTimeout(timer);
      process.exit(0);
    },
    (error) => {
      clearTimeout(timer);
      console.error(`\nFAILED${error?.step ? ` at step "${error.step}"` : ''}: ${describeError(error)}`);
      process.exit(1);
    },
  );
}
