import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ImapFlow, type FetchMessageObject, type MessageStructureObject } from 'imapflow';
import { simpleParser, type AddressObject } from 'mailparser';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import type Mail from 'nodemailer/lib/mailer/index.js';
import { eventually, imapCorpus, ImapTranscript, mutate, pyClient, seeded, sendMail, startNode, utf8, type ImapReply, type NodeHandle } from '@mailgrid/testing';

// IMAP4rev2 and its extensions on a single node, end to end: imapflow and Python's imaplib as
// independent clients, raw transcripts where no library can say it (before TLS, IDLE before
// SELECT, literals, malformed input and a seeded fuzz, COMPRESS by hand). Messages are made
// by nodemailer and read back by mailparser, so the MIME on both sides is someone else's.

const PASSWORD = 'correct horse';
const DOMAIN = 'imap.test';
const CRLF = '\r\n';
/** APPENDLIMIT: the node's largest message (`smtp.maxMessageBytes`). */
const APPEND_LIMIT = 2 * 1024 * 1024;

/** A message built by nodemailer's composer (CRLF line ends), as bytes. */
function compose(options: Mail.Options): Promise<Buffer> {
  return new Promise((resolve, reject) => new MailComposer({ ...options, text: options.text && String(options.text).replace(/\r?\n/g, CRLF) }).compile().build((err, m) => (err ? reject(err) : resolve(m))));
}

/** A small message of our own (headers and a body), CRLF line ends. */
function plainMessage(h: { subject: string; from?: string; to?: string; messageId?: string; inReplyTo?: string; references?: string; date?: string; extra?: string[] }, body = 'body\r\n'): string {
  const lines = [
    `From: ${h.from ?? `sender@sender.test`}`,
    `To: ${h.to ?? `alice@${DOMAIN}`}`,
    `Subject: ${h.subject}`,
    `Date: ${h.date ?? new Date().toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${h.messageId ?? `${Math.random().toString(36).slice(2)}@sender.test`}>`,
    ...(h.inReplyTo ? [`In-Reply-To: <${h.inReplyTo}>`] : []),
    ...(h.references ? [`References: ${h.references}`] : []),
    ...(h.extra ?? []),
  ];
  return lines.join(CRLF) + CRLF + CRLF + body;
}

/** The trace fields the server puts on top of what it received (RFC 5321 §4.4). */
const TRACE = /^(?:(?:Return-Path|Received):[^\r]*\r\n(?:[ \t][^\r]*\r\n)*)+/;

/** LIST lines in the server's order: INBOX first, then by name. */
const byName = (a: string, b: string) => {
  const name = (l: string) => l.slice(l.lastIndexOf('"/" ') + 4);
  return name(a) === 'INBOX' ? -1 : name(b) === 'INBOX' ? 1 : name(a) < name(b) ? -1 : name(a) > name(b) ? 1 : 0;
};

/** The tagged text without the status (for response codes). */
const codeOf = (r: ImapReply) => /^\w+ (\[[^\]]*\])?/.exec(r.tagged)?.[1];

/** The tag of the command a transcript sent last (ESEARCH names it). */
const lastTag = (t: ImapTranscript) => `T${Number(t.peekTag().slice(1)) - 1}`;

/** The literal's bytes of an untagged response (`... {n}\r\n<bytes>...`). */
function literalOf(response: string): Buffer {
  const m = /\{(\d+)\}\r\n/.exec(response)!;
  const start = m.index + m[0].length;
  return Buffer.from(response.slice(start, start + Number(m[1])), 'latin1');
}

/**
 * A fuzz input as a live session is sent it: a literal announced at a line's end made
 * non-synchronizing (LITERAL+), and its bytes made up with `x` where the input ends too
 * soon. The server then always takes those bytes (as the literal, or as what recovery
 * skips after a malformed line), or ends the session for a literal too large: what it
 * reads is known. The input ends with a line end (a command goes on after a literal), so
 * the next command is read as one.
 */
function framed(input: Buffer): Buffer {
  const out: Buffer[] = [];
  let ended = true;
  for (let pos = 0; pos < input.length; ) {
    const lf = input.indexOf(0x0a, pos);
    const end = lf < 0 ? input.length : lf;
    const next = lf < 0 ? end : lf + 1;
    const line = input.subarray(pos, end > pos && input[end - 1] === 0x0d ? end - 1 : end);
    const m = /(~?)\{(\d+)\+?\}$/.exec(line.toString('latin1'));
    if (!m) {
      out.push(input.subarray(pos, next));
      ended = lf >= 0;
      pos = next;
      continue;
    }
    const size = Number(m[2]);
    out.push(line.subarray(0, line.length - m[0].length), Buffer.from(`${m[1]}{${size}+}\r\n`));
    // Over APPENDLIMIT the session ends (BYE): nothing after it is read.
    if (size > APPEND_LIMIT) return Buffer.concat(out);
    const data = input.subarray(next, next + size);
    out.push(data, Buffer.alloc(size - data.length, 'x'));
    ended = false;
    pos = next + data.length;
  }
  if (!ended) out.push(Buffer.from('\r\n'));
  return Buffer.concat(out);
}

describe('IMAP on a single node', () => {
  let node: NodeHandle;
  const flows: ImapFlow[] = [];
  const raws: ImapTranscript[] = [];
  /** Accounts, one per concern, so the tests do not see each other's mail. */
  const who = (name: string) => `${name}@${DOMAIN}`;
  const ACCOUNTS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory', 'olivia', 'peggy'];

  /** An imapflow client, logged in over IMAPS (or STARTTLS on the plain port with `secure: false`). */
  async function flow(user: string, options: { secure?: boolean; qresync?: boolean; transcript?: string[] } = {}): Promise<ImapFlow> {
    const secure = options.secure ?? true;
    const client = new ImapFlow({
      host: '127.0.0.1',
      port: secure ? node.ports.imaps : node.ports.imap,
      secure,
      auth: { user: who(user), pass: PASSWORD },
      tls: { rejectUnauthorized: false },
      logger: false,
      qresync: options.qresync,
      // The commands it sends (`C: ...`) and the lines it reads (`S: ...`), from the start.
      emitLogs: !!options.transcript,
    });
    client.on('error', () => undefined);
    if (options.transcript) client.on('log', (e: { src?: string; msg?: string }) => e.src && /^[cs]$/.test(e.src) && options.transcript!.push(`${e.src.toUpperCase()}: ${e.msg}`));
    await client.connect();
    flows.push(client);
    return client;
  }

  /** A raw session over IMAPS, logged in as `user` unless null. */
  async function raw(user: string | null): Promise<ImapTranscript> {
    const t = await ImapTranscript.open(node.ports.imaps, { tls: true });
    raws.push(t);
    if (user) await t.login(who(user), PASSWORD);
    return t;
  }

  /** A message by SMTP to `user`'s INBOX: 250 asserted. */
  async function deliver(user: string, data: string | Buffer): Promise<void> {
    // sendMail writes a string as UTF-8.
    const text = Buffer.isBuffer(data) ? data.toString('utf8') : data;
    const reply = await sendMail(node.smtpPort, { to: [who(user)], data: text });
    assert.match(reply, /^250 /, reply);
  }

  /** Waits until `user`'s INBOX holds `n` messages (by STATUS). */
  async function inboxHolds(user: string, n: number): Promise<void> {
    const t = await raw(user);
    try {
      await eventually(`${user}'s INBOX holds ${n}`, async () => {
        const r = await t.run('STATUS INBOX (MESSAGES)');
        return r.untagged[0].endsWith(`(MESSAGES ${n})`) ? true : undefined;
      });
    } finally {
      t.close();
    }
  }

  /** The stored bytes of a message, as the CLI reads them. */
  async function stored(user: string, uid: number, folder?: string): Promise<Buffer> {
    const r = await node.cli('mailbox', 'get', who(user), String(uid), ...(folder ? ['--folder', folder] : []));
    assert.equal(r.code, 0, r.stderr);
    return Buffer.from(r.stdout, 'latin1');
  }

  before(async () => {
    node = await startNode({ env: { MAILGRID_AUTH_FAIL_DELAY_MS: '10', MAILGRID_SMTP_MAX_MESSAGE_BYTES: String(APPEND_LIMIT) } });
    const ok = (r: { code: number; stderr: string }) => assert.equal(r.code, 0, r.stderr);
    ok(await node.cli('domain', 'add', DOMAIN));
    // Two at a time (two cores): each is a CLI process.
    for (let i = 0; i < ACCOUNTS.length; i += 2) await Promise.all(ACCOUNTS.slice(i, i + 2).map(async (a) => ok(await node.cli('account', 'add', who(a)))));
    for (let i = 0; i < ACCOUNTS.length; i += 2) await Promise.all(ACCOUNTS.slice(i, i + 2).map(async (a) => ok(await node.cliInput(`${PASSWORD}\n`, 'account', 'passwd', who(a)))));
  });

  after(async () => {
    for (const t of raws) t.close();
    await Promise.all(flows.map((f) => (f.usable ? f.logout().catch(() => f.close()) : undefined)));
    const code = await node?.stop();
    assert.equal(code, 0, 'the node stopped cleanly');
  });

  // ---- 1. bytes, BODYSTRUCTURE and ENVELOPE ----------------------------------------------

  it('a message delivered by SMTP is fetched byte for byte; BODYSTRUCTURE, BINARY and ENVELOPE agree with mailparser', async () => {
    const attachment = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff));
    const mixed = await compose({
      from: 'Änne Sender <sender@sender.test>',
      to: [`Alice <${who('alice')}>`, 'other@sender.test'],
      cc: 'Carbon <cc@sender.test>',
      replyTo: 'replies@sender.test',
      subject: 'Mixed: Grüße with an attachment',
      text: 'Hello,\nthe attachment is here.\nÜber alles.\n',
      attachments: [
        { filename: 'data.bin', content: attachment, contentType: 'application/octet-stream' },
        { filename: 'notes.txt', content: Buffer.from('caf\xe9 notes\r\n', 'latin1'), contentType: 'text/plain; charset=iso-8859-1' },
      ],
    });
    const alternative = await compose({ from: 'sender@sender.test', to: who('alice'), subject: 'Alternative', text: 'plain text\n', html: '<p>html <b>text</b></p>' });
    const inner = await compose({ from: 'Inner <inner@sender.test>', to: 'x@sender.test', subject: 'The inner one', text: 'inner body\n', attachments: [{ filename: 'inner.txt', content: 'abc' }] });
    const forwarded = await compose({
      from: 'fwd@sender.test',
      to: who('alice'),
      subject: 'Fwd: The inner one',
      inReplyTo: '<orig@sender.test>',
      references: ['<root@sender.test>', '<orig@sender.test>'],
      text: 'see below\n',
      attachments: [{ filename: 'forwarded.eml', content: inner, contentType: 'message/rfc822' }],
    });
    const sent = [mixed, alternative, forwarded];
    for (const m of sent) await deliver('alice', m);
    await inboxHolds('alice', 3);

    const client = await flow('alice');
    await client.mailboxOpen('INBOX');
    const fetched = await client.fetchAll('1:3', { uid: true, source: true, bodyStructure: true, envelope: true, size: true });
    const t = await raw('alice');
    await t.run('EXAMINE INBOX');
    assert.equal(fetched.length, 3);
    for (const [i, m] of fetched.entries()) {
      const db = await stored('alice', m.uid);
      assert.ok(m.source!.equals(db), `BODY[] of ${m.uid} is what the store holds`);
      assert.equal(m.size, db.length, 'RFC822.SIZE');
      const received = db.toString('latin1').match(TRACE)?.[0] ?? '';
      assert.match(received, /^Return-Path: <sender@sender\.test>\r\nReceived: from /, 'trace fields on top');
      assert.ok(db.subarray(Buffer.byteLength(received, 'latin1')).equals(sent[i]), `message ${i + 1} is the bytes sent, after the trace fields`);
      await agreesWithMailparser(t, m);
    }
    // The structures themselves, as a reader would expect them.
    const [mixedS, altS, fwdS] = fetched.map((m) => m.bodyStructure!);
    assert.deepEqual(shape(mixedS), ['multipart/mixed', ['1 text/plain utf-8', '2 application/octet-stream data.bin', '3 text/plain iso-8859-1 notes.txt']]);
    assert.deepEqual(shape(altS), ['multipart/alternative', ['1 text/plain utf-8', '2 text/html utf-8']]);
    assert.deepEqual(shape(fwdS), ['multipart/mixed', ['1 text/plain utf-8', ['2 message/rfc822', ['multipart/mixed', ['2.1 text/plain utf-8', '2.2 text/plain us-ascii inner.txt']]]]]);
    const rfc822 = fwdS.childNodes![1];
    assert.equal(rfc822.envelope?.subject, 'The inner one');
    assert.deepEqual(rfc822.envelope?.from, [{ name: 'Inner', address: 'inner@sender.test' }]);
    assert.ok(rfc822.lineCount! > 5, 'message/rfc822 has its line count');
  });

  // ---- 2. logins --------------------------------------------------------------------------

  it('before TLS: STARTTLS and LOGINDISABLED, logins refused with PRIVACYREQUIRED; after STARTTLS, LOGIN and AUTHENTICATE PLAIN (with and without SASL-IR) and LOGIN work', async () => {
    const plain = await ImapTranscript.open(node.ports.imap);
    raws.push(plain);
    assert.match(plain.greeting, /^\* OK \[CAPABILITY [^\]]*\bSTARTTLS\b[^\]]*\]/);
    const caps = (await plain.run('CAPABILITY')).untagged[0];
    assert.match(caps, /\bSTARTTLS\b/);
    assert.match(caps, /\bLOGINDISABLED\b/);
    assert.doesNotMatch(caps, /AUTH=/, 'no mechanism offered in the clear');
    await plain.login(who('bob'), PASSWORD, 'NO [PRIVACYREQUIRED]');
    await plain.run(`AUTHENTICATE PLAIN ${Buffer.from(`\0${who('bob')}\0${PASSWORD}`).toString('base64')}`, 'NO [PRIVACYREQUIRED]');
    await plain.run('SELECT INBOX', 'BAD');
    await plain.starttls();
    const tlsCaps = (await plain.run('CAPABILITY')).untagged[0];
    assert.match(tlsCaps, /\bAUTH=PLAIN\b/);
    assert.doesNotMatch(tlsCaps, /LOGINDISABLED|STARTTLS/);
    const login = await plain.login(who('bob'), PASSWORD);
    assert.match(login.tagged, /^OK \[CAPABILITY [^\]]*\bIMAP4rev2\b/, 'the capabilities after login come with the OK');
    await plain.run('STARTTLS', 'BAD');
    await plain.run('LOGOUT');

    // AUTHENTICATE PLAIN with the response on the command line (SASL-IR), and after an empty challenge.
    const plainResponse = Buffer.from(`\0${who('bob')}\0${PASSWORD}`).toString('base64');
    const ir = await raw(null);
    await ir.run(`AUTHENTICATE PLAIN ${plainResponse}`, 'OK');
    await ir.run('SELECT INBOX');
    const noIr = await raw(null);
    noIr.write(`A1 AUTHENTICATE PLAIN\r\n`);
    assert.equal(await noIr.response(), '+ ');
    noIr.write(`${plainResponse}\r\n`);
    assert.match((await noIr.until('A1')).tagged, /^OK /);
    // AUTHENTICATE LOGIN: "Username:" and "Password:", base64.
    const viaLogin = await raw(null);
    viaLogin.write(`A1 AUTHENTICATE LOGIN\r\n`);
    assert.equal(await viaLogin.response(), `+ ${Buffer.from('Username:').toString('base64')}`);
    viaLogin.write(`${Buffer.from(who('bob')).toString('base64')}\r\n`);
    assert.equal(await viaLogin.response(), `+ ${Buffer.from('Password:').toString('base64')}`);
    viaLogin.write(`${Buffer.from(PASSWORD).toString('base64')}\r\n`);
    assert.match((await viaLogin.until('A1')).tagged, /^OK /);
    // A cancelled exchange, a wrong password, an unknown mechanism (from another address: failures count per address).
    const other = await ImapTranscript.open(node.ports.imaps, { tls: true, localAddress: '127.0.0.21' });
    raws.push(other);
    other.write(`A1 AUTHENTICATE PLAIN\r\n`);
    await other.response();
    other.write('*\r\n');
    assert.match((await other.until('A1')).tagged, /^BAD /);
    await other.run(`AUTHENTICATE PLAIN ${Buffer.from(`\0${who('bob')}\0wrong`).toString('base64')}`, 'NO [AUTHENTICATIONFAILED]');
    await other.login(who('bob'), 'wrong', 'NO [AUTHENTICATIONFAILED]');
    await other.run('AUTHENTICATE CRAM-MD5', 'NO');
    await other.login(who('bob'), PASSWORD, 'OK');

    // imapflow on the plain port does STARTTLS by itself; imaplib's starttls() too.
    const client = await flow('bob', { secure: false });
    assert.ok(client.secureConnection, 'imapflow upgraded to TLS');
    assert.equal((await client.mailboxOpen('INBOX')).path, 'INBOX');
    const py = await pyClient([
      ['caps', 'imap', node.ports.imap, 'starttls'],
      ['login', 'imap_login', who('bob'), PASSWORD],
      ['select', 'imap_select', 'INBOX'],
      ['logout', 'imap_logout'],
    ]);
    assert.ok(py.caps.includes('AUTH=PLAIN') && !py.caps.includes('LOGINDISABLED'), String(py.caps));
    assert.ok(!py.login.error, String(py.login.error));
    assert.equal(py.select, 0);
    assert.equal(py.logout, 'BYE');
  });

  // ---- 3. IDLE --------------------------------------------------------------------------------

  it('IDLE before SELECT; with INBOX selected, a delivery wakes an idling imapflow with EXISTS; NOOP brings in another session\'s flag change', async () => {
    const t = await raw('carol');
    t.write('I1 IDLE\r\n');
    assert.match(await t.response(), /^\+ /);
    t.write('DONE\r\n');
    assert.match((await t.until('I1')).tagged, /^OK /);

    const client = await flow('carol');
    await client.mailboxOpen('INBOX');
    const counts: number[] = [];
    client.on('exists', (e) => counts.push(e.count));
    // imapflow idles by itself when it has nothing to do: make sure it does now.
    void client.idle();
    await eventually('imapflow is idling', async () => (client.idling ? true : undefined));
    await deliver('carol', plainMessage({ subject: 'wake up', to: who('carol') }));
    await eventually('EXISTS reached the idling client', async () => (counts.includes(1) ? true : undefined));

    // Another session flags it; a NOOP tells this one.
    await t.run('SELECT INBOX');
    const other = await raw('carol');
    await other.run('SELECT INBOX');
    await other.run('STORE 1 +FLAGS (\\Flagged)');
    const noop = await t.run('NOOP');
    assert.deepEqual(ImapTranscript.pick(noop, /^1 FETCH/), [`1 FETCH (UID 1 FLAGS (\\Flagged))`]);
    assert.deepEqual((await t.run('NOOP')).untagged, [], 'told once');
  });

  // ---- 4. CONDSTORE and QRESYNC --------------------------------------------------------------------

  it('CONDSTORE: HIGHESTMODSEQ, FETCH CHANGEDSINCE, STORE UNCHANGEDSINCE; QRESYNC: VANISHED (EARLIER) on SELECT and UID FETCH, VANISHED for expunges', async () => {
    for (let i = 1; i <= 5; i++) await deliver('erin', plainMessage({ subject: `condstore ${i}`, to: who('erin') }));
    await inboxHolds('erin', 5);
    const a = await raw('erin');
    const b = await raw('erin');
    const modseqOf = (line: string) => Number(/MODSEQ \((\d+)\)/.exec(line)?.[1]);
    // Without QRESYNC enabled, neither its SELECT parameter nor VANISHED.
    await a.run('SELECT INBOX (QRESYNC (1 1))', 'BAD');
    const sel = await a.run('SELECT INBOX (CONDSTORE)');
    const h0 = Number(/HIGHESTMODSEQ (\d+)/.exec(sel.untagged.join('\n'))?.[1]);
    const uidValidity = Number(/UIDVALIDITY (\d+)/.exec(sel.untagged.join('\n'))?.[1]);
    assert.ok(h0 > 0, 'HIGHESTMODSEQ of a folder with mail');
    await a.run('UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)', 'BAD');

    const stored2 = await a.run('STORE 2 +FLAGS (\\Seen)');
    const m2 = modseqOf(stored2.untagged[0]);
    assert.ok(m2 > h0, 'a STORE raises the mod-sequence');
    assert.deepEqual(stored2.untagged, [`2 FETCH (FLAGS (\\Seen) MODSEQ (${m2}))`]);
    assert.deepEqual((await a.run(`FETCH 1:* (FLAGS) (CHANGEDSINCE ${h0})`)).untagged, [`2 FETCH (FLAGS (\\Seen) MODSEQ (${m2}))`], 'exactly the changed message');
    assert.deepEqual((await a.run(`FETCH 1:* (UID) (CHANGEDSINCE ${m2})`)).untagged, [], 'nothing changed since');

    // Another session changes message 3: a STORE conditional on the older mod-sequence fails for it, and only for it.
    await b.run('SELECT INBOX');
    await b.run('STORE 3 +FLAGS (\\Flagged)');
    const cond = await a.run(`STORE 3:4 (UNCHANGEDSINCE ${m2}) +FLAGS (\\Answered)`);
    assert.match(cond.tagged, /^OK \[MODIFIED 3\] /);
    const fetch34 = await a.run('FETCH 3:4 (FLAGS)');
    assert.deepEqual(
      fetch34.untagged.map((l) => l.replace(/ MODSEQ \(\d+\)/, '')),
      ['3 FETCH (FLAGS (\\Flagged))', '4 FETCH (FLAGS (\\Answered))'],
      'message 3 kept its flags, message 4 was changed',
    );
    const uidCond = await a.run(`UID STORE 3 (UNCHANGEDSINCE 1) -FLAGS (\\Flagged)`);
    assert.match(uidCond.tagged, /^OK \[MODIFIED 3\] /, 'UID STORE names the uid');

    // QRESYNC: the state as the client last knew it, then another session's expunges and changes.
    await a.run('ENABLE QRESYNC');
    const status = await a.run('STATUS INBOX (HIGHESTMODSEQ)');
    const h1 = Number(/HIGHESTMODSEQ (\d+)/.exec(status.untagged[0])?.[1]);
    await a.run('UNSELECT');
    await b.run('NOOP');
    await b.run('STORE 1,4 +FLAGS.SILENT (\\Deleted)');
    await b.run('EXPUNGE');
    await b.run('UID STORE 3 +FLAGS.SILENT (\\Seen)');
    const resync = await a.run(`SELECT INBOX (QRESYNC (${uidValidity} ${h1}))`);
    assert.deepEqual(ImapTranscript.pick(resync, 'VANISHED'), ['VANISHED (EARLIER) 1,4']);
    const changed = ImapTranscript.pick(resync, /^\d+ FETCH/);
    assert.equal(changed.length, 1, changed.join('\n'));
    assert.match(changed[0], /^2 FETCH \(UID 3 FLAGS \(\\Flagged \\Seen\) MODSEQ \(\d+\)\)$/);
    const h2 = Number(/HIGHESTMODSEQ (\d+)/.exec(resync.untagged.join('\n'))?.[1]);
    assert.ok(h2 > h1);
    // A mod-sequence in the past with known uids: only those uids are told.
    const known = await a.run(`SELECT INBOX (QRESYNC (${uidValidity} ${h1} 2:4))`);
    assert.deepEqual(ImapTranscript.pick(known, 'VANISHED'), ['VANISHED (EARLIER) 4']);
    assert.equal(ImapTranscript.pick(known, 'OK [CLOSED]').length, 1, 'the previous mailbox closed, said first');
    assert.match(known.untagged[0], /^OK \[CLOSED\]/);
    // A wrong UIDVALIDITY: a plain SELECT, nothing to catch up.
    const stale = await a.run(`SELECT INBOX (QRESYNC (${uidValidity + 1} ${h1}))`);
    assert.deepEqual(ImapTranscript.pick(stale, /VANISHED|FETCH/), []);
    const uidFetch = await a.run(`UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${h1} VANISHED)`);
    assert.deepEqual(
      uidFetch.untagged.map((l) => l.replace(/ MODSEQ \(\d+\)/, '')),
      ['VANISHED (EARLIER) 1,4', '2 FETCH (UID 3 FLAGS (\\Flagged \\Seen))'],
    );
    // Expunges by another session now come as VANISHED, not EXPUNGE.
    await b.run('UID STORE 2 +FLAGS.SILENT (\\Deleted)');
    await b.run('UID EXPUNGE 2');
    const noop = await a.run('NOOP');
    assert.deepEqual(ImapTranscript.pick(noop, /VANISHED|EXPUNGE/), ['VANISHED 2']);
    assert.deepEqual((await a.run('UID SEARCH ALL')).untagged, ['SEARCH 3 5']);
  });

  it('QRESYNC with imapflow: a mailbox opened with its last HIGHESTMODSEQ hears of expunges as VANISHED (EARLIER) and of changed flags', async () => {
    for (let i = 1; i <= 4; i++) await deliver('frank', plainMessage({ subject: `qresync ${i}`, to: who('frank') }));
    await inboxHolds('frank', 4);
    const client = await flow('frank', { qresync: true });
    const first = await client.mailboxOpen('INBOX');
    assert.ok(client.enabled.has('QRESYNC'), 'imapflow enabled QRESYNC');
    assert.ok(first.highestModseq && first.highestModseq > 0n);
    assert.ok(first.mailboxId, 'MAILBOXID');
    await client.mailboxClose();
    const other = await flow('frank');
    await other.mailboxOpen('INBOX');
    await other.messageDelete('2', { uid: true });
    await other.messageFlagsAdd('3', ['\\Flagged'], { uid: true });
    const expunged: { uid?: number; vanished: boolean; earlier?: boolean }[] = [];
    const flagged: { uid?: number; flags: string[] }[] = [];
    client.on('expunge', (e) => expunged.push({ uid: e.uid, vanished: e.vanished, earlier: e.earlier }));
    client.on('flags', (e) => flagged.push({ uid: e.uid, flags: [...e.flags] }));
    const again = await client.mailboxOpen('INBOX', { changedSince: first.highestModseq, uidValidity: first.uidValidity });
    assert.ok(again.highestModseq! > first.highestModseq!);
    assert.deepEqual(expunged, [{ uid: 2, vanished: true, earlier: true }]);
    assert.deepEqual(flagged, [{ uid: 3, flags: ['\\Flagged'] }]);
    // Live: another session's expunge reaches it as VANISHED.
    await other.messageDelete('4', { uid: true });
    await client.noop();
    await eventually('the live VANISHED', async () => (expunged.some((e) => e.uid === 4 && e.vanished && !e.earlier) ? true : undefined));
    const left = await client.fetchAll('1:*', { uid: true });
    assert.deepEqual(left.map((m) => m.uid), [1, 3]);
  });

  // ---- 5. UIDPLUS, MOVE, MULTIAPPEND, APPENDLIMIT -----------------------------------------------

  it('UIDPLUS: APPENDUID, COPYUID, UID EXPUNGE of the named \\Deleted only; MOVE: COPYUID untagged, then EXPUNGE', async () => {
    const client = await flow('grace');
    const appended: { uid?: number; uidValidity?: bigint }[] = [];
    for (let i = 1; i <= 4; i++) {
      const r = await client.append('INBOX', plainMessage({ subject: `uidplus ${i}`, to: who('grace') }), ['\\Seen']);
      assert.ok(r, 'APPEND answered');
      appended.push(r);
    }
    const uidValidity = appended[0].uidValidity;
    assert.deepEqual(appended.map((a) => a.uid), [1, 2, 3, 4], 'APPENDUID');
    assert.ok(uidValidity && appended.every((a) => a.uidValidity === uidValidity));
    await client.mailboxOpen('INBOX');
    const copied = await client.messageCopy('1:2', 'Archive', { uid: true });
    assert.ok(copied);
    assert.deepEqual([...copied.uidMap!.entries()], [[1, 1], [2, 2]], 'COPYUID');
    const archive = await client.status('Archive', { messages: true, uidValidity: true });
    assert.ok(archive);
    assert.equal(copied.uidValidity, archive.uidValidity, "COPYUID names the target's UIDVALIDITY");

    const t = await raw('grace');
    await t.run('SELECT INBOX');
    await t.run('UID STORE 1:3 +FLAGS.SILENT (\\Deleted)');
    const uidExpunge = await t.run('UID EXPUNGE 2:4');
    assert.deepEqual(uidExpunge.untagged, ['3 EXPUNGE', '2 EXPUNGE'], 'only 2 and 3: 1 is not named, 4 is not \\Deleted');
    assert.deepEqual((await t.run('UID SEARCH ALL')).untagged, ['SEARCH 1 4']);
    const move = await t.run('UID MOVE 4 Trash');
    assert.match(move.untagged[0], new RegExp(`^OK \\[COPYUID \\d+ 4 1\\] `), 'COPYUID first, untagged');
    assert.deepEqual(move.untagged.slice(1), ['2 EXPUNGE']);
    assert.match(move.tagged, /^OK /);
    await t.run('MOVE 1 Nosuch', 'NO [TRYCREATE]');
    await t.run('COPY 1 Nosuch', 'NO [TRYCREATE]');
    await t.run('APPEND Nosuch {3+}\r\nabc', 'NO [TRYCREATE]');
    await t.run('UID MOVE 99 Trash', 'OK');
    // imapflow's MOVE agrees.
    const moved = await client.messageMove('1', 'Trash', { uid: true });
    assert.ok(moved);
    assert.deepEqual([...moved.uidMap!.entries()], [[1, 2]]);
    assert.equal((await client.status('INBOX', { messages: true }) || undefined)?.messages, 0);
    assert.equal((await client.status('Trash', { messages: true }) || undefined)?.messages, 2);
  });

  it('MULTIAPPEND: two messages in one APPEND both appear; one bad one leaves none. APPENDLIMIT: over it NO [TOOBIG] without a "+", and the session goes on', async () => {
    const t = await raw('grace');
    const one = 'Subject: one\r\n\r\nbody one\r\n';
    const two = 'Subject: two\r\n\r\nbody two\r\n';
    await t.run('CREATE Multi');
    t.write(`M1 APPEND Multi (\\Seen) {${one.length}}\r\n`);
    assert.match(await t.response(), /^\+ /);
    t.write(`${one} (\\Flagged) "01-Jan-2024 10:00:00 +0000" {${two.length}}\r\n`);
    assert.match(await t.response(), /^\+ /);
    t.write(`${two}\r\n`);
    const multi = await t.until('M1');
    assert.match(multi.tagged, /^OK \[APPENDUID \d+ 1:2\] /);
    await t.run('EXAMINE Multi');
    const both = await t.run('FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
    assert.equal(both.untagged.length, 2);
    assert.match(both.untagged[0], /^1 FETCH \(FLAGS \(\\Seen\) INTERNALDATE "[^"]+" BODY\[HEADER\.FIELDS \(SUBJECT\)\] \{\d+\}\r\nSubject: one\r\n\r\n\)$/);
    assert.match(both.untagged[1], /^2 FETCH \(FLAGS \(\\Flagged\) INTERNALDATE "( 1|01)-Jan-2024 10:00:00 \+0000" /);
    await t.run('UNSELECT');
    // The second one is bad (a bare LF; then a bad date): nothing of the APPEND is kept.
    await t.run(`APPEND Multi {${one.length}+}\r\n${one} {9+}\r\nbare\nLF\r\n`, 'NO');
    await t.run(`APPEND Multi {${one.length}+}\r\n${one} "31-Feb-2024 99:00:00 +0000" {${two.length}+}\r\n${two}`, 'BAD');
    const status = await t.run('STATUS Multi (MESSAGES UIDNEXT)');
    assert.deepEqual(status.untagged, ['STATUS Multi (MESSAGES 2 UIDNEXT 3)'], 'no message of a failed MULTIAPPEND was stored');

    // APPENDLIMIT is the SMTP limit.
    const caps = (await t.run('CAPABILITY')).untagged[0];
    const limit = Number(/\bAPPENDLIMIT=(\d+)/.exec(caps)?.[1]);
    assert.equal(limit, APPEND_LIMIT);
    t.write(`L1 APPEND Multi {${limit + 1}}\r\n`);
    const refused = await t.response();
    assert.match(refused, /^L1 NO \[TOOBIG\] /, 'refused without a "+": the client sends nothing more');
    await t.run('NOOP');
    assert.deepEqual((await t.run('STATUS Multi (MESSAGES APPENDLIMIT)')).untagged, [`STATUS Multi (MESSAGES 2 APPENDLIMIT ${limit})`]);
    // A non-synchronizing literal over it is coming anyway: NO [TOOBIG], then the connection ends (its bytes are not read).
    t.write(`L2 APPEND Multi {${limit + 1}+}\r\n`);
    assert.match(await t.response(), /^L2 NO \[TOOBIG\] /);
    assert.match(await t.response(), /^\* BYE /);
    await t.closed();
  });

  // ---- 6. mailboxes ---------------------------------------------------------------------------------

  it('SPECIAL-USE folders for every account; CREATE-SPECIAL-USE; LIST-EXTENDED (SUBSCRIBED, RECURSIVEMATCH, SPECIAL-USE, RETURN options); LIST-STATUS; STATUS=SIZE; CHILDREN', async () => {
    const t = await raw('heidi');
    const list = async (args: string) => (await t.run(`LIST ${args}`)).untagged;
    assert.deepEqual(await list('"" *'), [
      'LIST (\\HasNoChildren) "/" INBOX',
      'LIST (\\HasNoChildren \\Archive) "/" Archive',
      'LIST (\\HasNoChildren \\Drafts) "/" Drafts',
      'LIST (\\HasNoChildren \\Junk) "/" Junk',
      'LIST (\\HasNoChildren \\Sent) "/" Sent',
      'LIST (\\HasNoChildren \\Trash) "/" Trash',
    ]);
    // CREATE-SPECIAL-USE: a use the server has; an unknown one, two at once and \All (a virtual folder of everything) are refused.
    const made = await t.run('CREATE Important (USE (\\Flagged))');
    assert.match(made.tagged, /^OK \[MAILBOXID \([\w-]+\)\] /);
    await t.run('CREATE Bogus (USE (\\Bogus))', 'NO [USEATTR]');
    await t.run('CREATE Everything (USE (\\All))', 'NO [USEATTR]');
    await t.run('CREATE Two (USE (\\Sent \\Archive))', 'NO [USEATTR]');
    assert.deepEqual(await list('(SPECIAL-USE) "" *'), [
      'LIST (\\HasNoChildren \\Archive) "/" Archive',
      'LIST (\\HasNoChildren \\Drafts) "/" Drafts',
      'LIST (\\HasNoChildren \\Flagged) "/" Important',
      'LIST (\\HasNoChildren \\Junk) "/" Junk',
      'LIST (\\HasNoChildren \\Sent) "/" Sent',
      'LIST (\\HasNoChildren \\Trash) "/" Trash',
    ]);
    assert.equal((await list('"" Bogus')).length, 0, 'a refused CREATE made nothing');

    // A hierarchy: Projects/2024/Q1 and Projects/2025, parents made on the way where they are not.
    for (const name of ['Projects', 'Projects/2024', 'Projects/2024/Q1', 'Projects/2025', 'Lone/Child']) await t.run(`CREATE ${name}`);
    assert.deepEqual(await list('"" Projects/%'), ['LIST (\\HasChildren) "/" Projects/2024', 'LIST (\\HasNoChildren) "/" Projects/2025']);
    assert.deepEqual(await list('"Projects/" %'), ['LIST (\\HasChildren) "/" Projects/2024', 'LIST (\\HasNoChildren) "/" Projects/2025'], 'reference and pattern');
    // A child whose parent is not a mailbox: the parent is \NonExistent (and has children).
    assert.deepEqual(await list('"" Lone* RETURN (CHILDREN)'), ['LIST (\\NonExistent \\HasChildren) "/" Lone', 'LIST (\\HasNoChildren) "/" Lone/Child']);
    await t.run('SELECT Lone', 'NO [NONEXISTENT]');

    // Subscriptions: one that exists, one deep, one that does not exist.
    for (const name of ['Projects/2024/Q1', 'Projects', 'Ghost/Child']) await t.run(`SUBSCRIBE ${name}`);
    assert.deepEqual(await list('(SUBSCRIBED) "" *'), [
      'LIST (\\HasChildren \\Subscribed) "/" Projects',
      'LIST (\\HasNoChildren \\Subscribed) "/" Projects/2024/Q1',
      'LIST (\\NonExistent \\Subscribed) "/" Ghost/Child',
    ].sort(byName));
    assert.deepEqual(
      await list('"" * RETURN (SUBSCRIBED)').then((l) => l.filter((x) => /Subscribed|Ghost/.test(x))),
      ['LIST (\\HasChildren \\Subscribed) "/" Projects', 'LIST (\\HasNoChildren \\Subscribed) "/" Projects/2024/Q1'],
      'a LIST without the SUBSCRIBED selection lists no name that does not exist',
    );
    assert.deepEqual(await list('(SUBSCRIBED RECURSIVEMATCH) "" %'), [
      'LIST (\\NonExistent) "/" Ghost ("CHILDINFO" ("SUBSCRIBED"))',
      'LIST (\\HasChildren \\Subscribed) "/" Projects ("CHILDINFO" ("SUBSCRIBED"))',
    ].sort(byName));
    assert.deepEqual(await list('(SUBSCRIBED RECURSIVEMATCH) "" Projects/%'), ['LIST (\\HasChildren) "/" Projects/2024 ("CHILDINFO" ("SUBSCRIBED"))']);
    await t.run('LIST (RECURSIVEMATCH) "" *', 'BAD');
    assert.deepEqual(await list('"" % RETURN (CHILDREN SUBSCRIBED SPECIAL-USE)'), [
      'LIST (\\HasNoChildren) "/" INBOX',
      'LIST (\\HasNoChildren \\Archive) "/" Archive',
      'LIST (\\HasNoChildren \\Drafts) "/" Drafts',
      'LIST (\\HasNoChildren \\Flagged) "/" Important',
      'LIST (\\HasNoChildren \\Junk) "/" Junk',
      'LIST (\\NonExistent \\HasChildren) "/" Lone',
      'LIST (\\HasChildren \\Subscribed) "/" Projects',
      'LIST (\\HasNoChildren \\Sent) "/" Sent',
      'LIST (\\HasNoChildren \\Trash) "/" Trash',
    ]);

    // LIST-STATUS and STATUS=SIZE: a message appended to Projects/2025.
    const msg = plainMessage({ subject: 'sized', to: who('heidi') });
    await t.run(`APPEND Projects/2025 (\\Seen) {${msg.length}+}\r\n${msg}`);
    const status = await list('"" Projects/% RETURN (STATUS (MESSAGES UNSEEN SIZE UIDNEXT))');
    assert.deepEqual(status, [
      'LIST (\\HasChildren) "/" Projects/2024',
      'STATUS Projects/2024 (MESSAGES 0 UNSEEN 0 SIZE 0 UIDNEXT 1)',
      'LIST (\\HasNoChildren) "/" Projects/2025',
      `STATUS Projects/2025 (MESSAGES 1 UNSEEN 0 SIZE ${msg.length} UIDNEXT 2)`,
    ]);
    // imapflow reads the same tree.
    const client = await flow('heidi');
    const tree = await client.list({ statusQuery: { messages: true } });
    const byPath = new Map(tree.map((m) => [m.path, m]));
    assert.equal(byPath.get('Sent')?.specialUse, '\\Sent');
    assert.equal(byPath.get('Important')?.specialUse, '\\Flagged');
    assert.equal(byPath.get('Projects/2025')?.status?.messages, 1);
    assert.ok(byPath.get('Projects')?.flags.has('\\HasChildren'));
  });

  it('NAMESPACE, ID, ENABLE, UNSELECT; RENAME of a folder with children (MAILBOXID kept, subscriptions follow); RENAME INBOX; DELETE', async () => {
    const t = await raw('heidi');
    assert.deepEqual((await t.run('NAMESPACE')).untagged, ['NAMESPACE (("" "/")) NIL NIL']);
    const id = await t.run('ID ("name" "test-suite" "version" "1")');
    assert.match(id.untagged[0], /^ID \("name" "mailgrid"/);
    assert.deepEqual((await t.run('ENABLE CONDSTORE X-UNKNOWN')).untagged, ['ENABLED CONDSTORE']);
    assert.deepEqual((await t.run('ENABLE CONDSTORE')).untagged, ['ENABLED'], 'enabled once');
    await t.run('SELECT INBOX');
    const unselect = await t.run('UNSELECT');
    assert.deepEqual(unselect.untagged, []);
    await t.run('FETCH 1 FLAGS', 'BAD');

    for (const name of ['Work', 'Work/Alpha', 'Work/Alpha/Deep', 'Work/Beta']) await t.run(`CREATE ${name}`);
    await t.run('SUBSCRIBE Work/Alpha');
    const idOf = async (name: string) => /MAILBOXID \(([^)]+)\)/.exec((await t.run(`STATUS ${name} (MAILBOXID)`)).untagged[0])![1];
    const before = { work: await idOf('Work'), deep: await idOf('Work/Alpha/Deep') };
    const msg = plainMessage({ subject: 'in deep', to: who('heidi') });
    await t.run(`APPEND Work/Alpha/Deep {${msg.length}+}\r\n${msg}`);
    await t.run('RENAME Work Job');
    assert.deepEqual(await t.run('LIST "" Job*').then((r) => r.untagged), [
      'LIST (\\HasChildren) "/" Job',
      'LIST (\\HasChildren) "/" Job/Alpha',
      'LIST (\\HasNoChildren) "/" Job/Alpha/Deep',
      'LIST (\\HasNoChildren) "/" Job/Beta',
    ]);
    assert.deepEqual((await t.run('LIST "" Work*')).untagged, [], 'nothing left under the old name');
    assert.equal(await idOf('Job'), before.work, 'MAILBOXID stays across RENAME');
    assert.equal(await idOf('Job/Alpha/Deep'), before.deep, 'and for the children');
    assert.deepEqual((await t.run('STATUS Job/Alpha/Deep (MESSAGES)')).untagged, ['STATUS Job/Alpha/Deep (MESSAGES 1)']);
    assert.deepEqual((await t.run('LIST (SUBSCRIBED) "" J*')).untagged, ['LIST (\\HasChildren \\Subscribed) "/" Job/Alpha'], 'the subscription follows the rename');
    await t.run('RENAME Job Projects', 'NO [ALREADYEXISTS]');
    await t.run('RENAME Nowhere Somewhere', 'NO [NONEXISTENT]');

    // RENAME INBOX: its messages move to the new folder, INBOX stays (empty). A session that has INBOX selected is told they left.
    for (let i = 1; i <= 2; i++) await deliver('heidi', plainMessage({ subject: `inbox ${i}`, to: who('heidi') }));
    await inboxHolds('heidi', 2);
    const watcher = await raw('heidi');
    const selected = await watcher.run('SELECT INBOX');
    assert.ok(selected.untagged.includes('2 EXISTS'));
    const inboxId = await idOf('INBOX');
    await t.run('RENAME INBOX Saved');
    assert.deepEqual((await t.run('STATUS INBOX (MESSAGES)')).untagged, ['STATUS INBOX (MESSAGES 0)']);
    assert.deepEqual((await t.run('STATUS Saved (MESSAGES)')).untagged, ['STATUS Saved (MESSAGES 2)']);
    assert.equal(await idOf('INBOX'), inboxId, 'INBOX is still INBOX');
    const told = await watcher.run('NOOP');
    assert.deepEqual(ImapTranscript.pick(told, /EXPUNGE/), ['2 EXPUNGE', '1 EXPUNGE'], 'the INBOX session hears that the messages left');
    await watcher.run('FETCH 1 FLAGS', 'BAD');
    await t.run('EXAMINE Saved');
    const moved = await t.run('FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
    assert.deepEqual(moved.untagged.map((l) => /Subject: (.*)\r\n/.exec(l)?.[1]), ['inbox 1', 'inbox 2']);
    await t.run('UNSELECT');

    // DELETE: a folder with children goes, its children stay (the name remains as their parent); INBOX cannot go.
    await t.run('DELETE Job');
    assert.deepEqual((await t.run('LIST "" Job')).untagged, ['LIST (\\Noselect \\HasChildren) "/" Job']);
    await t.run('DELETE Job/Alpha/Deep');
    await t.run('DELETE Job/Alpha/Deep', 'NO [NONEXISTENT]');
    await t.run('DELETE INBOX', 'NO');
    await t.run('SELECT Job/Alpha/Deep', 'NO [NONEXISTENT]');
    await t.run('STATUS Job/Alpha/Deep (MESSAGES)', 'NO [NONEXISTENT]');
  });

  // ---- 7. SEARCH, SORT, THREAD ------------------------------------------------------------------

  it('ESEARCH, SEARCHRES, WITHIN, SEARCH with UTF-8 strings; SORT (ARRIVAL, DATE, FROM, SUBJECT, SIZE, REVERSE, DISPLAYFROM); THREAD=REFERENCES and ORDEREDSUBJECT', async () => {
    const t = await raw('ivan');
    const messages = [
      { from: '"Zoe Adams" <aaa@x.test>', subject: 'Apple pie', date: 'Mon, 01 Jan 2024 10:00:00 +0000', id: 'a1@x', at: '01-Jan-2020 10:00:00 +0000', extra: ['Keywords: =?UTF-8?Q?K=C3=A4se?=', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit'], body: 'Grüße aus Köln\r\n' },
      { from: '"Bob Brown" <bob@x.test>', subject: 'Re: Apple pie', date: 'Tue, 02 Jan 2024 10:00:00 +0000', id: 'a2@x', reply: 'a1@x', refs: '<a1@x>', at: '02-Feb-2024 10:00:00 +0000', body: 'reply one\r\n' },
      { from: 'amy@x.test', subject: 'Banana', date: 'Wed, 03 Jan 2024 09:00:00 +0000', id: 'b1@x', at: '01-Mar-2024 10:00:00 +0000', body: 'a longer body, so that this message is the largest one of them all\r\n' },
      { from: '"Carl" <carl@x.test>', subject: 'RE: Re: apple pie', date: 'Sun, 31 Dec 2023 10:00:00 +0000', id: 'a3@x', reply: 'a2@x', refs: '<a1@x> <a2@x>', at: '04-Feb-2024 10:00:00 +0000', body: 'reply two\r\n' },
      { from: '"Yan" <yan@x.test>', subject: 'Fwd: Banana', date: 'Thu, 04 Jan 2024 10:00:00 +0000', id: 'b2@x', body: 'forwarded\r\n' },
    ];
    const sizes: number[] = [];
    for (const m of messages) {
      const text = plainMessage({ from: m.from, to: who('ivan'), subject: m.subject, date: m.date, messageId: m.id, inReplyTo: m.reply, references: m.refs, extra: m.extra }, m.body);
      const bytes = Buffer.from(text);
      sizes.push(bytes.length);
      await t.run(Buffer.concat([Buffer.from(`APPEND INBOX ${m.at ? `"${m.at}" ` : ''}{${bytes.length}+}\r\n`), bytes]));
    }
    await t.run('SELECT INBOX');
    const search = async (command: string) => (await t.run(command)).untagged;

    // ESEARCH (RFC 4731).
    assert.deepEqual(await search('SEARCH RETURN (MIN MAX COUNT ALL) SUBJECT apple'), [`ESEARCH (TAG "${lastTag(t)}") MIN 1 MAX 4 ALL 1:2,4 COUNT 3`]);
    assert.deepEqual(await search('UID SEARCH RETURN () NOT SUBJECT apple'), [`ESEARCH (TAG "${lastTag(t)}") UID ALL 3,5`]);
    assert.deepEqual(await search('SEARCH RETURN (COUNT) SUBJECT nothing'), [`ESEARCH (TAG "${lastTag(t)}") COUNT 0`]);
    assert.deepEqual(await search('SEARCH RETURN (MIN MAX) SUBJECT nothing'), [`ESEARCH (TAG "${lastTag(t)}")`]);
    // SEARCHRES (RFC 5182): SAVE says nothing; $ is the result, for FETCH and SEARCH.
    assert.deepEqual(await search('SEARCH RETURN (SAVE) SUBJECT banana'), []);
    assert.deepEqual(await search('UID FETCH $ (UID)'), ['3 FETCH (UID 3)', '5 FETCH (UID 5)']);
    assert.deepEqual(await search('SEARCH $'), ['SEARCH 3 5']);
    assert.deepEqual(await search('SEARCH NOT $'), ['SEARCH 1 2 4']);
    // SAVE with MIN saves the minimum only, and MIN is still answered (RFC 5182 §2.1).
    assert.deepEqual(await search('SEARCH RETURN (SAVE MIN) FROM x.test'), [`ESEARCH (TAG "${lastTag(t)}") MIN 1`]);
    assert.deepEqual(await search('FETCH $ (UID)'), ['1 FETCH (UID 1)']);
    // WITHIN (RFC 5032): by INTERNALDATE, in seconds.
    assert.deepEqual(await search('SEARCH YOUNGER 3600'), ['SEARCH 5']);
    assert.deepEqual(await search('SEARCH OLDER 3600'), ['SEARCH 1 2 3 4']);
    // Strings: headers (encoded words decoded), body and text, case folded, in UTF-8.
    assert.deepEqual(await search('SEARCH CHARSET UTF-8 BODY "grüße"'), ['SEARCH 1']);
    assert.deepEqual(await search('SEARCH CHARSET UTF-8 TEXT "KÖLN"'), ['SEARCH 1']);
    assert.deepEqual(await search(`SEARCH CHARSET UTF-8 HEADER Keywords {${Buffer.byteLength('käse')}+}\r\nkäse`), ['SEARCH 1']);
    assert.deepEqual(await search('SEARCH FROM brown'), ['SEARCH 2']);
    assert.deepEqual(await search('SEARCH HEADER In-Reply-To "<a1@x>"'), ['SEARCH 2']);
    assert.deepEqual(await search('SEARCH OR SUBJECT fwd BODY reply'), ['SEARCH 2 4 5']);
    assert.deepEqual(await search('SEARCH SENTBEFORE 1-Jan-2024'), ['SEARCH 4']);
    assert.deepEqual(await search('SEARCH BEFORE 1-Feb-2024'), ['SEARCH 1']);
    await t.run('SEARCH CHARSET KOI8-U ALL', 'NO [BADCHARSET');

    // SORT (RFC 5256) and SORT=DISPLAY (RFC 5957).
    const sortOf = async (keys: string) => (await search(`SORT (${keys}) UTF-8 ALL`))[0];
    assert.equal(await sortOf('ARRIVAL'), 'SORT 1 2 4 3 5');
    assert.equal(await sortOf('REVERSE ARRIVAL'), 'SORT 5 3 4 2 1');
    assert.equal(await sortOf('DATE'), 'SORT 4 1 2 3 5');
    assert.equal(await sortOf('FROM'), 'SORT 1 3 2 4 5', 'by the mailbox part: aaa, amy, bob, carl, yan');
    assert.equal(await sortOf('DISPLAYFROM'), 'SORT 3 2 4 5 1', 'by the display name: amy@x.test, bob brown, carl, yan, zoe adams');
    assert.equal(await sortOf('SUBJECT'), 'SORT 1 2 4 3 5', 'base subjects: apple pie, then banana; ties by number');
    assert.equal(await sortOf('SUBJECT REVERSE DATE'), 'SORT 2 1 4 5 3');
    const bySize = [1, 2, 3, 4, 5].sort((a, b) => sizes[a - 1] - sizes[b - 1] || a - b);
    assert.equal(await sortOf('SIZE'), `SORT ${bySize.join(' ')}`);
    assert.equal(await sortOf('REVERSE SIZE'), `SORT ${[...bySize].reverse().join(' ')}`);
    assert.deepEqual(await search('UID SORT RETURN (COUNT ALL) (DATE) UTF-8 SUBJECT apple'), [`ESEARCH (TAG "${lastTag(t)}") UID ALL 4,1,2 COUNT 3`]);

    // THREAD (RFC 5256): by references (a forward without references joins by its base subject), and by subject.
    assert.deepEqual(await search('THREAD REFERENCES UTF-8 ALL'), ['THREAD (1 2 4)(3 5)']);
    assert.deepEqual(await search('THREAD ORDEREDSUBJECT UTF-8 ALL'), ['THREAD (4 (1)(2))(3 5)']);
    assert.deepEqual(await search('UID THREAD REFERENCES UTF-8 SUBJECT banana'), ['THREAD (3 5)']);

    // imapflow's search, as a client sees it.
    const client = await flow('ivan');
    await client.mailboxOpen('INBOX');
    assert.deepEqual(await client.search({ subject: 'apple' }, { uid: true }), [1, 2, 4]);
    assert.deepEqual(await client.search({ body: 'grüße' }), [1]);
  });

  // ---- 8. OBJECTID ------------------------------------------------------------------------------

  it('OBJECTID: MAILBOXID on CREATE, SELECT, STATUS and LIST; EMAILID and THREADID in FETCH, kept by COPY and MOVE, shared by a reply; SEARCH EMAILID and THREADID', async () => {
    await deliver('judy', plainMessage({ subject: 'The root', to: who('judy'), messageId: 'root@objectid.test' }));
    await deliver('judy', plainMessage({ subject: 'Unrelated', to: who('judy'), messageId: 'other@objectid.test' }));
    await inboxHolds('judy', 2);
    const t = await raw('judy');
    // The reply by APPEND: a thread is joined there as at delivery.
    const reply = plainMessage({ subject: 'Re: The root', to: who('judy'), messageId: 'reply@objectid.test', inReplyTo: 'root@objectid.test', references: '<root@objectid.test>' });
    await t.run(`APPEND INBOX {${reply.length}+}\r\n${reply}`);
    // RFC 8474 §4: objectid = 1*255(ALPHA / DIGIT / "_" / "-").
    const OBJECTID = /^[\w-]{1,255}$/;
    const keptId = /^OK \[MAILBOXID \(([^)]+)\)\]/.exec((await t.run('CREATE Kept')).tagged)?.[1] ?? '';
    assert.match(keptId, OBJECTID);
    const selected = await t.run('SELECT INBOX');
    const inboxId = /^OK \[MAILBOXID \(([^)]+)\)\]/.exec(ImapTranscript.pick(selected, 'OK [MAILBOXID')[0] ?? '')?.[1] ?? '';
    assert.match(inboxId, OBJECTID);
    assert.notEqual(inboxId, keptId);
    assert.deepEqual((await t.run('STATUS INBOX (MAILBOXID)')).untagged, [`STATUS INBOX (MAILBOXID (${inboxId}))`]);
    assert.deepEqual((await t.run('LIST "" (INBOX Kept) RETURN (STATUS (MAILBOXID))')).untagged, [
      'LIST (\\HasNoChildren) "/" INBOX',
      `STATUS INBOX (MAILBOXID (${inboxId}))`,
      'LIST (\\HasNoChildren) "/" Kept',
      `STATUS Kept (MAILBOXID (${keptId}))`,
    ]);

    /** EMAILID and THREADID of each message of the selected folder, by uid. */
    const ids = async () =>
      (await t.run('FETCH 1:* (UID EMAILID THREADID)')).untagged.map((l) => {
        const m = /^\d+ FETCH \(UID (\d+) EMAILID \(([^)]+)\) THREADID \(([^)]+)\)\)$/.exec(l);
        assert.ok(m, l);
        assert.match(m[2], OBJECTID);
        assert.match(m[3], OBJECTID);
        return { uid: Number(m[1]), email: m[2], thread: m[3] };
      });
    const [root, other, answer] = await ids();
    assert.deepEqual([root.uid, other.uid, answer.uid], [1, 2, 3]);
    assert.equal(new Set([root.email, other.email, answer.email]).size, 3, 'an EMAILID of its own for each message');
    assert.equal(answer.thread, root.thread, 'the reply is in the thread of what it answers');
    assert.notEqual(other.thread, root.thread);
    // SEARCH by them (RFC 8474 §6).
    assert.deepEqual((await t.run(`UID SEARCH THREADID ${root.thread}`)).untagged, ['SEARCH 1 3']);
    assert.deepEqual((await t.run(`UID SEARCH EMAILID ${answer.email}`)).untagged, ['SEARCH 3']);
    assert.deepEqual((await t.run('SEARCH EMAILID Mnosuch')).untagged, ['SEARCH']);
    // COPY and MOVE keep both: the bytes are the same message.
    await t.run('UID COPY 1 Kept');
    await t.run('UID MOVE 3 Kept');
    await t.run('EXAMINE Kept');
    assert.deepEqual(
      (await ids()).map((m) => [m.email, m.thread]),
      [root, answer].map((m) => [m.email, m.thread]),
    );
    // imapflow reads the same ids.
    const client = await flow('judy');
    const kept = await client.mailboxOpen('Kept');
    assert.equal(kept.mailboxId, keptId);
    const viaFlow = await client.fetchAll('1:*', { uid: true, emailId: true, threadId: true });
    assert.deepEqual(viaFlow.map((m) => [m.emailId, m.threadId]), [root, answer].map((m) => [m.email, m.thread]));
  });

  // ---- 9. COMPRESS ------------------------------------------------------------------------------

  it('COMPRESS=DEFLATE: commands go on through it, a large message comes back byte for byte, a second COMPRESS is refused; imapflow compresses by itself and reads the same bytes', async () => {
    const t = await raw('judy');
    assert.match((await t.run('CAPABILITY')).untagged[0], /\bCOMPRESS=DEFLATE\b/);
    await t.compress();
    assert.doesNotMatch((await t.run('CAPABILITY')).untagged[0], /COMPRESS=/, 'offered until it is on');
    await t.run('COMPRESS DEFLATE', 'NO [COMPRESSIONACTIVE]');
    // About 1.2 MB: text DEFLATE shrinks, and random bytes (base64) it cannot.
    const noise = randomBytes(600 * 1024).toString('base64').replace(/.{76}/g, '$&\r\n');
    const big = Buffer.from(plainMessage({ subject: 'big', to: who('judy') }, `${'a line DEFLATE makes small\r\n'.repeat(12_000)}${noise}\r\n`));
    await t.run('CREATE Big');
    await t.run(Buffer.concat([Buffer.from(`APPEND Big {${big.length}+}\r\n`), big]));
    await t.run('SELECT Big');
    assert.ok(literalOf((await t.run('FETCH 1 (BODY.PEEK[])')).untagged[0]).equals(big), 'BODY[] through DEFLATE is the bytes appended');
    await t.run('NOOP');

    // imapflow asks for COMPRESS when it is offered (unless told disableCompression).
    const transcript: string[] = [];
    const client = await flow('judy', { transcript });
    const compress = transcript.find((l) => /^C: \S+ COMPRESS DEFLATE$/.test(l));
    assert.ok(compress, transcript.join('\n'));
    assert.ok(transcript.some((l) => l.startsWith(`S: ${compress.split(' ')[1]} OK `)), 'and the server took it');
    await client.mailboxOpen('Big');
    const viaFlow = await client.fetchOne('1', { source: true });
    assert.ok(viaFlow && viaFlow.source!.equals(big), "imapflow's inflated bytes are the message");
  });

  // ---- 10. QUOTA --------------------------------------------------------------------------------

  it('QUOTA: no root until the account has a quota; then GETQUOTAROOT and GETQUOTA give STORAGE in KiB that grows with an APPEND; an APPEND or MULTIAPPEND over it is NO [OVERQUOTA] and stores nothing', async () => {
    const t = await raw('olivia');
    const caps = (await t.run('CAPABILITY')).untagged[0];
    assert.match(caps, /\bQUOTA\b/);
    assert.match(caps, /\bQUOTA=RES-STORAGE\b/);
    assert.doesNotMatch(caps, /QUOTA=RES-MESSAGE/, 'STORAGE is the one resource');
    assert.deepEqual((await t.run('GETQUOTAROOT INBOX')).untagged, ['QUOTAROOT INBOX']);
    await t.run('GETQUOTA ""', 'NO');
    const set = await node.cli('account', 'set', who('olivia'), 'quota', '48k');
    assert.equal(set.code, 0, set.stderr);
    const quota = async (usedKiB: number) => assert.deepEqual((await t.run('GETQUOTAROOT INBOX')).untagged, ['QUOTAROOT INBOX ""', `QUOTA "" (STORAGE ${usedKiB} 48)`]);
    await quota(0);
    await t.run('SETQUOTA "" (STORAGE 1000)', 'NO');

    /** A message of about `kib` KiB. */
    const sized = (subject: string, kib: number) => plainMessage({ subject, to: who('olivia') }, `${'q'.repeat(1022)}\r\n`.repeat(kib));
    const first = sized('first', 10);
    await t.run(`APPEND INBOX {${first.length}+}\r\n${first}`);
    const used = Math.ceil(first.length / 1024);
    await quota(used);
    assert.deepEqual((await t.run('GETQUOTA ""')).untagged, [`QUOTA "" (STORAGE ${used} 48)`]);
    // Over it: refused whole, nothing stored, the use as it was.
    const big = sized('too big', 40);
    await t.run(`APPEND INBOX {${big.length}+}\r\n${big}`, 'NO [OVERQUOTA]');
    const second = sized('second', 10);
    await t.run(`APPEND INBOX {${second.length}+}\r\n${second} {${big.length}+}\r\n${big}`, 'NO [OVERQUOTA]');
    assert.deepEqual((await t.run('STATUS INBOX (MESSAGES)')).untagged, ['STATUS INBOX (MESSAGES 1)']);
    await quota(used);
    // imapflow reads it (in bytes).
    const client = await flow('olivia');
    const q = await client.getQuota('INBOX');
    assert.ok(q);
    assert.deepEqual(q.storage && { usage: q.storage.usage, limit: q.storage.limit }, { usage: used * 1024, limit: 48 * 1024 });
  });

  // ---- 11. UTF8=ACCEPT and IMAP4rev2 ------------------------------------------------------------

  it('UTF8=ACCEPT: a UTF-8 name made and listed as it is (modified UTF-7 to a session without it); APPEND UTF8 (~{n}) keeps raw UTF-8 headers byte for byte. IMAP4rev2: UTF-8 names, no RECENT, a LIST in SELECT, SEARCH answered by ESEARCH, \\NonExistent', async () => {
    const name = 'Entwürfe ☕';
    const utf7 = '"Entw&APw-rfe &JhU-"';
    const plain = await raw('peggy');
    const t = await raw('peggy');
    assert.deepEqual((await t.run('ENABLE UTF8=ACCEPT')).untagged, ['ENABLED UTF8=ACCEPT']);
    await t.run(`CREATE "${name}"`);
    assert.deepEqual((await t.run('LIST "" Entw*')).untagged.map(utf8), [`LIST (\\HasNoChildren) "/" "${name}"`]);
    // Without UTF8=ACCEPT the same folder is modified UTF-7 both ways, and raw 8-bit is no name.
    assert.deepEqual((await plain.run('LIST "" Entw*')).untagged, [`LIST (\\HasNoChildren) "/" ${utf7}`]);
    assert.deepEqual((await plain.run(`STATUS ${utf7} (MESSAGES)`)).untagged, [`STATUS ${utf7} (MESSAGES 0)`]);
    await plain.run(`STATUS "${name}" (MESSAGES)`, 'NO [CANNOT]');

    // RFC 6855 §4: a message with UTF-8 headers comes as UTF8 (literal8).
    const message = Buffer.from(
      [
        'From: Jörg Müller <jörg@bücher.example>',
        `To: ${who('peggy')}`,
        'Subject: Grüße ☕',
        'Date: Mon, 01 Jan 2024 10:00:00 +0000',
        'Message-ID: <grüße@bücher.example>',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: 8bit',
        '',
        'Tschüß',
        '',
      ].join(CRLF),
    );
    const appendUtf8 = (mailbox: string) => Buffer.concat([Buffer.from(`APPEND ${mailbox} UTF8 (~{${message.length}+}\r\n`), message, Buffer.from(')')]);
    await plain.run(appendUtf8(utf7), 'BAD');
    await plain.run('NOOP');
    assert.match((await t.run(appendUtf8(`"${name}"`))).tagged, /^OK \[APPENDUID \d+ 1\] /);
    await t.run(`EXAMINE "${name}"`);
    const fetched = await t.run('FETCH 1 (BODY.PEEK[] ENVELOPE)');
    assert.ok(literalOf(fetched.untagged[0]).equals(message), 'the raw UTF-8 headers, byte for byte');
    assert.match(utf8(fetched.untagged[0]), / ENVELOPE \("Mon, 01 Jan 2024 10:00:00 \+0000" "Grüße ☕" \(\("Jörg Müller" NIL "jörg" "bücher\.example"\)\)/);

    // IMAP4rev2 (RFC 9051): names are UTF-8 (§5.1) with no ENABLE UTF8=ACCEPT.
    const rev2 = await raw('peggy');
    assert.deepEqual((await rev2.run('ENABLE IMAP4rev2')).untagged, ['ENABLED IMAP4rev2']);
    assert.deepEqual((await rev2.run('LIST "" Entw*')).untagged.map(utf8), [`LIST (\\HasNoChildren) "/" "${name}"`]);
    await rev2.run('CREATE Rev2');
    const seen = plainMessage({ subject: 'seen', to: who('peggy') });
    const unseen = plainMessage({ subject: 'unseen', to: who('peggy') });
    await rev2.run(`APPEND Rev2 (\\Seen) {${seen.length}+}\r\n${seen} {${unseen.length}+}\r\n${unseen}`);
    // SELECT: no RECENT and no UNSEEN (Appendix E items 11, 12), a LIST of the folder (item 10); \Recent is nowhere.
    const sel = await rev2.run('SELECT Rev2');
    assert.deepEqual(ImapTranscript.pick(sel, /RECENT|UNSEEN|\\Recent/), []);
    assert.deepEqual(ImapTranscript.pick(sel, 'LIST'), ['LIST () "/" Rev2'], 'as in the example of RFC 9051 §6.3.2');
    assert.ok(sel.untagged.includes('2 EXISTS'));
    // SEARCH is answered by ESEARCH (item 4), its TAG the command's.
    assert.deepEqual((await rev2.run('SEARCH UNSEEN')).untagged, [`ESEARCH (TAG "${lastTag(rev2)}") ALL 2`]);
    assert.deepEqual((await rev2.run('UID SEARCH ALL')).untagged, [`ESEARCH (TAG "${lastTag(rev2)}") UID ALL 1:2`]);
    assert.deepEqual((await rev2.run('SEARCH DELETED')).untagged, [`ESEARCH (TAG "${lastTag(rev2)}")`]);
    // A name that is only a parent is \NonExistent in rev2, \Noselect in rev1 (RFC 9051 §6.3.9).
    await rev2.run('CREATE Lone/Child');
    assert.deepEqual((await rev2.run('LIST "" Lone')).untagged, ['LIST (\\NonExistent \\HasChildren) "/" Lone']);
    assert.deepEqual((await plain.run('LIST "" Lone')).untagged, ['LIST (\\Noselect \\HasChildren) "/" Lone']);
  });

  // ---- 12. malformed input ----------------------------------------------------------------------

  it('malformed commands get a tagged BAD (NO where the RFC says) and the session goes on; a line without end is refused with BYE, the node holding none of it and serving others', async () => {
    const t = await raw('mallory');
    // Commands of the selected state before SELECT, and of the not-authenticated one after LOGIN.
    for (const c of ['FETCH 1 FLAGS', 'STORE 1 +FLAGS (\\Seen)', 'EXPUNGE', 'CLOSE', 'SEARCH ALL', 'UID FETCH 1 UID', 'LOGIN a b', 'AUTHENTICATE PLAIN', 'STARTTLS']) {
      await t.run(c, 'BAD');
      await t.run('NOOP');
    }
    const msg = plainMessage({ subject: 'target', to: who('mallory') });
    await t.run(`APPEND INBOX {${msg.length}+}\r\n${msg}`);
    await t.run('SELECT INBOX');
    const table: [command: string, answer: string][] = [
      ['FOO', 'BAD'],
      ['UID FOO 1', 'BAD'],
      ['', 'BAD'],
      ['SELECT', 'BAD'],
      ['FETCH 1', 'BAD'],
      ['STORE 1 +FLAGS', 'BAD'],
      ['RENAME Alone', 'BAD'],
      ['FETCH 0:x FLAGS', 'BAD'],
      ['FETCH 0 FLAGS', 'BAD'],
      ['FETCH 1:4294967296 FLAGS', 'BAD'],
      // Message 2 of a folder of one.
      ['FETCH 2 FLAGS', 'BAD'],
      ['FETCH 1 (FLAGS', 'BAD'],
      ['FETCH 1 FLAGS)', 'BAD'],
      ['SEARCH (ALL', 'BAD'],
      ['SEARCH ALL)', 'BAD'],
      ['STORE 1 +FLAGS (\\Seen', 'BAD'],
      ['FETCH 1 BODY[HEADER.FIELDS (SUBJECT]', 'BAD'],
      ['LIST "" "unterminated', 'BAD'],
      ['STATUS {abc}', 'BAD'],
      // A synchronizing literal too large: refused before a "+", so nothing of it comes.
      ['STATUS {99999999999999999999}', 'BAD'],
      ['STORE 1 +FLAGS (\\Recent)', 'BAD'],
      ['SEARCH CHARSET X-UNKNOWN ALL', 'NO [BADCHARSET'],
      // A well-formed name that names no mailbox is NO, not BAD (RFC 9051 §6.3.4).
      ['STATUS "&Jjo" (MESSAGES)', 'NO [CANNOT]'],
      ['CREATE INBOX', 'NO'],
      // A name longer than any folder can have (1024 bytes): a refusal, not a store fault.
      [`CREATE "${'n'.repeat(1025)}"`, 'NO [CANNOT]'],
      [`STATUS "${'n'.repeat(5000)}" (MESSAGES)`, 'NO [CANNOT]'],
      ['COPY 1 Nosuch', 'NO [TRYCREATE]'],
      // Last: a failed SELECT leaves no folder selected.
      ['SELECT Nosuch', 'NO [NONEXISTENT]'],
    ];
    for (const [command, answer] of table) {
      await t.run(command, answer);
      await t.run('NOOP');
    }
    // A LIST pattern of many wildcards against a long name: matched in time linear in each (a backtracking one took minutes).
    await t.run(`CREATE ${'a'.repeat(60)}`);
    assert.deepEqual((await t.run(`LIST "" "${'*a'.repeat(40)}*b"`)).untagged, []);
    assert.deepEqual((await t.run(`LIST "" "${'%a'.repeat(40)}%"`)).untagged, [`LIST (\\HasNoChildren) "/" ${'a'.repeat(60)}`]);

    // A line without end: refused once it passes what a command may be, and none of it kept.
    await t.run('SELECT INBOX');
    const rss = () => Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${node.process.pid}/status`, 'utf8'))![1]) * 1024;
    const before = rss();
    // On the plain port, and writing on after the server's FIN (half open), as a hostile client would.
    const flood = net.connect({ host: '127.0.0.1', port: node.ports.imap, allowHalfOpen: true });
    let heard = '';
    flood.setEncoding('latin1').on('data', (d: string) => (heard += d));
    flood.on('error', () => undefined);
    const closed = new Promise((resolve) => flood.once('close', resolve));
    await once(flood, 'connect');
    await eventually('the greeting', async () => (heard.includes('\r\n') ? true : undefined));
    // As fast as the server takes it, and on after its answer: 32 MB.
    const chunk = Buffer.alloc(64 * 1024, 'a');
    flood.write('A1 LOGIN ');
    for (let sent = 0; sent < 32 * 1024 * 1024 && !flood.destroyed; sent += chunk.length) {
      if (!flood.write(chunk)) await Promise.race([new Promise((resolve) => flood.once('drain', resolve)), closed]);
    }
    flood.end();
    await closed;
    assert.match(heard, /\r\n\* BYE \[TOOBIG\] /);
    const grown = rss() - before;
    assert.ok(grown < 8 * 1024 * 1024, `the node grew by ${grown} bytes`);
    await t.run('NOOP');
    await (await raw('mallory')).run('SELECT INBOX');
  });

  it('a live fuzz: a few hundred mutated commands to selected sessions get only tagged OK, NO or BAD (or BYE), never SERVERBUG; the node logs no error and serves a fresh login after', async () => {
    const SEED = Number(process.env.MAILGRID_FUZZ_SEED ?? 20260301);
    // COMPRESS and IDLE change what the connection carries: not mutated here (the parser's fuzz has them).
    const corpus = imapCorpus().filter((s) => !/compress|idle/.test(s.name));
    const random = seeded(SEED);
    const logsBefore = node.logs.length;
    const multipart = await compose({ from: 'a@sender.test', to: who('mallory'), subject: 'parts', text: 'text\n', attachments: [{ filename: 'a.txt', content: 'abc' }] });
    const t0 = await raw('mallory');
    await t0.run(Buffer.concat([Buffer.from(`APPEND INBOX {${multipart.length}+}\r\n`), multipart]));
    const open = async () => {
      const t = await raw('mallory');
      await t.run('SELECT INBOX');
      return t;
    };
    let t = await open();
    let byes = 0;
    for (let i = 0; i < 320; i++) {
      const seed = random.pick(corpus);
      const parts = [mutate(random, seed.data, corpus)];
      if (random.next() < 0.3) parts.push(random.next() < 0.5 ? mutate(random, random.pick(corpus).data, corpus) : random.pick(corpus).data);
      const input = framed(Buffer.concat(parts));
      const text = input.toString('latin1');
      // CHECK says both that the input was read whole and that a folder is still selected.
      const sentinel = `Z${i}`;
      t.write(Buffer.concat([input, Buffer.from(`${sentinel} CHECK\r\n`)]));
      const where = `seed ${SEED}, input ${i} (from ${seed.name}): ${JSON.stringify(text.slice(0, 300))}`;
      for (;;) {
        const r = await t.response().catch((err: Error) => assert.fail(`${err.message}: ${where}`));
        assert.ok(!r.startsWith('+'), `a continuation: ${where}`);
        if (r.startsWith('* BYE')) {
          byes++;
          await t.closed();
          t = await open();
          break;
        }
        if (r.startsWith('* ')) continue;
        const m = /^(\S+) (OK|NO|BAD)(?: |$)/.exec(r);
        assert.ok(m, `not a tagged status: ${r.slice(0, 200)}\n${where}`);
        assert.doesNotMatch(r, /\[SERVERBUG\]/, where);
        if (m[1] !== sentinel) {
          assert.ok(text.includes(m[1]), `a tag that was not sent: ${r.slice(0, 200)}\n${where}`);
          continue;
        }
        if (m[2] !== 'OK') await t.run('SELECT INBOX');
        break;
      }
    }
    assert.ok(byes < 100, `${byes} of 320 inputs ended their session`);
    assert.equal(node.process.exitCode, null, 'the node is up');
    await (await open()).run('FETCH 1:* (FLAGS)');
    const bad = node.logs.slice(logsBefore).filter((l) => Number(l.level) >= 50 || /command-failed|unhandled/.test(String(l.event)));
    assert.deepEqual(bad, [], 'no error logged');
  });

  // ---- 13. two sessions -------------------------------------------------------------------------

  it("two sessions on one folder: another's STORE, EXPUNGE and MOVE reach a session only where RFC 9051 §7.5.1 allows (no EXPUNGE during FETCH, STORE or SEARCH), its message numbers right throughout; NOOP and IDLE tell them", async () => {
    const a = await raw('peggy');
    for (let i = 1; i <= 5; i++) {
      const m = plainMessage({ subject: `shared ${i}`, to: who('peggy') });
      await a.run(`APPEND INBOX {${m.length}+}\r\n${m}`);
    }
    const b = await raw('peggy');
    assert.ok((await b.run('SELECT INBOX')).untagged.includes('5 EXISTS'));
    await a.run('SELECT INBOX');
    await a.run('STORE 2 +FLAGS (\\Flagged)');
    await a.run('STORE 3 +FLAGS.SILENT (\\Deleted)');
    await a.run('EXPUNGE');
    await a.run('UID MOVE 4 Trash');

    // B takes the changes in as the feed tells them; meanwhile a FETCH by number keeps B's numbers, and says some are gone.
    const replies: ImapReply[] = [];
    await eventually("B's view has the expunges", async () => {
      const r = await b.run('FETCH 1:5 (UID)');
      replies.push(r);
      return r.tagged.startsWith('OK [EXPUNGEISSUED]') ? true : undefined;
    });
    assert.deepEqual(ImapTranscript.pick(replies.at(-1)!, /^\d+ FETCH \(UID \d+\)$/), ['1 FETCH (UID 1)', '2 FETCH (UID 2)', '5 FETCH (UID 5)']);
    const store = await b.run('STORE 5 +FLAGS (\\Answered)');
    replies.push(store);
    assert.deepEqual(ImapTranscript.pick(store, /^5 FETCH/), ['5 FETCH (FLAGS (\\Answered))'], 'message 5 is still 5');
    const search = await b.run('SEARCH ALL');
    replies.push(search);
    assert.deepEqual(ImapTranscript.pick(search, 'SEARCH'), ['SEARCH 1 2 5']);
    assert.deepEqual(replies.flatMap((r) => ImapTranscript.pick(r, /EXPUNGE/)), [], 'no EXPUNGE during FETCH, STORE or SEARCH');
    // NOOP tells the expunges, from the highest number down; the flag change is told once, by NOOP at the latest.
    const noop = await b.run('NOOP');
    assert.deepEqual(ImapTranscript.pick(noop, /EXPUNGE/), ['4 EXPUNGE', '3 EXPUNGE']);
    assert.deepEqual([...replies, noop].flatMap((r) => ImapTranscript.pick(r, /^2 FETCH \(UID 2 FLAGS/)), ['2 FETCH (UID 2 FLAGS (\\Flagged))']);
    assert.deepEqual((await b.run('FETCH 1:* (UID FLAGS)')).untagged, ['1 FETCH (UID 1 FLAGS ())', '2 FETCH (UID 2 FLAGS (\\Flagged))', '3 FETCH (UID 5 FLAGS (\\Answered))']);

    // IDLE: changes are told as they come, expunges too.
    b.write('I1 IDLE\r\n');
    assert.match(await b.response(), /^\+ /);
    await a.run('UID STORE 5 +FLAGS (\\Flagged)');
    assert.equal(await b.response(), '* 3 FETCH (UID 5 FLAGS (\\Answered \\Flagged))');
    await a.run('UID STORE 1 +FLAGS.SILENT (\\Deleted)');
    await a.run('UID EXPUNGE 1');
    const idled: string[] = [];
    while (idled.at(-1) !== '* 1 EXPUNGE') idled.push(await b.response());
    assert.deepEqual(idled.filter((l) => l !== '* 1 FETCH (UID 1 FLAGS (\\Deleted))'), ['* 1 EXPUNGE']);
    b.write('DONE\r\n');
    assert.match((await b.until('I1')).tagged, /^OK /);
    assert.deepEqual((await b.run('FETCH 1:* (UID)')).untagged, ['1 FETCH (UID 2)', '2 FETCH (UID 5)']);
  });

  // ---- 15. Python's imaplib ---------------------------------------------------------------------

  it("imaplib end to end over IMAPS: login, select, search, fetch RFC822 (the stored bytes), store \\Deleted, expunge, logout", async () => {
    const bodies = ['first', 'second', 'third'].map((w) => plainMessage({ subject: `py ${w}`, to: who('dave') }, `the ${w} one\r\n`));
    for (const b of bodies) await deliver('dave', b);
    await inboxHolds('dave', 3);
    const second = await stored('dave', 2);
    const r = await pyClient([
      ['caps', 'imap', node.ports.imaps, 'implicit'],
      ['login', 'imap_login', who('dave'), PASSWORD],
      ['select', 'imap_select', 'INBOX'],
      ['all', 'imap_search', 'ALL'],
      ['second', 'imap_search', 'SUBJECT "py second"'],
      ['fetch', 'imap_fetch', '2', '(RFC822)'],
      ['store', 'imap_store', '2', '+FLAGS', '(\\Deleted)'],
      ['expunge', 'imap_expunge'],
      ['after', 'imap_search', 'ALL'],
      ['logout', 'imap_logout'],
    ]);
    assert.ok(r.caps.includes('IMAP4REV2') || r.caps.includes('IMAP4rev2'), String(r.caps));
    assert.equal(r.select, 3);
    assert.deepEqual(r.all, [1, 2, 3]);
    assert.deepEqual(r.second, [2]);
    const fetched = Buffer.from(r.fetch[0], 'base64');
    assert.ok(fetched.equals(second), 'RFC822 is the stored message');
    assert.equal(fetched.toString('latin1').replace(TRACE, ''), bodies[1]);
    assert.match(r.store[0], /^2 \(FLAGS \(.*\\Deleted.*\)\)$/);
    assert.deepEqual(r.expunge, [2]);
    assert.deepEqual(r.after, [1, 2]);
    assert.equal(r.logout, 'BYE');
    // The \Seen that RFC822 set stays on the first message that is left with it.
    const t = await raw('dave');
    await t.run('EXAMINE INBOX');
    const flags = await t.run('FETCH 1:* (FLAGS)');
    assert.deepEqual(flags.untagged, ['1 FETCH (FLAGS ())', '2 FETCH (FLAGS ())'], 'the expunged one was the \\Seen one');
  });

  // ---- 16. metrics ------------------------------------------------------------------------------

  it("metrics: the tests' commands counted by command and result; IDLE sessions a gauge", async () => {
    const metrics = async () => (await fetch(`http://127.0.0.1:${node.ports.http}/metrics`)).text();
    const value = (text: string, series: string) => Number(text.split('\n').find((l) => l.startsWith(`${series} `))?.slice(series.length + 1));
    const text = await metrics();
    for (const [command, result] of [
      ['LOGIN', 'ok'],
      ['LOGIN', 'no'],
      ['AUTHENTICATE', 'ok'],
      ['SELECT', 'ok'],
      ['FETCH', 'ok'],
      ['FETCH', 'bad'],
      ['APPEND', 'ok'],
      ['APPEND', 'no'],
      ['IDLE', 'ok'],
      ['UNPARSED', 'bad'],
    ]) {
      const series = `mailgrid_imap_commands_total{command="${command}",result="${result}"}`;
      assert.ok(value(text, series) > 0, `${series} in:\n${text.split('\n').filter((l) => l.startsWith('mailgrid_imap')).join('\n')}`);
    }
    assert.match(text, /^mailgrid_imap_idle_sessions \d+$/m);
    const t = await raw('mallory');
    t.write('M1 IDLE\r\n');
    assert.match(await t.response(), /^\+ /);
    await eventually('the IDLE in the gauge', async () => (value(await metrics(), 'mailgrid_imap_idle_sessions') >= 1 ? true : undefined));
    t.write('DONE\r\n');
    assert.match((await t.until('M1')).tagged, /^OK /);
  });

  /** What a structure is, briefly: `part type/subtype charset filename`, nested. */
  function shape(node: MessageStructureObject): unknown {
    if (node.childNodes) {
      const kids = node.childNodes.map(shape);
      return node.type === 'message/rfc822' ? [`${node.part} ${node.type}`, kids[0]] : [node.type, kids];
    }
    const filename = node.dispositionParameters?.filename ?? node.parameters?.name;
    return [node.part, node.type, node.parameters?.charset, filename].filter(Boolean).join(' ');
  }

  /** mailparser's reading of the bytes against the server's: envelope, text, html, each attachment by its part number (type, name, charset, decoded bytes and size). */
  async function agreesWithMailparser(t: ImapTranscript, m: FetchMessageObject): Promise<void> {
    const parsed = await simpleParser(m.source!);
    const env = m.envelope!;
    const addresses = (a: AddressObject | AddressObject[] | undefined) => (Array.isArray(a) ? a : a ? [a] : []).flatMap((x) => x.value).map((v) => ({ name: v.name || undefined, address: v.address }));
    const strip = (list: { name?: string; address?: string }[] | undefined) => (list ?? []).map((v) => ({ name: v.name || undefined, address: v.address }));
    assert.equal(env.subject, parsed.subject, 'ENVELOPE subject');
    assert.equal(env.messageId, parsed.messageId, 'ENVELOPE message-id');
    assert.equal(env.inReplyTo, parsed.inReplyTo, 'ENVELOPE in-reply-to');
    assert.equal(new Date(env.date!).getTime(), parsed.date?.getTime(), 'ENVELOPE date');
    assert.deepEqual(strip(env.from), addresses(parsed.from), 'ENVELOPE from');
    assert.deepEqual(strip(env.to), addresses(parsed.to), 'ENVELOPE to');
    assert.deepEqual(strip(env.cc), addresses(parsed.cc), 'ENVELOPE cc');
    assert.deepEqual(strip(env.replyTo), parsed.replyTo ? addresses(parsed.replyTo) : strip(env.from), 'ENVELOPE reply-to (From when absent)');
    const parts = new Map<string, MessageStructureObject>();
    const walk = (n: MessageStructureObject) => {
      if (n.part) parts.set(n.part, n);
      n.childNodes?.forEach(walk);
    };
    walk(m.bodyStructure!);
    // The text and HTML bodies: the first text parts, decoded by the server (BINARY) as mailparser decodes them.
    const binary = async (part: string) => {
      const r = await t.run(`UID FETCH ${m.uid} (BINARY.SIZE[${part}] BINARY.PEEK[${part}])`);
      const size = Number(/BINARY\.SIZE\[[\d.]+\] (\d+)/.exec(r.untagged[0])?.[1]);
      const data = literalOf(r.untagged[0].slice(r.untagged[0].indexOf('BINARY[')));
      assert.equal(size, data.length, `BINARY.SIZE[${part}] is the length of BINARY[${part}]`);
      return data;
    };
    const lf = (s: string) => s.replace(/\r\n/g, '\n').replace(/\n+$/, '');
    const firstOf = (type: string) => [...parts.entries()].find(([p, n]) => n.type === type && !n.disposition && !p.includes('.'))?.[0];
    for (const [type, want] of [['text/plain', parsed.text], ['text/html', parsed.html || undefined]] as const) {
      if (!want) continue;
      const part = firstOf(type);
      assert.ok(part, `a ${type} part`);
      assert.ok(lf(want).startsWith(lf((await binary(part)).toString('utf8'))), `${type} of ${m.uid}`);
    }
    for (const a of parsed.attachments) {
      const n = parts.get(a.partId!);
      assert.ok(n, `part ${a.partId} in BODYSTRUCTURE`);
      assert.equal(n.type, a.contentType, `type of ${a.partId}`);
      assert.equal(n.dispositionParameters?.filename ?? n.parameters?.name, a.filename, `filename of ${a.partId}`);
      const ct = a.headers.get('content-type') as { params?: { charset?: string } } | undefined;
      // A text part without a charset is US-ASCII (RFC 2045 §5.2), and says so.
      const charset = ct?.params?.charset ?? (a.contentType.startsWith('text/') ? 'us-ascii' : undefined);
      assert.equal(n.parameters?.charset?.toLowerCase(), charset?.toLowerCase(), `charset of ${a.partId}`);
      const data = await binary(a.partId!);
      assert.equal(data.length, a.size, `decoded size of ${a.partId}`);
      assert.ok(data.equals(a.content), `decoded bytes of ${a.partId}`);
    }
  }
});
