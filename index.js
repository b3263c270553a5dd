'use strict'
// The native binding is the API; this file is where JavaScript-only helpers join it.
module.exports = require('./binding.js')
