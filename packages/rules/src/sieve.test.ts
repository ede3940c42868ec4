import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluate, MessageView, parseSieve, SieveError, vacationRefusal, vacationReply, type Vacation } from './index.js';

const msg = (head: string, body = 'hello\r\n') => new MessageView(Buffer.from(head.replace(/\n/g, '\r\n') + '\r\n' + body));
const run = (script: string, head: string, envelope = { from: 'bob@outside.test', to: 'alice@example.test' }, size = 100) =>
  evaluate(parseSieve(script), { message: msg(head), size, envelope });

const plain = 'From: Bob <bob@outside.test>\nTo: alice@example.test\nSubject: Hello =?utf-8?q?w=C3=B6rld?=\nX-Spam: yes\n';

describe('sieve: parsing', () => {
  const refused: [string, string, number, number][] = [
    ['keep', 'expected ";" after keep', 1, 5],
    ['fileinto "A";', 'fileinto needs require "fileinto"', 1, 1],
    ['require "imap4flags";', 'unsupported extension "imap4flags"', 1, 9],
    ['keep;\nrequire "fileinto";', 'require must come before any other command', 2, 1],
    ['if header :regex "x" "y" { keep; }', 'header does not take :regex', 1, 11],
    ['if true { keep; }\nelse { discard; }\nelse { keep; }', 'else without a preceding if', 3, 1],
    ['if foo { keep; }', 'unknown test "foo"', 1, 4],
    ['frobnicate;', 'unknown command "frobnicate"', 1, 1],
    ['require "vacation";\nvacation :handle "x" "away";', 'vacation does not support :handle', 2, 10],
    ['redirect "not an address";', 'invalid address "not an address"', 1, 10],
    ['redirect "a\x01b@bad_domain";', 'invalid address', 1, 10],
    ['if header "subject" { keep; }', 'header takes 2 string arguments', 1, 4],
    ['keep; /* open', 'unterminated comment', 1, 7],
  ];
  for (const [script, reason, line, column] of refused) {
    it(`refuses ${JSON.stringify(script)} at ${line}:${column}`, () => {
      assert.throws(
        () => parseSieve(script),
        (err: unknown) => err instanceof SieveError && err.reason.startsWith(reason) && err.line === line && err.column === column,
      );
    });
  }

  it('reads multi-line strings, comments, lists and quantities', () => {
    const s = parseSieve(
      'require ["fileinto", "vacation"]; # comment\nif size :over 1K { fileinto "Big"; }\nvacation :days 3 :addresses ["a@example.test"] text:\nAway.\n..dot\n.\n;',
    );
    assert.equal(s.commands.length, 2);
    const v = s.commands[1] as Vacation & { kind: string };
    assert.equal(v.reason, 'Away.\r\n.dot\r\n');
    assert.equal(v.days, 3);
    assert.deepEqual(v.addresses, ['a@example.test']);
  });
});

describe('sieve: applying', () => {
  it('keeps implicitly, and fileinto cancels it', () => {
    assert.deepEqual(run('', plain).folders, ['INBOX']);
    assert.deepEqual(run('require "fileinto"; if header :contains "x-spam" "YES" { fileinto "Junk"; }', plain).folders, ['Junk']);
    assert.deepEqual(run('require "fileinto"; if header :is "x-spam" "no" { fileinto "Junk"; }', plain).folders, ['INBOX']);
  });

  it('compares decoded header values with :matches', () => {
    assert.deepEqual(run('require "fileinto"; if header :matches "subject" "hello w?rld" { fileinto "W"; }', plain).folders, ['W']);
  });

  it('tests addresses by part, the envelope, size and existence', () => {
    const s = `require ["fileinto", "envelope"];
      if address :domain :is "from" "OUTSIDE.test" { fileinto "A"; }
      if envelope :localpart :is "to" "alice" { fileinto "B"; }
      if allof (exists ["to", "from"], not exists "list-id", size :under 1M) { fileinto "C"; }
      if anyof (false, address :localpart :contains "to" "nobody") { fileinto "D"; }`;
    assert.deepEqual(run(s, plain).folders, ['A', 'B', 'C']);
  });

  it('reads addresses from the field as written: an encoded display name adds none', () => {
    const view = msg('To: =?utf-8?q?x=2C_victim=40example=2Etest=2C?= <other@x.test>\nCc: "A, B" <a@x.test>, b@x.test\n');
    assert.deepEqual(view.addresses('to'), ['other@x.test']);
    assert.deepEqual(view.addresses('cc'), ['a@x.test', 'b@x.test']);
    assert.equal(view.header('to')[0], 'x, victim@example.test, <other@x.test>');
  });

  it('stops, discards, redirects and rejects', () => {
    assert.deepEqual(run('discard; stop; keep;', plain).folders, []);
    const r = run('require "reject"; if true { reject "no thanks"; }', plain);
    assert.deepEqual([r.folders, r.redirects, r.reject], [[], [], 'no thanks']);
    const moved = run('redirect "x@y.test";', plain);
    assert.deepEqual([moved.folders, moved.redirects], [[], ['x@y.test']]);
    assert.deepEqual(run('if false { discard; } elsif true { redirect "x@y.test"; keep; } else { discard; }', plain).folders, ['INBOX']);
  });

  it('keeps a message it may not reject, files "inbox" in INBOX, and redirects at most 4 times', () => {
    const r = run('require ["reject", "fileinto"]; fileinto "Lists"; reject "no";', plain);
    assert.deepEqual([r.folders, r.reject, r.problems.length], [['Lists'], undefined, 1]);
    assert.deepEqual(run('require "fileinto"; fileinto "inbox";', plain).folders, ['INBOX']);
    const many = run(['a', 'b', 'c', 'd', 'e'].map((x) => `redirect "${x}@y.test";`).join(' '), plain);
    assert.deepEqual([many.redirects.length, many.problems.length], [4, 1]);
  });
});

describe('vacation', () => {
  const v: Vacation = { reason: 'Away until Monday.', days: 7, addresses: ['alias@example.test'] };
  const ctx = (head: string, mailFrom = 'bob@outside.test') => ({ mailFrom, account: 'alice@example.test', message: msg(head) });

  it('answers a person who wrote to the account', () => assert.equal(vacationRefusal(v, ctx(plain)), undefined));

  it('never answers <>, lists, bulk, automatic mail, daemons or mail not addressed to the account', () => {
    assert.equal(vacationRefusal(v, ctx(plain, '')), 'null sender');
    assert.equal(vacationRefusal(v, ctx(plain + 'List-Id: <dev.lists.test>\n')), 'list mail');
    assert.equal(vacationRefusal(v, ctx(plain + 'Precedence: bulk\n')), 'bulk mail');
    assert.equal(vacationRefusal(v, ctx(plain + 'Auto-Submitted: auto-replied\n')), 'automatic mail');
    assert.equal(vacationRefusal(v, ctx(plain, 'owner-dev@lists.test')), 'sender is a daemon or list address');
    assert.equal(vacationRefusal(v, ctx('From: bob@outside.test\nTo: someone@else.test\n')), 'not addressed to the account');
    assert.equal(vacationRefusal(v, ctx('From: bob@outside.test\nCc: alias@example.test\n')), undefined);
  });

  it('builds an auto-reply threaded to the original', async () => {
    const reply = (await vacationReply(v, ctx(plain + 'Message-ID: <m1@outside.test>\n'))).toString();
    assert.match(reply, /^Auto-Submitted: auto-replied\r$/m);
    assert.match(reply, /^In-Reply-To: <m1@outside.test>\r$/m);
    assert.match(reply, /^To: bob@outside.test\r$/m);
    assert.match(reply, /Away until Monday\./);
    assert.doesNotMatch(reply.replace(/\r\n/g, ''), /[\r\n]/);
  });
});
