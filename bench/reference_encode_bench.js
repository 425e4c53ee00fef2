#!/usr/bin/env node
// Throughput of the npm GPT-2 encoder (gpt-3-encoder), for `cortex bench tokenizer`.
//
//   node reference_encode_bench.js --package DIR [--passes N] [--trials N] < chunks.json
//
// stdin: a JSON array of strings (the chunks). Each trial loads the package afresh (so its word cache
// starts empty; loading is not timed) and encodes every chunk N passes times. Prints one JSON object:
// {"mb_per_s": median over trials, "bytes": UTF-8 bytes per trial, "tokens": tokens per trial,
//  "checksum": a checksum of the ids of one pass (see tokenizer_bench.cpp)}.
'use strict';
const fs = require('fs');
const path = require('path');

let pkg = process.env.CORTEX_VOCAB_DIR || '';
let passes = 4;
let trials = 5;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--package') pkg = args[++i];
  else if (args[i] === '--passes') passes = parseInt(args[++i], 10);
  else if (args[i] === '--trials') trials = parseInt(args[++i], 10);
  else {
    process.stderr.write(`reference_encode_bench.js: unknown argument ${args[i]}\n`);
    process.exit(2);
  }
}
if (!pkg) {
  process.stderr.write('reference_encode_bench.js: pass --package DIR (the gpt-3-encoder folder)\n');
  process.exit(2);
}
const pkgPath = path.resolve(pkg);

function freshEncoder() {
  for (const key of Object.keys(require.cache)) {
    if (key.startsWith(pkgPath + path.sep)) delete require.cache[key];
  }
  return require(pkgPath);
}

const chunks = JSON.parse(fs.readFileSync(0, 'utf8'));
let chunkBytes = 0;
for (const c of chunks) chunkBytes += Buffer.byteLength(c, 'utf8');

let checksum = 0;
let onePassTokens = 0;
{
  const encoder = freshEncoder();
  for (const c of chunks) {
    for (const id of encoder.encode(c)) {
      checksum = (checksum * 31 + id + 1) % 2147483647;
      onePassTokens++;
    }
  }
}

const seconds = [];
for (let t = 0; t < trials; t++) {
  const encoder = freshEncoder();
  const start = process.hrtime.bigint();
  let tokens = 0;
  for (let p = 0; p < passes; p++) {
    for (const c of chunks) tokens += encoder.encode(c).length;
  }
  seconds.push(Number(process.hrtime.bigint() - start) / 1e9);
  if (tokens !== onePassTokens * passes) throw new Error('token count changed between passes');
}
seconds.sort((a, b) => a - b);
const median = seconds[Math.floor(seconds.length / 2)];
const bytes = chunkBytes * passes;
process.stdout.write(JSON.stringify({mb_per_s: bytes / median / 1e6, bytes, tokens: onePassTokens * passes,
                                     checksum}) + '\n');
