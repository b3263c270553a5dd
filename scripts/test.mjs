#!/usr/bin/env node
// `npm test`: every gate and every suite, in order. Uses DATABASE_URL when set; otherwise one
// throwaway PostgreSQL (started through the package itself) serves all suites.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const root = new URL('..', import.meta.url).pathname

function step(title, command, args, { capture = false, echo = true, env = {} } = {}) {
  console.log(`\n=== ${title}: ${[command, ...args].join(' ')}`)
  const started = Date.now()
  const result = spawnSync(command, args, {
    cwd: root,
    stdio: capture ? ['inherit', 'pipe', 'inherit'] : 'inherit',
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, ...env },
  })
  if (capture && echo) process.stdout.write(result.stdout ?? '')
  if (result.status !== 0) {
    console.error(`\nFAILED: ${title} (exit ${result.status ?? result.signal})`)
    process.exit(1)
  }
  console.log(`--- ${title}: ok in ${((Date.now() - started) / 1000).toFixed(1)}s`)
  return result.stdout ?? ''
}

/**
 * Every Rust test file must hold at least one test (an emptied file would otherwise pass
 * silently), read from cargo-nextest's JSON list of test binaries.
 */
function checkRustTests(listJson) {
  const suites = Object.values(JSON.parse(listJson)['rust-suites'])
  const files = suites.filter((suite) => suite.kind === 'test')
  const empty = files.filter((suite) => Object.keys(suite.testcases).length === 0).map((suite) => suite['binary-id'])
  if (files.length === 0 || empty.length > 0) {
    console.error(`FAILED: no tests in: ${empty.join(', ') || 'any Rust test file'}`)
    process.exit(1)
  }
  const total = suites.reduce((n, suite) => n + Object.keys(suite.testcases).length, 0)
  console.log(`Rust: ${total} tests in ${files.length} test files and the unit tests.`)
}

function checkNodeCounts(output, files) {
  const tests = Number(/^# tests (\d+)$/m.exec(output)?.[1] ?? 0)
  const passed = Number(/^# pass (\d+)$/m.exec(output)?.[1] ?? 0)
  if (tests < files.length || passed !== tests) {
    console.error(`FAILED: node ran ${tests} tests (${passed} passed) from ${files.length} files`)
    process.exit(1)
  }
  console.log(`Node: ${passed} tests passed in ${files.length} files.`)
}

/** The newest modification time under these paths (files, or folders walked). */
function newestChange(paths) {
  let newest = 0
  for (const path of paths) {
    const stat = statSync(path)
    if (stat.isDirectory()) {
      newest = Math.max(newest, newestChange(readdirSync(path).map((name) => join(path, name))))
    } else {
      newest = Math.max(newest, stat.mtimeMs)
    }
  }
  return newest
}

/** Whether this platform's addon was built after the last change to what it is built from. */
function addonIsFresh() {
  const addons = readdirSync(root).filter((name) => /^audit-logs\..+\.node$/.test(name))
  if (addons.length === 0) return false
  const built = Math.min(...addons.map((name) => statSync(join(root, name)).mtimeMs))
  const sources = ['crates', 'migrations', 'Cargo.toml', 'Cargo.lock'].map((path) => join(root, path))
  return built > newestChange(sources)
}

// A fresh clone: the dev dependencies (napi's CLI, pg, Prisma, TypeScript...) come first.
if (!existsSync(new URL('../node_modules/.bin/napi', import.meta.url))) {
  step('dependencies', 'npm', ['install', '--no-audit', '--no-fund'])
}
// cargo-nextest runs the Rust tests: one process per test, a verdict in its exit code and a JSON
// list of what it runs. Installed on first use, as the npm dependencies are.
if (spawnSync('cargo', ['nextest', '--version'], { stdio: 'ignore' }).status !== 0) {
  step('cargo-nextest', 'cargo', ['install', 'cargo-nextest', '--locked'])
}
step('format', 'cargo', ['fmt', '--all', '--', '--check'])
step('clippy', 'cargo', ['clippy', '--workspace', '--all-targets', '--', '-D', 'warnings'])
// The code only the WebAssembly build compiles (the core without `database`, the binding's
// stand-ins), linted on the host: the wasm target's build script needs napi's CLI.
step('clippy, WebAssembly build', 'cargo', ['clippy', '-p', 'audit-logs-core', '-p', 'audit-logs-node',
  '--no-default-features', '--lib', '--', '-D', 'warnings'])
// napi's CLI hands cargo a new type-definition folder on every run, so each build relinks the
// addon (a full LTO pass, minutes): skip it when the addon is newer than every Rust source and
// migration, as after `npm install` on a fresh clone.
if (addonIsFresh()) {
  console.log('\n=== native addon: up to date (newer than crates/, migrations/ and Cargo.*)')
} else {
  step('native addon', 'npx', ['napi', 'build', '-p', 'audit-logs-node', '--platform', '--release',
    '--js', 'binding.js', '--dts', 'binding.d.ts', '-o', '.'])
}
// The WebAssembly build (the fallback where no native addon loads), which
// tests/node/wasm.test.mjs forces: the core's pure parts only, no C code, so seconds once built.
step('WebAssembly binding', 'npm', ['run', 'build:wasm', '--silent'])
// The Alpine (musl) addon, linked as the release links it: musl-gcc compiles and links
// (scripts/musl-linker.sh), so the .node needs musl's libc and not glibc's. A debug build
// (the link is what is checked here; the release workflow tests the release build on Alpine),
// of every crate for that target, so a couple of minutes.
const muslHere = process.platform === 'linux' && process.arch === 'x64'
if (muslHere) {
  step('musl addon', 'npx', ['napi', 'build', '-p', 'audit-logs-node', '--platform',
    '--target', 'x86_64-unknown-linux-musl', '--no-js', '--dts', 'binding.d.ts', '-o', 'target/musl-addon'],
  { env: { CC_x86_64_unknown_linux_musl: 'musl-gcc', CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER: `${root}scripts/musl-linker.sh` } })
}
// The Prisma client the tests use. Generating needs neither the network (no update check) nor
// the schema engine, which Prisma would otherwise download.
step('prisma client', 'npx', ['prisma', 'generate', '--schema', 'tests/prisma/schema.prisma'],
  { env: { CHECKPOINT_DISABLE: '1', PRISMA_SCHEMA_ENGINE_BINARY: '/bin/true' } })
step('types', 'npx', ['tsc', '--noEmit', '-p', '.'])
// As an application compiling with exactOptionalPropertyTypes sees them (`actorId: req.user?.id`).
step('types, exact optional properties', 'npx', ['tsc', '--noEmit', '-p', 'tests/types/tsconfig.exact.json'])
// fn of withAuditContext typed as each ORM's own transaction; the fetch helpers with Hono.
step('types, ORMs and fetch handlers', 'npx', ['tsc', '--noEmit', '-p', 'tests/types/tsconfig.orms.json'])

let server
if (!process.env.DATABASE_URL) {
  const { TemporaryPostgres } = require('../index.js')
  console.log('\nDATABASE_URL is not set: starting a throwaway PostgreSQL for the tests.')
  server = await TemporaryPostgres.start()
  process.env.DATABASE_URL = server.url('postgres')
}
try {
  checkRustTests(step('Rust test list', 'cargo', ['nextest', 'list', '--workspace', '--message-format', 'json'],
    { capture: true, echo: false }))
  step('Rust and SQL tests', 'cargo', ['nextest', 'run', '--workspace', '--no-fail-fast'])
  step('Rust doc examples', 'cargo', ['test', '--workspace', '--doc'])
  const nodeFiles = readdirSync(new URL('../tests/node', import.meta.url)).filter((f) => f.endsWith('.test.mjs'))
  const nodeOutput = step('Node tests', process.execPath,
    ['--test', '--test-reporter=tap', ...nodeFiles.map((f) => `tests/node/${f}`)], { capture: true })
  checkNodeCounts(nodeOutput, nodeFiles)
  // The published shape: packed root and platform package installed in a scratch app with no
  // Rust on PATH; the WebAssembly package where no addon is installed, and in a Worker; npx in
  // this clone building nothing; the musl addon's ELF checks where built.
  const packagingFiles = ['tests/packaging/packed.test.mjs', 'tests/packaging/clone.test.mjs',
    // The WebAssembly package installed for a wasm32 CPU, where the loader must fall back to it.
    'tests/packaging/wasm.test.mjs',
    // The Workers package installed by a plain npm install, its Worker bundled and run in workerd.
    'tests/packaging/workerd.test.mjs',
    ...(muslHere ? ['tests/packaging/musl.test.mjs'] : [])]
  const packagingOutput = step('Packaging tests', process.execPath,
    ['--test', '--test-reporter=tap', ...packagingFiles], { capture: true })
  checkNodeCounts(packagingOutput, packagingFiles)
} finally {
  server?.stop()
}
console.log('\nAll checks passed.')
