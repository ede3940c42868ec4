/**
 * Fuzzing the command parser: seeded mutations (byte flips, insertions of IMAP's special
 * characters, truncation, splices, random literals, deep nesting; the mutator is
 * @mailgrid/testing's, which test/imap.test.ts also sends to a live node) of the valid
 * commands in packages/imap/fuzz/corpus/*.txt (wire bytes, CRLF and all), read as a session would, one
 * command after another until the input ends. The parser must only ever resolve a command
 * or throw an ImapParseError, on bounded input never loop or ask for input it does not
 * consume, and never recurse without bound.
 *
 * Longer runs, and the same run again:
 *   npx tsc -b && MAILGRID_FUZZ_ITERATIONS=200000 MAILGRID_FUZZ_SEED=42 npx node --test packages/imap/dist/parser.fuzz.test.js
 * A failure names its seed and iteration and prints the input.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { imapCorpus, mutate, seeded, type Random } from '@mailgrid/testing';
import { ImapParseError, readCommand, type ParseOptions } from './parser.js';
import { BufferInput, EndOfInput, testOptions } from './test-input.js';
import type { TaggedCommand } from './types.js';

const ITERATIONS = Number(process.env.MAILGRID_FUZZ_ITERATIONS ?? 3000);
const SEED = Number(process.env.MAILGRID_FUZZ_SEED ?? 20260201);
const corpus = imapCorpus();

function randomOptions(random: Random): ParseOptions {
  const small = random.pick([0, 10, 4096, 8192]);
  const refuse = random.next() < 0.1;
  return testOptions({
    utf8: random.next() < 0.3,
    literalPlus: random.next() < 0.5,
    maxLiteral: (command) => (command === 'APPEND' ? random.pick([100, 1 << 20]) : small),
    continuation: () => !refuse,
    ...(random.next() < 0.2 ? { maxCommandBytes: 200 } : {}),
  });
}

const show = (data: Buffer) => JSON.stringify(data.toString('latin1'));

function checkCommand(parsed: TaggedCommand): void {
  assert.match(parsed.tag, /^[\x21-\x7e]+$/);
  assert.equal(typeof parsed.command.name, 'string');
}

function checkError(err: ImapParseError): void {
  // A fault of the parser's own would be an ImapParseError with a cause: none is allowed.
  assert.equal(err.cause, undefined, `internal error: ${String(err.cause instanceof Error ? err.cause.stack : err.cause)}`);
  assert.match(err.response(), /^[\x20-\x7e]+$/);
  if (err.tag !== undefined) assert.match(err.tag, /^[\x21-\x7e]+$/);
  if (err.unread) assert.ok(Number.isFinite(err.pending));
}

/** Reads commands until the input ends or a command leaves a literal unread (the session would close). */
async function session(data: Buffer, options: ParseOptions): Promise<{ commands: number; errors: number }> {
  const input = new BufferInput(data);
  let commands = 0;
  let errors = 0;
  for (let turn = 0; ; turn++) {
    // Every read consumes at least a byte, or fails at the end: more turns than bytes is a loop.
    assert.ok(turn <= data.length + 1, 'the parser does not get on');
    try {
      checkCommand(await readCommand(input, options));
      commands++;
    } catch (err) {
      if (err instanceof EndOfInput) break;
      if (!ImapParseError.is(err)) throw err;
      checkError(err);
      errors++;
      if (err.unread) break;
    }
    if (input.done) break;
  }
  assert.ok(input.reads <= data.length + commands + errors + 2, `${input.reads} reads of ${data.length} bytes`);
  return { commands, errors };
}

describe('parser fuzz', () => {
  it('has a corpus of valid commands, each read whole', async () => {
    assert.ok(corpus.length >= 30, `${corpus.length} seeds`);
    for (const { name, data } of corpus) {
      const input = new BufferInput(data);
      // UTF8=ACCEPT on: some forms (a UTF-8 name, APPEND UTF8) are valid only then.
      await readCommand(input, testOptions({ utf8: true })).catch((err: unknown) => assert.fail(`${name}: ${String(err)}`));
      assert.ok(input.done, `${name}: ${input.rest()}`);
    }
  });

  it(`only resolves commands or throws ImapParseError, over ${ITERATIONS} mutated inputs (seed ${SEED})`, { timeout: 600_000 }, async () => {
    const random = seeded(SEED);
    let commands = 0;
    let errors = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const seed = random.pick(corpus);
      // Several commands in a row, as a pipelining client sends them: recovery is exercised too.
      const parts = [mutate(random, seed.data, corpus)];
      while (random.next() < 0.3) parts.push(random.next() < 0.5 ? mutate(random, random.pick(corpus).data, corpus) : random.pick(corpus).data);
      const data = Buffer.concat(parts);
      const started = performance.now();
      try {
        const result = await session(data, randomOptions(random));
        commands += result.commands;
        errors += result.errors;
      } catch (err) {
        assert.fail(`seed ${SEED}, iteration ${i} (from ${seed.name}): ${String(err instanceof Error ? err.stack : err)}\ninput: ${show(data)}`);
      }
      const took = performance.now() - started;
      assert.ok(took < 2000, `seed ${SEED}, iteration ${i}: ${Math.round(took)} ms for ${data.length} bytes\ninput: ${show(data)}`);
    }
    if (process.env.MAILGRID_FUZZ_STATS) console.log({ commands, errors });
    // Both outcomes were reached: the mutations are neither all harmless nor all fatal.
    assert.ok(commands > ITERATIONS / 20 && errors > ITERATIONS / 20, `${commands} commands, ${errors} errors`);
  });

  it('refuses deep nesting with LIMIT, and the next command still reads', async () => {
    for (const unit of ['(', 'NOT ', 'OR ALL ', '(OR ']) {
      for (const depth of [200, 1000, 100000]) {
        const input = new BufferInput(`A1 SEARCH ${unit.repeat(depth)}ALL\r\nZ9 NOOP\r\n`);
        const err = await readCommand(input, testOptions()).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(ImapParseError.is(err), `${unit} x ${depth}: ${String(err)}`);
        assert.equal(err.code, 'LIMIT', `${unit} x ${depth}`);
        assert.equal((await readCommand(input, testOptions())).tag, 'Z9');
      }
    }
  });
});
