// Print jest's totals from its --json output as one plain line, "N passed, N failed".
const fs = require('node:fs');

const file = process.argv[2];
let results;
try {
  results = JSON.parse(fs.readFileSync(file, 'utf8'));
} catch (err) {
  console.error(`test summary: cannot read ${file}: ${err.message}`);
  process.exit(0);
}
const skipped = results.numPendingTests + results.numTodoTests;
console.log(`jest: ${results.numPassedTests} passed, ${results.numFailedTests} failed, ${skipped} skipped`);
