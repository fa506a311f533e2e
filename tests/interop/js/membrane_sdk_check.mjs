#!/usr/bin/env node
// membrane_sdk_check.mjs: drive Membrane's official JavaScript SDK (@membranehq/sdk, pinned in package.json)
// through the calls a Membrane app makes for Kartra, against a Membrane(-compatible) API: the kartra-mcp
// sandbox in tests/interop/test_membrane_sdks.py, or the real API when pointed at it (it makes one write:
// it assigns a tag to the lead, reads it back, then removes it again).
//
// Required env:
//   MEMBRANE_API_URI   e.g. http://127.0.0.1:8700 or https://api.getmembrane.com
//   MEMBRANE_TOKEN     a JWT-shaped token (x.<base64 JSON>.y) or a "pat-" token; the SDK refuses anything else
//                      before it sends a request ("Access token should be a valid JWT token.")
//   LEAD_EMAIL         the email of an existing Kartra lead
// Optional env:
//   INTEGRATION_KEY    default "kartra"
//   PAGE_LIMIT         default 7 (page size of the manual pagination loop; small, so several pages are walked)
//   PROXY_PATH         default "/" (path under the connection's base URL: Kartra's one endpoint)
//   TAG_NAME           the tag to assign and remove; default: the first account tag the lead does not have
//   CHECK_TIMEOUT_MS   default 60000 (the SDK's axios has no request timeout of its own)
//
// It prints one "== step" line per step and "ok" after it; key results on lines of their own
// ("ACTIONS COUNT (paged, limit 7): 31", "LEAD EMAIL: ...", "TAG READ BACK: ..."), and "ALL CHECKS PASSED"
// last. Any failure prints "FAILED at step ..." with the request and response, and exits 1 (2 on timeout).

import { MembraneClient } from '@membranehq/sdk';
import { CheckFailure, describeError, fail, log, paginate, runCheck, sdkVersion, show, step } from './check_support.mjs';

const env = (name, fallback) => {
  const value = process.env[name];
  return value === undefined || value === '' ? fallback : value;
};

const API_URI = env('MEMBRANE_API_URI');
const TOKEN = env('MEMBRANE_TOKEN');
const LEAD_EMAIL = env('LEAD_EMAIL');
const INTEGRATION_KEY = env('INTEGRATION_KEY', 'kartra');
const PAGE_LIMIT = Number(env('PAGE_LIMIT', '7'));
const PROXY_PATH = env('PROXY_PATH', '/');
const TAG_NAME = env('TAG_NAME');
const TIMEOUT_MS = Number(env('CHECK_TIMEOUT_MS', '60000'));
const ACTION_KEY = 'get-lead';

function checkAction(action, how) {
  if (!action || typeof action !== 'object') fail(`${how}: not an object: ${show(action, 500)}`);
  if (action.key !== ACTION_KEY) fail(`${how}: key is ${show(action.key)}, expected "${ACTION_KEY}"`);
  if (typeof action.id !== 'string' || !action.id) fail(`${how}: no string "id"`);
  const input = action.inputSchema;
  if (!input || input.type !== 'object' || !input.properties?.email) {
    fail(`${how}: inputSchema is not an object schema with an "email" property: ${show(input, 500)}`);
  }
  log(`   id=${action.id} name=${show(action.name)} inputSchema.properties=${Object.keys(input.properties).join(',')}`);
  return action;
}

/** The lead in a get-lead run's output, or a failure naming what came back instead. */
function leadFrom(run, how) {
  if (!run || typeof run !== 'object' || !('output' in run)) fail(`${how}: response has no "output": ${show(run, 500)}`);
  const output = run.output;
  if (output?.status !== 'Success') fail(`${how}: Kartra did not answer Success: ${show(output, 500)}`);
  const lead = output.lead_details;
  if (!lead || String(lead.email).toLowerCase() !== LEAD_EMAIL.toLowerCase()) {
    fail(`${how}: output.lead_details.email is not ${LEAD_EMAIL}: ${show(output, 500)}`);
  }
  return lead;
}

const tagNames = (lead) => (Array.isArray(lead.tags) ? lead.tags.map((t) => (typeof t === 'string' ? t : t?.tag_name)) : []);

async function main() {
  const missing = ['MEMBRANE_API_URI', 'MEMBRANE_TOKEN', 'LEAD_EMAIL'].filter((name) => !process.env[name]);
  if (missing.length) fail(`missing env: ${missing.join(', ')}`);
  if (!Number.isInteger(PAGE_LIMIT) || PAGE_LIMIT < 1 || PAGE_LIMIT > 1000) fail(`PAGE_LIMIT must be 1..1000, got ${PAGE_LIMIT}`);

  log(`@membranehq/sdk ${sdkVersion('@membranehq/sdk')}; node ${process.version}`);
  log(`apiUri=${API_URI} integration=${INTEGRATION_KEY} pageLimit=${PAGE_LIMIT}`);
  // Constructing the client sends nothing; the token is checked on the first call.
  const client = new MembraneClient({ token: TOKEN, apiUri: API_URI });

  // 1. GET /connections?integrationKey=kartra[&cursor=..]
  const connection = await step(`connections.find({ integrationKey: '${INTEGRATION_KEY}' }) [paged]`, async () => {
    const items = await paginate('connections', (cursor) => client.connections.find({ integrationKey: INTEGRATION_KEY, cursor }));
    for (const c of items) {
      log(`   - id=${c?.id} name=${show(c?.name)} integration.key=${c?.integration?.key ?? '-'} connected=${c?.connected ?? '-'}`);
    }
    const chosen = items.find((c) => c?.integration?.key === INTEGRATION_KEY && !c?.disconnected);
    if (!chosen) fail(`no connected connection with integration.key === "${INTEGRATION_KEY}" among ${items.length}`);
    if (typeof chosen.id !== 'string' || !chosen.id) fail(`the connection has no string "id": ${show(chosen, 500)}`);
    return chosen;
  });
  const connectionId = connection.id;
  log(`CONNECTION: ${connectionId} (${connection.name})`);

  // 2. GET /actions?connectionId=..&limit=<small>[&cursor=..], page by page
  const paged = await step(`actions.find({ connectionId, limit: ${PAGE_LIMIT}, cursor }) [manual loop]`, () =>
    paginate('actions', (cursor) => client.actions.find({ connectionId, limit: PAGE_LIMIT, cursor })),
  );
  const ids = paged.map((a) => a?.id);
  if (ids.some((id) => typeof id !== 'string')) fail('an action in the list has no string "id"');
  if (new Set(ids).size !== ids.length) fail(`the pages repeat actions: ${ids.length} listed, ${new Set(ids).size} distinct`);
  log(`ACTIONS COUNT (paged, limit ${PAGE_LIMIT}): ${paged.length}`);
  if (paged.length <= PAGE_LIMIT) fail(`only ${paged.length} actions: the listing never needed a second page`);

  // 3. The SDK's own loop: GET /actions?connectionId=..&limit=1000&cursor=0 ...
  const all = await step('actions.findAll({ connectionId }) [SDK loop: limit=1000, cursor starts at "0"]', () =>
    client.actions.findAll({ connectionId }),
  );
  log(`ACTIONS COUNT (findAll): ${all.length}`);
  if (all.length !== paged.length) fail(`findAll listed ${all.length} actions, the manual loop ${paged.length}`);
  const sameSet = new Set(all.map((a) => a.id));
  if (ids.some((id) => !sameSet.has(id))) fail('findAll and the manual loop listed different actions');
  const listed = paged.find((a) => a?.key === ACTION_KEY);
  if (!listed) fail(`"${ACTION_KEY}" is not among the connection's actions`);

  // 4. Get get-lead with its schemas: by key, by the object selector, by id.
  const byKey = await step(`action('${ACTION_KEY}').get() [GET /actions/${ACTION_KEY}]`, async () =>
    checkAction(await client.action(ACTION_KEY).get(), 'by key'),
  );
  const bySelector = await step(`action({ integrationKey: '${INTEGRATION_KEY}', key: '${ACTION_KEY}' }).get() [GET /action?...]`, async () =>
    checkAction(await client.action({ integrationKey: INTEGRATION_KEY, key: ACTION_KEY }).get(), 'by selector'),
  );
  const byId = await step(`action('${listed.id}').get() [GET /actions/<id>]`, async () =>
    checkAction(await client.action(listed.id).get(), 'by id'),
  );
  if (new Set([byKey.id, bySelector.id, byId.id, listed.id]).size !== 1) {
    fail(`the three ways to get "${ACTION_KEY}" disagree on its id: ${show([byKey.id, bySelector.id, byId.id, listed.id])}`);
  }
  log(`ACTION ${ACTION_KEY}: id=${byId.id} outputSchema=${byId.outputSchema ? 'present' : 'absent'}`);

  // 5. Run get-lead: by id, by key (object selector), and by key on the connection.
  const input = { email: LEAD_EMAIL };
  const runs = [
    [`action('${byId.id}').run(input, { connectionId }) [POST /actions/<id>/run]`, () => client.action(byId.id).run(input, { connectionId })],
    [
      `action({ integrationKey, key }).run(input, { connectionId }) [POST /action/run?...]`,
      () => client.action({ integrationKey: INTEGRATION_KEY, key: ACTION_KEY }).run(input, { connectionId }),
    ],
    [
      `connection(id).action('${ACTION_KEY}').run(input) [POST /connections/<id>/actions/${ACTION_KEY}/run]`,
      () => client.connection(connectionId).action(ACTION_KEY).run(input),
    ],
  ];
  let lead;
  for (const [title, run] of runs) {
    lead = await step(title, async () => {
      const result = await run();
      const found = leadFrom(result, title);
      log(`   actionRunId=${result.actionRunId ?? '-'} lead id=${found.id}`);
      return found;
    });
  }
  log(`LEAD EMAIL: ${lead.email}`);

  // 6. The proxy, as Kartra speaks: POST /connections/<id>/proxy/ with a PHP-bracket form body.
  const proxied = await step(`connection(id).proxy.post('${PROXY_PATH}', 'get_lead[email]=...')`, async () => {
    const body = `get_lead[email]=${encodeURIComponent(LEAD_EMAIL)}`;
    log(`   body: ${body}`);
    // A string body makes axios send Content-Type: application/x-www-form-urlencoded.
    return client.connection(connectionId).proxy.post(PROXY_PATH, body);
  });
  if (typeof proxied !== 'object' || proxied?.status !== 'Success') fail(`the proxy answered ${show(proxied, 500)}`);
  if (String(proxied.lead_details?.email).toLowerCase() !== LEAD_EMAIL.toLowerCase()) {
    fail(`the proxy answered another lead: ${show(proxied, 500)}`);
  }
  log(`PROXY LEAD: ${proxied.lead_details.email}`);

  // 7. A write, read back: assign a tag the lead lacks, see it on the lead, remove it, see it gone.
  const tag = await step("action('retrieve-account-tags').run({}, { connectionId })", async () => {
    const result = await client.action('retrieve-account-tags').run({}, { connectionId });
    const tags = result?.output?.account_tags;
    if (result?.output?.status !== 'Success' || !Array.isArray(tags)) fail(`no account_tags: ${show(result, 500)}`);
    const have = new Set(tagNames(lead));
    const chosen = TAG_NAME ?? tags.find((name) => !have.has(name));
    if (!chosen) fail(`the lead already has every account tag (${tags.length}); set TAG_NAME`);
    if (have.has(chosen)) fail(`the lead already has the tag ${show(chosen)}`);
    log(`   ${tags.length} account tags; the lead has ${show([...have])}; assigning ${show(chosen)}`);
    return chosen;
  });
  const runLeadAction = async (key, extra) => {
    const result = await client.action({ integrationKey: INTEGRATION_KEY, key }).run({ email: LEAD_EMAIL, ...extra }, { connectionId });
    if (result?.output?.status !== 'Success') fail(`${key} was not a Success: ${show(result, 500)}`);
    return result;
  };
  const readTags = async () => tagNames(leadFrom(await client.action(byId.id).run(input, { connectionId }), 'get-lead'));
  await step(`action({ key: 'assign-tag' }).run({ email, tag_name: ${show(tag)} }), then get-lead`, async () => {
    await runLeadAction('assign-tag', { tag_name: tag });
    const after = await readTags();
    if (!after.includes(tag)) fail(`assign-tag succeeded but get-lead shows the tags ${show(after)}, without ${show(tag)}`);
    log(`TAG READ BACK: ${tag}`);
  });
  await step(`action({ key: 'unassign-tag' }).run({ email, tag_name: ${show(tag)} }), then get-lead`, async () => {
    await runLeadAction('unassign-tag', { tag_name: tag });
    const after = await readTags();
    if (after.includes(tag)) fail(`unassign-tag succeeded but get-lead still shows ${show(tag)}`);
    log(`TAG REMOVED: ${tag}`);
  });

  // 8. An unknown action is refused with Membrane's error body, which the SDK turns into a MembraneError.
  await step("action({ integrationKey, key: 'no-such-action' }).get() is refused", async () => {
    let refused;
    try {
      const found = await client.action({ integrationKey: INTEGRATION_KEY, key: 'no-such-action' }).get();
      fail(`an unknown action was found: ${show(found, 300)}`);
    } catch (error) {
      if (error instanceof CheckFailure) throw error;
      refused = error;
    }
    if (!refused?.isMembraneError) fail(`expected a MembraneError, got ${describeError(refused)}`);
    log(`REFUSAL: type=${refused.data.type} key=${refused.data.key ?? '-'} message=${refused.data.message}`);
  });

  log('\nALL CHECKS PASSED');
}

runCheck(main, TIMEOUT_MS);
