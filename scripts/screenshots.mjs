#!/usr/bin/env node
// `npm run screenshots`: runs the viewer's browser tests with their screenshots written to
// docs/viewer/ (the README shows them) instead of a temporary folder. Needs what the tests need:
// Chromium, and DATABASE_URL or PostgreSQL's server binaries.
import { spawnSync } from 'node:child_process'

const root = new URL('..', import.meta.url).pathname
const result = spawnSync(process.execPath, ['--test', 'tests/node/viewer.test.mjs'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, AUDIT_LOGS_SCREENSHOTS: `${root}docs/viewer` },
})
process.exitCode = result.status ?? 1
