import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ImapFlow, type FetchMessageObject, type MessageStructureObject } from 'imapflow';
import { simpleParser, type AddressObject } from 'mailparser';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import type Mail from 'nodemailer/lib/mailer/index.js';
import { eventually, ImapTranscript, pyClient, repoRoot, sendMail, startNode, utf8, type ImapReply, type NodeHandle } from '@mailgrid/testing';

// IMAP4rev2 and its extensions on a single node, end to end: imapflow and Python's imaplib as
// independent clients, raw transcripts where no library can say it (before TLS, IDLE before
// SELECT, literals, malformed input, COMPRESS by hand). Messages are made by nodemailer and
// read back by mailparser, so the MIME on both sides is someone else's.

const PASSWORD = 'correct horse';
const DOMAIN = 'imap.test';
const CRLF = '\r\n';

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

describe('IMAP on a single node', () => {
  let node: NodeHandle;
  const flows: ImapFlow[] = [];
  const raws: ImapTranscript[] = [];
  /** Accounts, one per concern, so the tests do not see each other's mail. */
  const who = (name: string) => `${name}@${DOMAIN}`;
  const ACCOUNTS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory', 'olivia', 'peggy'];

  /** `mailgrid account passwd`, the password on standard input. */
  const passwd = (address: string) =>
    new Promise<{ code: number; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [join(repoRoot, 'packages/cli/bin/mailgrid.js'), 'account', 'passwd', address], { env: { ...process.env, ...node.env } }, (err, _out, stderr) => resolve({ code: err ? 1 : 0, stderr }));
      child.stdin!.end(`${PASSWORD}\n`);
    });

  /** An imapflow client, logged in over IMAPS (or STARTTLS on the plain port with `secure: false`). */
  async function flow(user: string, options: { secure?: boolean; qresync?: boolean; disableCompression?: boolean } = {}): Promise<ImapFlow> {
    const secure = options.secure ?? true;
    const client = new ImapFlow({
      host: '127.0.0.1',
      port: secure ? node.ports.imaps : node.ports.imap,
      secure,
      auth: { user: who(user), pass: PASSWORD },
      tls: { rejectUnauthorized: false },
      logger: false,
      qresync: options.qresync,
      disableCompression: options.disableCompression,
    });
    client.on('error', () => undefined);
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
    node = await startNode({ env: { MAILGRID_AUTH_FAIL_DELAY_MS: '10', MAILGRID_SMTP_MAX_MESSAGE_BYTES: String(2 * 1024 * 1024) } });
    const ok = (r: { code: number; stderr: string }) => assert.equal(r.code, 0, r.stderr);
    ok(await node.cli('domain', 'add', DOMAIN));
    // Two at a time (two cores): each is a CLI process.
    for (let i = 0; i < ACCOUNTS.length; i += 2) await Promise.all(ACCOUNTS.slice(i, i + 2).map(async (a) => ok(await node.cli('account', 'add', who(a)))));
    for (let i = 0; i < ACCOUNTS.length; i += 2) await Promise.all(ACCOUNTS.slice(i, i + 2).map(async (a) => ok(await passwd(who(a)))));
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
    assert.equal(limit, 2 * 1024 * 1024);
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
