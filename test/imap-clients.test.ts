import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ImapFlow } from 'imapflow';
import { cliPath, eventually, repoRoot, sendMail, startNode, type NodeHandle } from '@mailgrid/testing';

// mailgrid's IMAP with two real third-party clients: mbsync (isync) syncing a Maildir both
// ways, over implicit TLS and STARTTLS, and Roundcube's command-line tools (msgimport.sh,
// msgexport.sh) and its IMAP library (rcube_imap_generic) on SORT and THREAD. What the
// clients see is checked over IMAP with imapflow.

const PASSWORD = 'correct horse';
const MBSYNC = 'mbsync';
const RC_BIN = '/usr/share/roundcube/bin';

interface Run {
  code: number;
  out: string;
}

/** Runs a client to its end; never throws for a non-zero exit. */
function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { env: { ...process.env, ...opts.env }, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` });
    });
    child.stdin!.end(opts.input ?? '');
  });
}

/** A Maildir message as IMAP has it: CRLF line ends (Maildir keeps the local LF). */
const crlf = (s: string | Buffer) => s.toString('latin1').replace(/\r?\n/g, '\r\n');
/** mbsync marks every message it copies with an `X-TUID` header (to find it again if the server had not said its UID). */
const withoutTuid = (s: string) => s.replace(/^X-TUID: [^\r\n]*\r?\n/m, '');

/** A Maildir file name's flags (`…:2,FS`). */
const maildirFlags = (name: string) => name.split(':2,')[1] ?? '';

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

describe('IMAP with third-party clients: mbsync and Roundcube', () => {
  let node: NodeHandle;
  let cert: string;
  let work: string;
  const accounts = ['sync@example.test', 'rc@example.test', 'names@example.test', 'cache@example.test'];

  before(async () => {
    // The self-signed certificate is made for smtp.hostname: `localhost`, so PHP can verify it by name.
    node = await startNode({ env: { MAILGRID_SMTP_HOSTNAME: 'localhost' } });
    for (const args of [['domain', 'add', 'example.test'], ...accounts.map((a) => ['account', 'add', a])]) {
      const r = await node.cli(...args);
      assert.equal(r.code, 0, r.stderr);
    }
    for (const who of accounts) {
      const r = await run(process.execPath, [cliPath, 'account', 'passwd', who], { input: `${PASSWORD}\n`, env: node.env });
      assert.equal(r.code, 0, r.out);
    }
    cert = join(node.dataDir, 'tls', 'self-signed.crt');
    work = mkdtempSync(join(tmpdir(), 'mailgrid-imap-clients-'));
  });
  after(async () => {
    await node?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** An imapflow session as `user`, verifying the node's certificate. */
  async function imap<T>(user: string, fn: (c: ImapFlow) => Promise<T>): Promise<T> {
    const c = new ImapFlow({ host: '127.0.0.1', port: node.ports.imaps, secure: true, auth: { user, pass: PASSWORD }, logger: false, tls: { ca: [readFileSync(cert)], servername: 'localhost' } });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.logout().catch(() => c.close());
    }
  }

  /** Every folder of `user` with its UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and each message's uid, flags and bytes. */
  async function serverState(user: string) {
    return imap(user, async (c) => {
      const state: Record<string, { uidValidity: string; uidNext: number; highestModseq: string; messages: { uid: number; flags: string[]; body: string }[] }> = {};
      for (const box of await c.list()) {
        // A parent named by its children only (Imported of Imported/2026) has no state.
        if (box.flags.has('\\Noselect') || box.flags.has('\\NonExistent')) continue;
        const st = await c.status(box.path, { uidValidity: true, uidNext: true, highestModseq: true, messages: true });
        if (!st) throw new Error(`no STATUS of ${box.path}`);
        const messages: { uid: number; flags: string[]; body: string }[] = [];
        if (st.messages) {
          const lock = await c.getMailboxLock(box.path, { readOnly: true });
          try {
            for (const m of await c.fetchAll('1:*', { uid: true, flags: true, source: true }))
              messages.push({ uid: m.uid, flags: [...(m.flags ?? [])].sort(), body: m.source!.toString('latin1') });
          } finally {
            lock.release();
          }
        }
        state[box.path] = { uidValidity: String(st.uidValidity), uidNext: st.uidNext!, highestModseq: String(st.highestModseq), messages: messages.sort((a, b) => a.uid - b.uid) };
      }
      return state;
    });
  }

  describe('mbsync', () => {
    const user = accounts[0];
    let maildir: string;
    let rc: string;
    /** The messages delivered by SMTP, by subject. */
    const smtp = new Map<string, string>();

    before(() => {
      maildir = join(work, 'Maildir');
      mkdirSync(maildir);
      rc = join(work, 'mbsyncrc');
      writeFileSync(rc, mbsyncConfig({ maildir, port: node.ports.imaps, ssl: 'IMAPS', auth: 'PLAIN' }));
    });

    function mbsyncConfig(o: { maildir: string; port: number; ssl: 'IMAPS' | 'STARTTLS'; auth: string; sync?: string; user?: string }): string {
      return [
        'IMAPAccount mailgrid',
        'Host 127.0.0.1',
        `Port ${o.port}`,
        `User ${o.user ?? user}`,
        `Pass "${PASSWORD}"`,
        `SSLType ${o.ssl}`,
        `CertificateFile ${cert}`,
        `AuthMechs ${o.auth}`,
        '',
        'IMAPStore mailgrid',
        'Account mailgrid',
        '',
        'MaildirStore local',
        `Path ${o.maildir}/`,
        `Inbox ${o.maildir}/INBOX`,
        'SubFolders Verbatim',
        '',
        'Channel mail',
        'Far :mailgrid:',
        'Near :local:',
        'Patterns *',
        'Create Both',
        'Expunge Both',
        'SyncState *',
        ...(o.sync ? [`Sync ${o.sync}`] : []),
        '',
      ].join('\n');
    }

    /** One mbsync run of every channel, with its protocol trace (`-D`). */
    async function mbsync(config = rc, code = 0): Promise<Run> {
      const r = await run(MBSYNC, ['-D', '-c', config, '-a']);
      assert.equal(r.code, code, r.out);
      return r;
    }

    /** The Maildir's message files (relative paths, flags in the names) and a digest of each. */
    function maildirState(dir = maildir): Record<string, string> {
      const out: Record<string, string> = {};
      for (const p of walk(dir)) {
        const rel = relative(dir, p);
        if (/(^|\/)\.[^/]*$/.test(rel)) continue; // mbsync's state files
        out[rel] = createHash('sha256').update(readFileSync(p)).digest('hex');
      }
      return out;
    }

    /** The Maildir file of the message with this subject (in `folder`). */
    function fileOf(subject: string, folder = 'INBOX'): string | undefined {
      for (const sub of ['cur', 'new']) {
        const d = join(maildir, folder, sub);
        for (const name of readdirSync(d)) if (readFileSync(join(d, name), 'latin1').includes(`\nSubject: ${subject}\n`)) return join(d, name);
      }
      return undefined;
    }

    function setMaildirFlags(file: string, flags: string): string {
      const [base] = file.split(':2,');
      const to = `${base.replace('/new/', '/cur/')}:2,${[...flags].sort().join('')}`;
      renameSync(file, to);
      return to;
    }

    const placed = (id: string, extra = '') =>
      `From: Alice <alice@elsewhere.test>\nTo: ${user}\nSubject: ${id}\nMessage-ID: <${id}@elsewhere.test>\nDate: Mon, 07 Dec 2026 09:00:00 +0000\n${extra}\n${id}: written in the Maildir\n.a line with a dot\n`;

    it('first run: mail delivered by SMTP lands in the Maildir unchanged; Maildir mail (a subfolder too) lands in mailgrid with its flags', async () => {
      const messages = {
        'smtp-plain': 'From: bob@sender.test\r\nTo: sync@example.test\r\nSubject: smtp-plain\r\nMessage-ID: <smtp-plain@sender.test>\r\n\r\n.a line that starts with a dot\r\nbody\r\n',
        'smtp-8bit':
          'From: =?UTF-8?Q?J=C3=BCrgen?= <j@sender.test>\r\nTo: sync@example.test\r\nSubject: smtp-8bit\r\nMessage-ID: <smtp-8bit@sender.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<p>Grüße aus Köln</p>\r\n--b1--\r\n',
        'smtp-flag-me': 'From: bob@sender.test\r\nTo: sync@example.test\r\nSubject: smtp-flag-me\r\nMessage-ID: <smtp-flag-me@sender.test>\r\n\r\nflag me on the server\r\n',
        'smtp-trash-me': 'From: bob@sender.test\r\nTo: sync@example.test\r\nSubject: smtp-trash-me\r\nMessage-ID: <smtp-trash-me@sender.test>\r\n\r\ntrash me in the Maildir\r\n',
      };
      for (const [subject, data] of Object.entries(messages)) {
        assert.match(await sendMail(node.smtpPort, { to: [user], data }), /^250 /);
        smtp.set(subject, data);
      }
      await eventually('four messages in INBOX', async () => ((await imap(user, (c) => c.status('INBOX', { messages: true }))) || undefined)?.messages === 4 || undefined);

      // The Maildir side: two in INBOX (one flagged, one seen), one in a subfolder's subfolder.
      for (const f of ['INBOX', 'Projects', 'Projects/Alpha']) for (const sub of ['cur', 'new', 'tmp']) mkdirSync(join(maildir, f, sub), { recursive: true });
      writeFileSync(join(maildir, 'INBOX', 'cur', '1000.local:2,F'), placed('local-flagged'));
      writeFileSync(join(maildir, 'INBOX', 'cur', '1001.local:2,S'), placed('local-delete-me'));
      writeFileSync(join(maildir, 'Projects', 'Alpha', 'cur', '1002.local:2,RS'), placed('local-alpha', 'In-Reply-To: <smtp-plain@sender.test>\n'));

      const r = await mbsync();
      // UIDPLUS: every APPEND is answered with its uid, so mbsync never searches for its X-TUID marker.
      assert.match(r.out, /OK \[APPENDUID \d+ \d+\]/);
      assert.doesNotMatch(r.out, /X-TUID\)\]/, 'no search for a message by its X-TUID');

      // SMTP → Maildir: the same bytes (LF line ends, mbsync's X-TUID).
      const server = await serverState(user);
      for (const [subject, data] of smtp) {
        const file = fileOf(subject);
        assert.ok(file, `${subject} is in the Maildir`);
        const onServer = server.INBOX.messages.find((m) => m.body.includes(`Subject: ${subject}\r\n`))!;
        assert.equal(withoutTuid(crlf(readFileSync(file))), onServer.body, `${subject}: the Maildir has what mailgrid has`);
        assert.ok(onServer.body.endsWith(Buffer.from(data).toString('latin1')), `${subject}: what mailgrid has is what was sent (after its trace headers)`);
      }
      // Maildir → mailgrid: the folders made, the bytes (CRLF, with X-TUID) and the flags.
      assert.ok(server['Projects/Alpha'], 'Projects/Alpha made on the server');
      const expect: [string, string, string[]][] = [
        ['INBOX', 'local-flagged', ['\\Flagged']],
        ['INBOX', 'local-delete-me', ['\\Seen']],
        ['Projects/Alpha', 'local-alpha', ['\\Answered', '\\Seen']],
      ];
      for (const [folder, subject, flags] of expect) {
        const m = server[folder].messages.find((m) => m.body.includes(`Subject: ${subject}\r\n`));
        assert.ok(m, `${subject} is in ${folder} on the server`);
        assert.equal(withoutTuid(m.body), crlf(placed(subject, subject === 'local-alpha' ? 'In-Reply-To: <smtp-plain@sender.test>\n' : '')));
        assert.deepEqual(m.flags, flags.sort(), `${subject}'s flags`);
      }
      // The CLI sees the same folders.
      const list = await node.cli('mailbox', 'list', user);
      assert.equal(list.code, 0, list.stderr);
    });

    it('flag changes and expunges propagate both ways', async () => {
      // In the Maildir: one seen, one trashed; on the server: one flagged, one deleted and expunged.
      setMaildirFlags(fileOf('smtp-plain')!, 'S');
      setMaildirFlags(fileOf('smtp-trash-me')!, 'T');
      await imap(user, async (c) => {
        const lock = await c.getMailboxLock('INBOX');
        try {
          const all = await c.fetchAll('1:*', { uid: true, envelope: true });
          const uid = (s: string) => String(all.find((m) => m.envelope!.subject === s)!.uid);
          assert.ok(await c.messageFlagsAdd(uid('smtp-flag-me'), ['\\Flagged'], { uid: true }));
          assert.ok(await c.messageFlagsRemove(uid('local-flagged'), ['\\Flagged'], { uid: true }));
          assert.ok(await c.messageDelete(uid('local-delete-me'), { uid: true }));
        } finally {
          lock.release();
        }
      });

      await mbsync();

      const server = await serverState(user);
      const bySubject = (s: string) => server.INBOX.messages.find((m) => m.body.includes(`Subject: ${s}\r\n`));
      assert.deepEqual(bySubject('smtp-plain')?.flags, ['\\Seen'], 'seen in the Maildir, seen on the server');
      assert.equal(bySubject('smtp-trash-me'), undefined, 'trashed in the Maildir, expunged on the server');
      assert.equal(bySubject('local-delete-me'), undefined);
      assert.equal(maildirFlags(fileOf('smtp-flag-me')!), 'F', 'flagged on the server, flagged in the Maildir');
      assert.equal(maildirFlags(fileOf('local-flagged')!), '', 'unflagged on the server, unflagged in the Maildir');
      assert.equal(fileOf('local-delete-me'), undefined, 'expunged on the server, gone from the Maildir');
      assert.equal(fileOf('smtp-trash-me'), undefined, 'and the trashed one gone from the Maildir');
      assert.deepEqual(
        server.INBOX.messages.map((m) => /Subject: ([^\r]*)/.exec(m.body)![1]).sort(),
        ['local-flagged', 'smtp-8bit', 'smtp-flag-me', 'smtp-plain'],
      );
    });

    it('a second run without changes changes nothing on either side', async () => {
      const [maildirBefore, serverBefore] = [maildirState(), await serverState(user)];
      const r = await mbsync();
      assert.deepEqual(maildirState(), maildirBefore, 'the Maildir is as it was');
      assert.deepEqual(await serverState(user), serverBefore, 'the server is as it was (the same HIGHESTMODSEQ everywhere)');
      // Nothing written: no APPEND, STORE, EXPUNGE or CREATE went to the server.
      assert.doesNotMatch(r.out, />>> \d+ (UID )?(APPEND|STORE|EXPUNGE|CREATE)\b/);
    });

    it('over STARTTLS with LOGIN: a fresh Maildir pulled from the server has the same folders and messages', async () => {
      const fresh = join(work, 'Maildir-pull');
      mkdirSync(fresh);
      const config = join(work, 'mbsyncrc-starttls');
      writeFileSync(config, mbsyncConfig({ maildir: fresh, port: node.ports.imap, ssl: 'STARTTLS', auth: 'LOGIN', sync: 'Pull' }));
      const before = await serverState(user);
      const r = await mbsync(config);
      assert.match(r.out, /STARTTLS/);
      const names = (dir: string) =>
        Object.keys(maildirState(dir))
          .map((p) => p.replace(/\/(cur|new)\/.*$/, ''))
          .sort();
      assert.deepEqual(names(fresh), names(maildir), 'the same folders with as many messages');
      for (const p of Object.keys(maildirState(fresh))) {
        const body = readFileSync(join(fresh, p));
        const folder = p.replace(/\/(cur|new)\/.*$/, '');
        assert.ok(
          before[folder].messages.some((m) => withoutTuid(m.body) === withoutTuid(crlf(body))),
          `${p} is a message of ${folder}`,
        );
      }
      assert.deepEqual(await serverState(user), before, 'pulling changed nothing on the server');
    });

    it('folder names mbsync 1.4 sends unencoded (raw UTF-8, a bare &) are refused one by one, and the rest is synced', async () => {
      // mbsync 1.4 writes Maildir names to IMAP as they are. Both are refused with NO (as Dovecot
      // does): a BAD would make mbsync drop the whole account, and a folder made from raw UTF-8
      // would be listed back in modified UTF-7 (Entw&APw-rfe), which mbsync would take for a
      // second folder, with copies of every message.
      const dir = join(work, 'Maildir-names');
      for (const f of ['Entwürfe', 'a&b', 'b-after']) {
        for (const sub of ['cur', 'new', 'tmp']) mkdirSync(join(dir, f, sub), { recursive: true });
        writeFileSync(join(dir, f, 'cur', '1.local:2,S'), placed(`in ${f}`));
      }
      const config = join(work, 'mbsyncrc-names');
      writeFileSync(config, mbsyncConfig({ maildir: dir, port: node.ports.imaps, ssl: 'IMAPS', auth: 'PLAIN', user: accounts[2] }));
      for (let i = 0; i < 2; i++) {
        const r = await mbsync(config, 1);
        assert.match(r.out, /IMAP command 'CREATE "Entwürfe"' returned an error: NO \[CANNOT\]/);
        assert.match(r.out, /IMAP command 'CREATE "a&b"' returned an error: NO \[CANNOT\]/);
        // The folder after them (in mbsync's order) is synced the first time, and left alone the second.
        if (i === 0) assert.match(r.out, />>> \d+ APPEND "b-after"/);
        else assert.doesNotMatch(r.out, />>> \d+ APPEND/);
      }
      const server = await serverState(accounts[2]);
      assert.deepEqual(Object.keys(server).sort(), ['Archive', 'Drafts', 'INBOX', 'Junk', 'Sent', 'Trash', 'b-after']);
      assert.equal(withoutTuid(server['b-after'].messages[0].body), crlf(placed('in b-after')));
      assert.deepEqual(readdirSync(dir).sort(), ['Archive', 'Drafts', 'Entwürfe', 'INBOX', 'Junk', 'Sent', 'Trash', 'a&b', 'b-after'], 'no second folder made on the Maildir side');
    });
  });

  describe('Roundcube', () => {
    const user = accounts[1];
    let config: string;
    let php: (args: string[], input?: string) => Promise<Run>;

    before(() => {
      // Roundcube's config for these runs in a folder of its own (ROUNDCUBE_CONFIG_DIR, read by
      // its iniset.php), the system's defaults beside it: /etc/roundcube is not touched. The
      // database is named but never opened: these tools need none (the test checks the file
      // never appears).
      config = join(work, 'roundcube');
      mkdirSync(join(config, 'logs'), { recursive: true });
      mkdirSync(join(config, 'temp'));
      symlinkSync('/etc/roundcube/defaults.inc.php', join(config, 'defaults.inc.php'));
      writeFileSync(
        join(config, 'config.inc.php'),
        [
          '<?php',
          '$config = [];',
          `$config['db_dsnw'] = 'sqlite:///${config}/roundcube.db?mode=0600';`,
          `$config['log_dir'] = '${config}/logs/';`,
          `$config['temp_dir'] = '${config}/temp/';`,
          `$config['imap_host'] = 'ssl://localhost:${node.ports.imaps}';`,
          // The webmail's way to a server with its own certificate: imap_conn_options.
          `$config['imap_conn_options'] = ['ssl' => ['verify_peer' => true, 'verify_peer_name' => true, 'cafile' => '${cert}']];`,
          "$config['imap_debug'] = true;",
          "$config['des_key'] = 'mailgrid-imap-clients-test';",
          "$config['plugins'] = [];",
          '',
        ].join('\n'),
      );
      // msgimport.sh and msgexport.sh make their IMAP connection themselves, without
      // imap_conn_options: PHP's OpenSSL is told to trust the node's certificate instead.
      php = (args, input) => run('php', ['-d', `openssl.cafile=${cert}`, ...args], { env: { ROUNDCUBE_CONFIG_DIR: config }, input });
    });

    /** The IMAP trace Roundcube wrote (imap_debug), for a failure's message. */
    const trace = () => {
      try {
        return readFileSync(join(config, 'logs', 'imap.log'), 'utf8').slice(-20_000);
      } catch {
        return '(no IMAP log)';
      }
    };

    it('msgimport.sh imports an mbox into a folder and msgexport.sh exports the same messages', async () => {
      const messages = [
        'From: Carol <carol@example.test>\nTo: rc@example.test\nSubject: first imported\nMessage-ID: <imp1@example.test>\nDate: Mon, 07 Dec 2026 10:00:00 +0000\n\nFrom the start: a body line that begins with From.\n.and one with a dot\n\nA second paragraph.',
        'From: =?UTF-8?Q?D=C3=A4ve?= <dave@example.test>\nTo: rc@example.test\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\nMessage-ID: <imp2@example.test>\nIn-Reply-To: <imp1@example.test>\nReferences: <imp1@example.test>\nDate: Mon, 07 Dec 2026 10:05:00 +0000\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße aus Köln, 8-bit in the body.',
        'From: Eve <eve@example.test>\nTo: rc@example.test\nSubject: with an attachment\nMessage-ID: <imp3@example.test>\nDate: Mon, 07 Dec 2026 10:10:00 +0000\nMIME-Version: 1.0\nContent-Type: multipart/mixed;\n boundary="sep"\n\n--sep\nContent-Type: text/plain; charset=us-ascii\n\nSee attached.\n--sep\nContent-Type: application/octet-stream; name="data.bin"\nContent-Disposition: attachment; filename="data.bin"\nContent-Transfer-Encoding: base64\n\n' +
          Buffer.from(Array.from({ length: 600 }, (_, i) => i % 256)).toString('base64').replace(/.{76}/g, '$&\n') +
          '\n--sep--',
      ];
      const mbox = join(work, 'import.mbox');
      writeFileSync(mbox, messages.map((m, i) => `From - Mon Dec  7 10:0${i}:00 2026\n${m}\n\n`).join(''));
      // msgimport.sh does not make the folder (APPEND answers TRYCREATE); a user would, in the webmail.
      await imap(user, (c) => c.mailboxCreate('Imported/2026'));

      const imported = await php([`${RC_BIN}/msgimport.sh`, `--host=ssl://localhost:${node.ports.imaps}`, `--user=${user}`, `--pass=${PASSWORD}`, '--mbox=Imported/2026', `--file=${mbox}`]);
      assert.equal(imported.code, 0, imported.out);
      assert.match(imported.out, /3 messages successfully added to Imported\/2026/, imported.out);

      // What mailgrid holds: each message with CRLF line ends, nothing else changed.
      const stored = (await serverState(user))['Imported/2026'].messages;
      assert.deepEqual(
        stored.map((m) => m.body),
        messages.map((m) => Buffer.from(crlf(m)).toString('latin1').replace(/\r\n$/, '') + ''),
      );

      const exportBase = join(work, 'export.mbox');
      const exported = await php([`${RC_BIN}/msgexport.sh`, `--host=ssl://localhost:${node.ports.imaps}`, `--user=${user}`, '--mbox=Imported/2026', `--file=${exportBase}`], `${PASSWORD}\n`);
      assert.equal(exported.code, 0, exported.out);
      assert.match(exported.out, /3 messages/);
      // msgexport.sh names the file after the folder: export + "Imported2026" + .mbox.
      const text = readFileSync(join(work, 'exportImported2026.mbox'), 'utf8');
      const parts = text.split(/^From (\S+) .* UID (\d+)\n/m);
      assert.equal(parts.shift(), '');
      const back: { from: string; uid: number; body: string }[] = [];
      for (let i = 0; i < parts.length; i += 3) back.push({ from: parts[i], uid: Number(parts[i + 1]), body: parts[i + 2] });
      assert.deepEqual(
        back.map((b) => [b.from, b.uid]),
        [
          ['carol@example.test', stored[0].uid],
          ['dave@example.test', stored[1].uid],
          ['eve@example.test', stored[2].uid],
        ],
      );
      // Headers and bodies as imported: only the line ends (CRLF from IMAP) and the blank lines msgexport adds differ.
      assert.deepEqual(
        back.map((b) => b.body.replace(/\r\n/g, '\n').replace(/\n+$/, '')),
        messages,
      );
      assert.ok(!existsSync(join(config, 'roundcube.db')), 'no database was needed');
    });

    it("the webmail's storage layer: folders, a message list sorted and threaded (REFERENCES), a search (ESEARCH), a message opened, flags, a move, a draft", async () => {
      const conversation = [
        ['a', 'Plan', '', '10:00'],
        ['b', 'Re: Plan', '<a@x.test>', '11:00'],
        ['c', 'Re: Re: Plan', '<a@x.test> <b@x.test>', '12:00'],
        ['d', 'Other', '', '13:00'],
      ];
      for (const [id, subject, refs, time] of conversation) {
        const data = `From: ${id}@x.test\r\nTo: ${user}\r\nSubject: ${subject}\r\nMessage-ID: <${id}@x.test>\r\n${refs ? `In-Reply-To: ${refs.split(' ').pop()}\r\nReferences: ${refs}\r\n` : ''}Date: Mon, 07 Dec 2026 ${time}:00 +0000\r\n\r\n${id}\r\n`;
        assert.match(await sendMail(node.smtpPort, { to: [user], data }), /^250 /);
      }
      // The fifth answers the first, with a PDF attached.
      const pdf = Buffer.from('%PDF-1.4\n1 0 obj <</Type/Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n');
      const e =
        `From: Eve <e@x.test>\r\nTo: ${user}\r\nSubject: The plan, attached\r\nMessage-ID: <e@x.test>\r\nIn-Reply-To: <a@x.test>\r\nReferences: <a@x.test>\r\nDate: Mon, 07 Dec 2026 14:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="xx"\r\n\r\n` +
        `--xx\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSee the plan =E2=80=94 attached.\r\n` +
        `--xx\r\nContent-Type: application/pdf; name="plan.pdf"\r\nContent-Disposition: attachment; filename="plan.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${pdf.toString('base64')}\r\n--xx--\r\n`;
      assert.match(await sendMail(node.smtpPort, { to: [user], data: e }), /^250 /);
      // A quota, for the webmail's quota bar (GETQUOTAROOT).
      const q = await node.cli('account', 'set', user, 'quota', String(10 * 1024 * 1024));
      assert.equal(q.code, 0, q.stderr);
      await eventually('five in INBOX', async () => ((await imap(user, (c) => c.status('INBOX', { messages: true }))) || undefined)?.messages === 5 || undefined);

      const r = await run('php', [join(repoRoot, 'test/clients/roundcube-webmail.php'), 'localhost', String(node.ports.imaps), user, PASSWORD], { env: { ROUNDCUBE_CONFIG_DIR: config } });
      assert.equal(r.code, 0, `${r.out}\n${trace()}`);
      const out = JSON.parse(r.out);
      const why = `${r.out}\n${trace()}`;
      assert.deepEqual(out.capabilities, ['LIST-EXTENDED', 'LIST-STATUS', 'ESEARCH', 'SORT', 'THREAD=REFERENCES', 'LITERAL+', 'UIDPLUS', 'SPECIAL-USE'], why);
      // Folders: made and subscribed, the parent it implies, the special ones found by SPECIAL-USE.
      assert.equal(out.created, true, why);
      assert.ok(out.subscribed.includes('Lists/Threads'), why);
      assert.deepEqual(out.folders.filter((f: string) => f.startsWith('Lists')), ['Lists', 'Lists/Threads'], why);
      assert.deepEqual(out.special, { drafts: 'Drafts', sent: 'Sent', junk: 'Junk', trash: 'Trash' }, why);
      assert.deepEqual(out.specialUse, ['Archive', 'Drafts', 'Junk', 'Sent', 'Trash'], why);
      out.specialUse.forEach((f: string, i: number) => assert.ok(out.specialUseFlags[i].includes(`\\${f}`), why));
      // The list: by date, by subject (RFC 5256 base subjects), by arrival backwards, threaded.
      assert.deepEqual([out.count, out.unseen], [5, 5], why);
      assert.deepEqual(out.byDate.map((m: { subject: string }) => m.subject), ['Plan', 'Re: Plan', 'Re: Re: Plan', 'Other', 'The plan, attached'], why);
      const uid = Object.fromEntries(out.byDate.map((m: { uid: number; subject: string }, i: number) => ['abcde'[i], m.uid]));
      assert.deepEqual(out.bySubject.map(Number), [uid.d, uid.a, uid.b, uid.c, uid.e], why);
      assert.deepEqual(out.byArrivalReverse.map(Number), [uid.e, uid.d, uid.c, uid.b, uid.a], why);
      // THREAD=REFERENCES: a answered by b (answered by c) and by e; d alone.
      assert.deepEqual(out.threadsRaw, { [uid.a]: { [uid.b]: { [uid.c]: [] }, [uid.e]: [] }, [uid.d]: [] }, why);
      assert.deepEqual(
        out.threaded.map((m: { uid: number; depth: number; parent: number }) => [m.uid, m.depth, m.parent]),
        [
          [uid.a, 0, 0],
          [uid.b, 1, uid.a],
          [uid.c, 2, uid.b],
          [uid.e, 1, uid.a],
          [uid.d, 0, 0],
        ],
        why,
      );
      assert.deepEqual(out.search.map(Number), [uid.a, uid.b, uid.c, uid.e], why);
      assert.deepEqual(out.esearch, { count: 4, min: uid.a, max: uid.e }, why);
      // The message opened: its text decoded (quoted-printable UTF-8), its attachment whole.
      assert.deepEqual(out.opened, { subject: 'The plan, attached', from: 'Eve <e@x.test>', text: 'See the plan — attached.', attachments: { 2: { name: 'plan.pdf', type: 'application/pdf', size: pdf.length } } }, why);
      assert.deepEqual(out.flagsAfter, { SEEN: true, FLAGGED: true }, why);
      assert.deepEqual([out.moved, out.countAfterMove, out.inThreadsFolder], [true, 4, 1], why);
      // The draft: APPEND with LITERAL+, flags kept, the bytes back as they went.
      assert.equal(out.draftBack, out.draftSent, why);
      assert.deepEqual(out.draftFlags, { SEEN: true, DRAFT: true }, why);
      assert.equal(out.renamed, true, why);
      const server = await serverState(user);
      // The quota bar: the account's bytes in KiB (RFC 9208 STORAGE), of 10 MiB.
      const bytes = Object.values(server).reduce((n, f) => n + f.messages.reduce((k, m) => k + Buffer.byteLength(m.body, 'latin1'), 0), 0);
      assert.deepEqual([out.quota.used, out.quota.total], [Math.ceil(bytes / 1024), 10240], why);
      assert.equal(server['Lists/Threads'], undefined);
      assert.deepEqual(
        server['Lists/Kept'].messages.map((m) => /Message-ID: <(\w)@x.test>/.exec(m.body)![1]),
        ['e'],
        'the moved message went with the renamed folder',
      );
      assert.deepEqual(server.INBOX.messages.find((m) => m.uid === uid.a)!.flags, ['\\Flagged', '\\Seen']);
      assert.deepEqual(out.inboxStatus, {
        MESSAGES: '4',
        UNSEEN: '3',
        UIDNEXT: String(server.INBOX.uidNext),
        UIDVALIDITY: server.INBOX.uidValidity,
        SIZE: String(server.INBOX.messages.reduce((n, m) => n + Buffer.byteLength(m.body, 'latin1'), 0)),
      });
    });

    it("the webmail's message cache stays right across changes made elsewhere: QRESYNC's VANISHED (EARLIER) and CHANGEDSINCE, nothing fetched twice", async () => {
      const who = accounts[3];
      // The cache lives in Roundcube's database: SQLite in the test's folder, its schema from the package.
      const db = join(config, 'cache.db');
      const made = await run('php', ['-r', `$db = new PDO('sqlite:${db}'); $db->exec(file_get_contents('/usr/share/roundcube/SQL/sqlite.initial.sql'));`]);
      assert.equal(made.code, 0, made.out);
      // Roundcube reads any setting from ROUNDCUBE_<NAME> in the environment.
      const env = { ROUNDCUBE_CONFIG_DIR: config, ROUNDCUBE_DB_DSNW: `sqlite:///${db}?mode=0600`, ROUNDCUBE_IMAP_CACHE: 'db', ROUNDCUBE_MESSAGES_CACHE: 'true' };
      const list = async () => {
        rmSync(join(config, 'logs', 'imap.log'), { force: true });
        const r = await run('php', [join(repoRoot, 'test/clients/roundcube-cache.php'), 'localhost', String(node.ports.imaps), who, PASSWORD, 'INBOX'], { env });
        assert.equal(r.code, 0, `${r.out}\n${trace()}`);
        return { list: JSON.parse(r.out) as { uid: number; flags: string[] }[], trace: trace() };
      };
      /** What the server has, in the cache's terms (newest first, Roundcube's flag names). */
      const truth = async () =>
        (await serverState(who)).INBOX.messages
          .map((m) => ({ uid: m.uid, flags: m.flags.map((f) => f.replace(/^\\/, '').toUpperCase()).sort() }))
          .reverse();
      for (let i = 1; i <= 6; i++) assert.match(await sendMail(node.smtpPort, { to: [who], data: `Subject: cached ${i}\r\nMessage-ID: <cached${i}@x.test>\r\n\r\n${i}\r\n` }), /^250 /);
      await eventually('six in INBOX', async () => ((await imap(who, (c) => c.status('INBOX', { messages: true }))) || undefined)?.messages === 6 || undefined);

      const first = await list();
      assert.deepEqual(first.list.map((m) => ({ ...m, flags: m.flags.sort() })), await truth());

      // Elsewhere: one flagged, one expunged, one more delivered.
      const uids = first.list.map((m) => m.uid).sort((a, b) => a - b);
      await imap(who, async (c) => {
        const lock = await c.getMailboxLock('INBOX');
        try {
          await c.messageFlagsAdd(String(uids[1]), ['\\Flagged', '\\Seen'], { uid: true });
          await c.messageDelete(String(uids[2]), { uid: true });
        } finally {
          lock.release();
        }
      });
      assert.match(await sendMail(node.smtpPort, { to: [who], data: 'Subject: cached 7\r\nMessage-ID: <cached7@x.test>\r\n\r\n7\r\n' }), /^250 /);
      await eventually('the seventh in INBOX', async () => ((await imap(who, (c) => c.status('INBOX', { messages: true }))) || undefined)?.messages === 6 || undefined);

      const second = await list();
      assert.deepEqual(second.list.map((m) => ({ ...m, flags: m.flags.sort() })), await truth(), second.trace);
      // The cache learnt the expunge and the flags from QRESYNC, and fetched the headers of the new message only.
      assert.match(second.trace, /C: \S+ ENABLE QRESYNC/);
      assert.match(second.trace, new RegExp(`S: \\* VANISHED \\(EARLIER\\) ${uids[2]}\\b`), second.trace);
      assert.match(second.trace, new RegExp(`FETCH \\(UID ${uids[1]} FLAGS \\((\\\\Flagged \\\\Seen|\\\\Seen \\\\Flagged)\\) MODSEQ`), second.trace);
      const headerFetches = [...second.trace.matchAll(/C: \S+ UID FETCH (\S+) \(UID RFC822\.SIZE/g)].map((m) => m[1]);
      assert.deepEqual(headerFetches, [String(Math.max(...(await truth()).map((m) => m.uid)))], second.trace);
    });
  });
});
