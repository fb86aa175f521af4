// Prints the reference GPT-2 token ids (npm gpt-3-encoder) for each file named on the
// command line: one line per file, ids separated by spaces. The C++ tokenizer test
// compares its own output with these lines.
// Usage: node gpt2_reference.js ENCODER_PACKAGE_DIR FILE...
'use strict';
const fs = require('fs');
const path = require('path');

const [pkgDir, ...files] = process.argv.slice(2);
if (!pkgDir || files.length === 0) {
  console.error('usage: node gpt2_reference.js ENCODER_PACKAGE_DIR FILE...');
  process.exit(2);
}
const { encode } = require(path.resolve(pkgDir));
const out = [];
for (const file of files) {
  const ids = encode(fs.readFileSync(file, 'utf-8'));
  if (ids.some((id) => typeof id !== 'number')) {
    console.error(`reference encoder produced a non-id for ${file}`);
    process.exit(1);
  }
  out.push(ids.join(' '));
}
process.stdout.write(out.join('\n') + '\n');
