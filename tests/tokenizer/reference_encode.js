#!/usr/bin/env node
// Reference GPT-2 encoder for the tokenizer tests: runs the npm package gpt-3-encoder (a port of
// OpenAI's encoder.py) and prints token ids as JSON.
//
//   node reference_encode.js [--package DIR] [--json] [FILE]
//
// DIR is the gpt-3-encoder package folder (default: $CORTEX_VOCAB_DIR). Input is FILE, or stdin.
// Without --json the input is one text (UTF-8) and the output is one array of ids. With --json the
// input is a JSON array of strings and the output is an array of id arrays, one per string, so that a
// whole corpus is encoded in one process.
'use strict';
const fs = require('fs');
const path = require('path');

function usage(message) {
  process.stderr.write(`reference_encode.js: ${message}\n` +
                       'usage: node reference_encode.js [--package DIR] [--json] [FILE]\n');
  process.exit(2);
}

let pkg = process.env.CORTEX_VOCAB_DIR || '';
let json = false;
let file = null;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--package') {
    if (i + 1 >= args.length) usage('--package needs a folder');
    pkg = args[++i];
  } else if (args[i] === '--json') {
    json = true;
  } else if (args[i].startsWith('--')) {
    usage(`unknown option ${args[i]}`);
  } else if (file === null) {
    file = args[i];
  } else {
    usage('more than one input file');
  }
}
if (!pkg) usage('no package folder: pass --package DIR or set CORTEX_VOCAB_DIR');

let encoder;
try {
  encoder = require(path.resolve(pkg));
} catch (e) {
  process.stderr.write(`reference_encode.js: cannot load gpt-3-encoder from ${pkg}: ${e.message}\n`);
  process.exit(1);
}

const input = fs.readFileSync(file === null ? 0 : file, 'utf8');
let output;
if (json) {
  const texts = JSON.parse(input);
  if (!Array.isArray(texts)) usage('--json input must be an array of strings');
  output = texts.map((t) => encoder.encode(t));
} else {
  output = encoder.encode(input);
}
process.stdout.write(JSON.stringify(output) + '\n');
