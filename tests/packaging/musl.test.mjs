// The linux-x64-musl addon (Alpine) as far as a glibc machine can check it: a glibc Node cannot
// load a musl .node, so this reads the built file itself. It must be an x86-64 shared object
// that needs musl's libc and nothing of glibc, and every symbol it imports must be one that
// Node (Node-API), musl's libc.so or the unwinder (libgcc_s, in Alpine's node images) defines.
// The release workflow runs the same addon on Alpine (tests/packaging/packed.test.mjs there).
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'

const addon = process.env.AUDIT_LOGS_MUSL_ADDON
  ?? fileURLToPath(new URL('../../target/musl-addon/audit-logs.linux-x64-musl.node', import.meta.url))
const readelf = (...args) => execFileSync('readelf', ['-W', ...args], { encoding: 'utf8' })
// musl's dynamic loader is its libc.so (musl-tools installs it; Alpine has it at the same path).
const muslLibc = '/lib/ld-musl-x86_64.so.1'

/** Dynamic symbols of an ELF file: [name, defined, weak] (versions stripped). */
function dynamicSymbols(file) {
  return readelf('--dyn-syms', file).split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length >= 8 && /^\d+:$/.test(cols[0]))
    .map((cols) => [cols[7].replace(/@.*$/, ''), cols[6] !== 'UND', cols[4] === 'WEAK'])
}

test('the musl addon is an x86-64 shared object', () => {
  assert.ok(existsSync(addon), `${addon} is built (npm test builds it)`)
  const header = readelf('-h', addon)
  assert.match(header, /Type:\s+DYN/)
  assert.match(header, /Machine:\s+Advanced Micro Devices X86-64/)
  assert.doesNotMatch(readelf('-l', addon), /Requesting program interpreter/)
})

test('it needs musl libc and no glibc library or symbol version', () => {
  const needed = [...readelf('-d', addon).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1])
  assert.ok(needed.includes('libc.so'), `musl's libc.so is needed: ${needed}`)
  for (const lib of needed) assert.ok(['libc.so', 'libgcc_s.so.1'].includes(lib), `unexpected NEEDED ${lib}`)
  assert.doesNotMatch(readelf('-V', addon), /GLIBC_/)
})

test('every symbol it imports is Node-API, musl libc or the unwinder, and it registers a module', () => {
  const symbols = dynamicSymbols(addon)
  assert.ok(symbols.some(([name, defined]) => defined && name === 'napi_register_module_v1'))
  const libc = new Set(dynamicSymbols(muslLibc).filter(([, defined]) => defined).map(([name]) => name))
  // Weak imports may stay unresolved (Rust's std checks pidfd_spawnp and the like for null), so
  // only strong ones must be found.
  const imported = symbols.filter(([name, defined, weak]) => !defined && !weak && name).map(([name]) => name)
  assert.ok(imported.filter((name) => libc.has(name)).length > 50, 'it uses libc')
  const unresolved = imported.filter((name) =>
    !libc.has(name) && !/^(napi|node_api)_/.test(name) && !/^_Unwind_/.test(name))
  assert.deepEqual(unresolved, [], 'symbols that neither Node, musl nor libgcc_s define')
})
