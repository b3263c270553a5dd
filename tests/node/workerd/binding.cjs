// What a Worker bundle loads in place of the package's binding.js (which picks a native addon or
// napi's Node WASI loader, neither of which workerd can run): the WebAssembly build, instantiated
// by instance.mjs. lib/ and index.js require the binding's functions by name, hence CommonJS.
module.exports = require('./instance.mjs').binding
