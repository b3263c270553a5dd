// Two commands, one build (issue 13): in a clone, `npx audit-logs` links the clone into npx's
// cache and runs its bin. npm runs the linked package's prepare script on that link, so a build
// script there would build a second time after `npm install`. With a fresh npm cache (npx must
// link anew) and no Rust on PATH, npx must run the clone's own build and build nothing.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, realpathSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'

const root = fileURLToPath(new URL('../..', import.meta.url))
const windows = process.platform === 'win32'

test('npx audit-logs in a clone runs the clone as built, without building', (t) => {
  const cache = mkdtempSync(join(tmpdir(), 'audit-logs-npx-cache-'))
  t.after(() => rmSync(cache, { recursive: true, force: true }))
  const tools = windows ? ['cargo.exe', 'rustc.exe'] : ['cargo', 'rustc']
  const PATH = process.env.PATH.split(delimiter)
    .filter((dir) => !tools.some((tool) => existsSync(join(dir, tool)))).join(delimiter)
  const env = { ...process.env, PATH, npm_config_cache: cache }
  for (const key of Object.keys(env)) if (key.startsWith('npm_') && key !== 'npm_config_cache') delete env[key]
  for (const key of Object.keys(env)) if (key.toUpperCase() === 'PATH' && key !== 'PATH') delete env[key] // Windows' Path

  const started = Date.now()
  const result = spawnSync(windows ? 'npx.cmd' : 'npx', ['--yes', 'audit-logs', '--version'],
    { cwd: root, env, encoding: 'utf8', shell: windows })
  assert.equal(result.status, 0, `npx failed (a build script would, with no cargo):\n${result.stderr}`)
  assert.match(result.stdout, /^audit-logs \d+\.\d+\.\d+\n$/)
  // The bin npx ran is the clone's: its package in npx's cache is a link to the clone.
  const [hash] = readdirSync(join(cache, '_npx'))
  assert.equal(realpathSync(join(cache, '_npx', hash, 'node_modules', 'audit-logs')), realpathSync(root))
  assert.ok(Date.now() - started < 60_000, 'seconds, not a Rust build')
})
