"use strict";
// The compiled addon, or why it is not there: `binding` is null when the build was skipped or failed.
let binding = null;
let error = null;
try {
  binding = require("./build/Release/sslkit_native.node");
} catch (e) {
  error = e instanceof Error ? e.message : String(e);
}
module.exports = { binding, error };
