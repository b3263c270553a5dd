#!/usr/bin/env node
// `npx audit-logs ...`: the command line lives in Rust (crates/audit-logs-cli).
'use strict'
const { runCli } = require('../binding.js')

process.exitCode = runCli(process.argv.slice(2))
