// npm and the installed package's commands run as an outsider's shell runs them, for the
// packaging tests: in an environment without `npm test`'s own variables (npm_*) or napi's loader
// switches (NAPI_RS_*), failing the test with their output when they fail.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

const windows = process.platform === 'win32'

/** process.env with `changes` over it, less npm test's own variables and napi's loader switches. */
export function outsiderEnv(changes = {}) {
  const env = { ...process.env, ...changes }
  for (const key of Object.keys(env)) if (key.startsWith('npm_') || key.startsWith('NAPI_RS_')) delete env[key]
  return env
}

/** `run(command, args, { cwd, input, extraEnv })` and `pack(dir, destination)` in `env`. */
export function npmIn(env) {
  function run(command, args, { cwd, input, extraEnv = {} } = {}) {
    // npm and npx are .cmd scripts on Windows.
    const cmd = windows && (command === 'npm' || command === 'npx') ? `${command}.cmd` : command
    const result = spawnSync(cmd, args, { cwd, env: { ...env, ...extraEnv }, input, encoding: 'utf8', shell: windows })
    assert.equal(result.status, 0, `${command} ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`)
    return result
  }
  /** `npm pack` of `dir` into `destination`: npm's report of the tarball, and its path. */
  function pack(dir, destination) {
    const [packed] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', destination], { cwd: dir }).stdout)
    return { ...packed, path: join(destination, packed.filename) }
  }
  return { run, pack }
}
