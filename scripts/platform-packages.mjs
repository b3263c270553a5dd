#!/usr/bin/env node
// The root and its platform packages move together, one version for all (napi-rs layout), with
// the Workers package (npm/workerd, not a napi target: napi's CLI leaves it to this script).
//   --sync         the root's optionalDependencies become one package per napi target and the
//                  Workers package, at the root's version, as is npm/workerd (`npm version` runs
//                  it after `napi version`, which does the napi targets' npm/*).
//   --check [tag]  fails when a package, an optional dependency or the tag is out of step, or
//                  when npm/workerd's runtime dependencies differ from npm/wasm32-wasi's (the
//                  same module on the same runtime).
import { readFileSync, writeFileSync } from 'node:fs'
import { readNapiConfig } from '@napi-rs/cli'

const root = new URL('..', import.meta.url).pathname
const { packageJson, packageName, targets } = await readNapiConfig(`${root}package.json`)
const version = packageJson.version
const workerdDir = 'npm/workerd'
const packageDirs = [...targets.map((t) => `npm/${t.platformArchABI}`), workerdDir]
const manifestOf = (dir) => JSON.parse(readFileSync(`${root}${dir}/package.json`, 'utf8'))
const packageNames = [...targets.map((t) => `${packageName}-${t.platformArchABI}`), manifestOf(workerdDir).name]
const wanted = Object.fromEntries(packageNames.map((name) => [name, version])
  .sort(([a], [b]) => a.localeCompare(b)))

const [mode, tag] = process.argv.slice(2)
if (mode === '--sync') {
  const raw = JSON.parse(readFileSync(`${root}package.json`, 'utf8'))
  raw.optionalDependencies = wanted
  writeFileSync(`${root}package.json`, `${JSON.stringify(raw, null, 2)}\n`)
  const workerd = manifestOf(workerdDir)
  workerd.version = version
  writeFileSync(`${root}${workerdDir}/package.json`, `${JSON.stringify(workerd, null, 2)}\n`)
} else if (mode === '--check') {
  const problems = []
  const declared = Object.fromEntries(Object.entries(packageJson.optionalDependencies ?? {})
    .sort(([a], [b]) => a.localeCompare(b)))
  if (JSON.stringify(declared) !== JSON.stringify(wanted)) {
    problems.push(`optionalDependencies ${JSON.stringify(packageJson.optionalDependencies)}, expected ${JSON.stringify(wanted)}`)
  }
  for (const dir of packageDirs) {
    const pkg = manifestOf(dir)
    if (pkg.version !== version) problems.push(`${dir} is at ${pkg.version}, the root at ${version}`)
  }
  const runtime = JSON.stringify(manifestOf('npm/wasm32-wasi').dependencies)
  if (JSON.stringify(manifestOf(workerdDir).dependencies) !== runtime) {
    problems.push(`${workerdDir}'s dependencies are not npm/wasm32-wasi's ${runtime}`)
  }
  if (tag && tag !== `v${version}`) problems.push(`tag ${tag} does not name version ${version}`)
  if (problems.length) {
    console.error(`Out of step (run npm version, which runs napi version and --sync):\n  ${problems.join('\n  ')}`)
    process.exit(1)
  }
  console.log(`${packageName}, ${targets.length} platform packages and the Workers package at ${version}`)
} else {
  console.error('usage: platform-packages.mjs --sync | --check [tag]')
  process.exit(2)
}
