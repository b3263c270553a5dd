#!/usr/bin/env node
// The root and its platform packages move together, one version for all (napi-rs layout).
//   --sync         the root's optionalDependencies become one package per napi target at the
//                  root's version (`npm version` runs it after `napi version`, which does npm/*).
//   --check [tag]  fails when a package, an optional dependency or the tag is out of step.
import { readFileSync, writeFileSync } from 'node:fs'
import { readNapiConfig } from '@napi-rs/cli'

const root = new URL('..', import.meta.url).pathname
const { packageJson, packageName, targets } = await readNapiConfig(`${root}package.json`)
const version = packageJson.version
const wanted = Object.fromEntries(targets.map((t) => [`${packageName}-${t.platformArchABI}`, version])
  .sort(([a], [b]) => a.localeCompare(b)))

const [mode, tag] = process.argv.slice(2)
if (mode === '--sync') {
  const raw = JSON.parse(readFileSync(`${root}package.json`, 'utf8'))
  raw.optionalDependencies = wanted
  writeFileSync(`${root}package.json`, `${JSON.stringify(raw, null, 2)}\n`)
} else if (mode === '--check') {
  const problems = []
  const declared = Object.fromEntries(Object.entries(packageJson.optionalDependencies ?? {})
    .sort(([a], [b]) => a.localeCompare(b)))
  if (JSON.stringify(declared) !== JSON.stringify(wanted)) {
    problems.push(`optionalDependencies ${JSON.stringify(packageJson.optionalDependencies)}, expected ${JSON.stringify(wanted)}`)
  }
  for (const target of targets) {
    const dir = `npm/${target.platformArchABI}`
    const pkg = JSON.parse(readFileSync(`${root}${dir}/package.json`, 'utf8'))
    if (pkg.version !== version) problems.push(`${dir} is at ${pkg.version}, the root at ${version}`)
  }
  if (tag && tag !== `v${version}`) problems.push(`tag ${tag} does not name version ${version}`)
  if (problems.length) {
    console.error(`Out of step (run npm version, which runs napi version and --sync):\n  ${problems.join('\n  ')}`)
    process.exit(1)
  }
  console.log(`${packageName} and ${targets.length} platform packages at ${version}`)
} else {
  console.error('usage: platform-packages.mjs --sync | --check [tag]')
  process.exit(2)
}
