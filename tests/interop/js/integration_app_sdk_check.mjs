#!/usr/bin/env node
// integration_app_sdk_check.mjs: replay, through @integration-app/sdk (pinned in package.json), the exact HTTP
// sequence Membrane's own MCP server (github.com/integration-app/mcp-server, src/server/utils/) performs, against
// a Membrane(-compatible) API such as the kartra-mcp sandbox:
//
//   1. connections.find({})                      GET /connections
//      The server loops `do { find({}) } while (cursor)` WITHOUT passing the cursor back, so any cursor in
//      this answer makes it loop forever: the answer must carry none.
//   2. actions.find({ integrationId, cursor })   GET /actions?integrationId=<connection.integration.id>[&cursor=..]
//      for each connection with an `integration`, following cursors, no limit.
//   3. registers one tool per action: name `${action.integration.key}_${action.key}`, title
//      `${action.integration.name}: ${action.name}`; an action without integration.key or .name is silently dropped.
//   4. action({ integrationKey, key }).get()     GET /action?integrationKey=kartra&key=<key>   (dynamic mode)
//   5. actionInstance({ autoCreate: true, integrationKey, parentKey: key }).run(args)
//                                                POST /action-instance/run?autoCreate=true&integrationKey=kartra&parentKey=<key>
//      with the tool's raw arguments as the body; the tool answers JSON.stringify(result.output).
//
// Required env: MEMBRANE_API_URI, MEMBRANE_TOKEN (JWT-shaped; the server itself also needs an `id` claim),
// LEAD_EMAIL. Optional: CHECK_TIMEOUT_MS (default 60000). Prints "ALL CHECKS PASSED" last, or
// "FAILED at step ..." and exits 1 (2 on timeout).

import { IntegrationAppClient } from '@integration-app/sdk';
import { fail, log, paginate, runCheck, sdkVersion, show, step } from './check_support.mjs';

const API_URI = process.env.MEMBRANE_API_URI;
const TOKEN = process.env.MEMBRANE_TOKEN;
const LEAD_EMAIL = process.env.LEAD_EMAIL;
const TIMEOUT_MS = Number(process.env.CHECK_TIMEOUT_MS || '60000');
// What MCP clients accept as a tool name (the MCP spec's SEP-986 and the common client limit of 64).
const TOOL_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

async function main() {
  const missing = ['MEMBRANE_API_URI', 'MEMBRANE_TOKEN', 'LEAD_EMAIL'].filter((name) => !process.env[name]);
  if (missing.length) fail(`missing env: ${missing.join(', ')}`);
  log(`@integration-app/sdk ${sdkVersion('@integration-app/sdk')}; node ${process.version}; apiUri=${API_URI}`);
  const membrane = new IntegrationAppClient({ token: TOKEN, apiUri: API_URI });

  // 1. connections.find({}): exactly what getAllConnections sends when no apps are named.
  const connections = await step('connections.find({}) [GET /connections]', async () => {
    const first = await membrane.connections.find({});
    if (!first || !Array.isArray(first.items)) fail(`no "items" array: ${show(first, 500)}`);
    if (first.cursor) {
      fail(
        `the answer carries cursor ${show(first.cursor)}: the mcp-server calls connections.find({}) again without ` +
          'it, gets the same cursor back, and loops forever',
      );
    }
    for (const c of first.items) {
      log(`   - id=${c.id} name=${show(c.name)} integration=${show(c.integration && { id: c.integration.id, key: c.integration.key, name: c.integration.name })}`);
    }
    return first.items;
  });
  log(`CONNECTIONS: ${connections.length} (no cursor)`);
  const withIntegration = connections.filter((c) => c.integration);
  if (!withIntegration.length) fail('no connection embeds its "integration": the mcp-server would list no actions at all');

  // 2. actions.find({ integrationId, cursor }) per connection, following cursors, no limit.
  const actions = [];
  for (const connection of withIntegration) {
    const integrationId = connection.integration.id;
    const found = await step(`actions.find({ integrationId: '${integrationId}', cursor }) [GET /actions?integrationId=..]`, () =>
      paginate('actions', (cursor) => membrane.actions.find({ integrationId, cursor })),
    );
    actions.push(...found);
  }
  log(`ACTIONS: ${actions.length}`);
  if (!actions.length) fail('no actions listed for the connected integrations');

  // The same listing in small pages must give the same actions (the cursor is honoured with integrationId).
  const integrationId = withIntegration[0].integration.id;
  const paged = await step(`actions.find({ integrationId, limit: 7, cursor }) [cursor following]`, () =>
    paginate('actions (limit 7)', (cursor) => membrane.actions.find({ integrationId, limit: 7, cursor })),
  );
  const perConnection = actions.filter((a) => a.integrationId === integrationId || a.integration?.id === integrationId);
  if (paged.length <= 7) fail(`only ${paged.length} actions in pages of 7: no cursor was ever followed`);
  const pagedKeys = paged.map((a) => a.key).sort();
  const allKeys = [...new Set(perConnection.map((a) => a.key))].sort();
  if (show(pagedKeys) !== show(allKeys)) fail(`paged listing ${show(pagedKeys)} differs from the unpaged one ${show(allKeys)}`);
  log(`ACTIONS (pages of 7): ${paged.length}`);

  // 3. The tools the server would register.
  const tools = await step('tool names `${integration.key}_${action.key}`', () => {
    const dropped = actions.filter((a) => !a.integration?.key || !a.integration?.name);
    if (dropped.length) {
      fail(`${dropped.length} actions lack integration.key or integration.name and would be dropped: ${show(dropped.map((a) => a.key))}`);
    }
    const names = actions.map((a) => `${a.integration.key}_${a.key}`);
    const bad = names.filter((name) => !TOOL_NAME.test(name));
    if (bad.length) fail(`tool names MCP clients reject: ${show(bad)}`);
    const duplicates = names.filter((name, i) => names.indexOf(name) !== i);
    if (duplicates.length) fail(`duplicate tool names: ${show(duplicates)}`);
    for (const action of actions) {
      const schema = action.inputSchema;
      if (schema !== undefined && schema !== null && (schema.type !== 'object' || typeof schema !== 'object')) {
        fail(`${action.key}: inputSchema is not an object schema, which zodFromJsonSchema expects: ${show(schema, 300)}`);
      }
    }
    return names;
  });
  log(`TOOLS: ${tools.length}`);
  log(`TOOL NAMES: ${tools.join(' ')}`);
  if (!tools.includes('kartra_get-lead')) fail('no kartra_get-lead tool');

  // 4. action({ integrationKey, key }).get(): the dynamic mode's getActionsByKeys.
  const action = await step("action({ integrationKey: 'kartra', key: 'get-lead' }).get() [GET /action?..]", async () => {
    const found = await membrane.action({ integrationKey: 'kartra', key: 'get-lead' }).get();
    if (found?.key !== 'get-lead' || found?.integration?.key !== 'kartra' || !found?.integration?.name) {
      fail(`not get-lead with its integration: ${show(found, 500)}`);
    }
    if (!found.inputSchema?.properties?.email) fail(`get-lead's inputSchema has no email: ${show(found.inputSchema, 500)}`);
    return found;
  });
  log(`TOOL TITLE: ${action.integration.name}: ${action.name}`);

  // 5. Calling kartra_get-lead: the raw tool arguments go to the action instance.
  const text = await step(
    "actionInstance({ autoCreate: true, integrationKey: 'kartra', parentKey: 'get-lead' }).run({ email }) " +
      '[POST /action-instance/run?autoCreate=true&..]',
    async () => {
      const result = await membrane.actionInstance({ autoCreate: true, integrationKey: 'kartra', parentKey: 'get-lead' }).run({ email: LEAD_EMAIL });
      if (!result || typeof result !== 'object' || !result.output) fail(`no "output" (the tool would say "No output"): ${show(result, 500)}`);
      const output = result.output;
      if (output.status !== 'Success' || String(output.lead_details?.email).toLowerCase() !== LEAD_EMAIL.toLowerCase()) {
        fail(`the output is not the lead ${LEAD_EMAIL}: ${show(output, 500)}`);
      }
      return JSON.stringify(output);
    },
  );
  log(`TOOL RESULT: ${show(text, 300)}`);
  log(`LEAD EMAIL: ${JSON.parse(text).lead_details.email}`);

  log('\nALL CHECKS PASSED');
}

runCheck(main, TIMEOUT_MS);
