// Preloaded (`node --require`) into Membrane's own MCP server (integration-app/mcp-server) by
// bench/side_by_side.py, so that server talks to the benchmark's sandbox instead of
// https://api.integration.app: it builds `new IntegrationAppClient({ token })` with no apiUri
// setting, so this wraps the SDK's exported class to add `apiUri` from the environment. Nothing of
// that server is changed or copied; this file is ours.
'use strict';
const { createRequire } = require('node:module');
const path = require('node:path');

const apiUri = process.env.KARTRA_MCP_BENCH_API_URI;
if (!apiUri) throw new Error('KARTRA_MCP_BENCH_API_URI is not set: the sandbox URL to point the server at');
// Resolve the SDK from the server's checkout (the working directory), the copy it will load.
const sdk = createRequire(path.join(process.cwd(), 'package.json'))('@integration-app/sdk') // the same file the server's '@integration-app/sdk/dist' resolves to;
const Original = sdk.IntegrationAppClient;
sdk.IntegrationAppClient = class extends Original {
  constructor(options = {}) {
    super({ ...options, apiUri: options.apiUri ?? apiUri });
  }
};
