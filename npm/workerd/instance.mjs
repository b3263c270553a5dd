// The WebAssembly build (wasm32-wasip1-threads, the module audit-logs-wasm32-wasi ships)
// instantiated for workerd, as napi's browser loader (audit-logs.wasi-browser.js) cannot be: that
// one fetches the .wasm and compiles its bytes (workerd refuses both: no I/O at module load, no Wasm
// code generation), and gives the module Worker threads (workerd has no Worker). Here the module
// comes compiled, as a bundle's CompiledWasm module (wrangler's rule for an imported .wasm), and is
// instantiated synchronously at module load, on workerd's one thread. Allowed as long as
// initialisation does no I/O, sets no timer and draws no random number (the non-threads
// wasm32-wasip1 build's does: WASI random_get, refused at module load). The functions JavaScript
// calls (contexts, event statements, errors) run on it; onCreateWorker only throws if something
// ever asks for a thread.
import { createContext } from '@emnapi/runtime'
import { WASI, emnapiAsyncWorkPlugin, emnapiTSFNPlugin, instantiateNapiModuleSync } from '@napi-rs/wasm-runtime'
import wasm from './audit-logs.wasm32-wasi.wasm'

// Shared, as the threads build imports it; at least the module's minimum (980 pages).
const memory = new WebAssembly.Memory({ initial: 1024, maximum: 65536, shared: true })

const { napiModule } = instantiateNapiModuleSync(wasm, {
  context: createContext(),
  wasi: new WASI({ version: 'preview1' }),
  asyncWorkPoolSize: 4,
  plugins: [emnapiAsyncWorkPlugin, emnapiTSFNPlugin],
  onCreateWorker() {
    throw new Error('audit-logs: the WebAssembly build asked for a thread, which workerd cannot start')
  },
  overwriteImports(imports) {
    imports.env = { ...imports.env, ...imports.napi, ...imports.emnapi, memory }
    return imports
  },
  beforeInit({ instance }) {
    for (const name of Object.keys(instance.exports)) {
      if (name.startsWith('__napi_register__')) instance.exports[name]()
    }
  },
})

export const binding = napiModule.exports
