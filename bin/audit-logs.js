#!/usr/bin/env node
// `npx audit-logs ...`: the command line lives in Rust (crates/audit-logs-cli), except `ui`,
// the viewer, which is served by the package's JavaScript.
'use strict'
const args = process.argv.slice(2)

if (args[0] === 'ui') {
  const { AuditLogs } = require('../index.js')
  require('../lib/ui.js').runUi(args.slice(1), { AuditLogs }).then(
    (status) => { process.exitCode = status },
    (error) => {
      console.error(`error[${error?.code ?? 'AUDIT_LOGS_INTERNAL'}]: ${error?.message ?? error}`)
      process.exitCode = 1
    })
} else {
  const { runCli } = require('#binding')
  try {
    process.exitCode = runCli(args)
  } catch (error) {
    // The WebAssembly build has no command line (AUDIT_LOGS_NEEDS_NATIVE): said as the CLI says errors.
    console.error(`error[${error?.code ?? 'AUDIT_LOGS_INTERNAL'}]: ${error?.message ?? error}`)
    process.exitCode = 1
  }
}
