// What audit-logs loads as its binding in a Worker bundle (its package.json's "#binding" import,
// `workerd` condition), in place of binding.js, which picks a native addon or napi's Node WASI
// loader, neither of which workerd can run. lib/ and index.js require the binding's functions by
// name, hence CommonJS over the ES module that instantiates the build.
module.exports = require('./instance.mjs').binding
