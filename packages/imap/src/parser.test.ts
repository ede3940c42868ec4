import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import compileCommand from 'imapflow/lib/handler/imap-compiler.js';
import { searchCompiler } from 'imapflow/lib/search-compiler.js';
import { ImapParseError, parseDateTime, parseSequenceSet, readCommand, type ParseErrorCode, type ParseOptions } from './parser.js';
import { BufferInput, EndOfInput, testOptions } from './test-input.js';
import type { Command, FetchItem, SearchKey, SequenceSet } from './types.js';

const set = (...ranges: [number, number][]): SequenceSet => ({ ranges });
const one = (n: number) => set([n, n]);
const flag = (f: string, on = true): SearchKey => ({ kind: 'FLAG', flag: f, set: on });

async function parse(text: string | Buffer, over: Partial<ParseOptions> = {}) {
  const input = new BufferInput(text);
  const options = testOptions(over);
  const { tag, command } = await readCommand(input, options);
  return { tag, command, input, options };
}

async function parseError(text: string | Buffer, over: Partial<ParseOptions> & { refuse?: boolean } = {}) {
  const input = new BufferInput(text);
  const options = testOptions(over);
  try {
    const { command } = await readCommand(input, options);
    assert.fail(`parsed as ${JSON.stringify(command, (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))}`);
  } catch (err) {
    if (!ImapParseError.is(err)) throw err;
    return { err, input, options };
  }
}

/** Every command with its arguments: the line(s) as sent, and what it parses to. */
const commands: [string, Command][] = [
  ['a1 CAPABILITY', { name: 'CAPABILITY' }],
  ['a2 noop', { name: 'NOOP' }],
  ['a LOGOUT', { name: 'LOGOUT' }],
  ['a StartTLS', { name: 'STARTTLS' }],
  ['a NAMESPACE', { name: 'NAMESPACE' }],
  ['a CHECK', { name: 'CHECK' }],
  ['a CLOSE', { name: 'CLOSE' }],
  ['a UNSELECT', { name: 'UNSELECT' }],
  ['a IDLE', { name: 'IDLE' }],
  // LOGIN
  ['a LOGIN alice secret', { name: 'LOGIN', user: 'alice', password: 'secret' }],
  ['a LOGIN "al\\"ice" "p\\\\w d"', { name: 'LOGIN', user: 'al"ice', password: 'p\\w d' }],
  ['a LOGIN "jürgen" "pässwört"', { name: 'LOGIN', user: 'jürgen', password: 'pässwört' }],
  ['a LOGIN "" ""', { name: 'LOGIN', user: '', password: '' }],
  ['a LOGIN {5}\r\nalice {6}\r\nsecret', { name: 'LOGIN', user: 'alice', password: 'secret' }],
  ['a LOGIN {5+}\r\nalice {7+}\r\nse cret', { name: 'LOGIN', user: 'alice', password: 'se cret' }],
  ['a LOGIN alice] x]', { name: 'LOGIN', user: 'alice]', password: 'x]' }],
  // AUTHENTICATE
  ['a AUTHENTICATE plain', { name: 'AUTHENTICATE', mechanism: 'PLAIN' }],
  ['a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==', { name: 'AUTHENTICATE', mechanism: 'PLAIN', initial: 'AGFsaWNlAHNlY3JldA==' }],
  ['a AUTHENTICATE EXTERNAL =', { name: 'AUTHENTICATE', mechanism: 'EXTERNAL', initial: '' }],
  ['a AUTHENTICATE SCRAM-SHA-256', { name: 'AUTHENTICATE', mechanism: 'SCRAM-SHA-256' }],
  // ENABLE, ID
  ['a ENABLE CONDSTORE utf8=accept IMAP4rev2', { name: 'ENABLE', capabilities: ['CONDSTORE', 'UTF8=ACCEPT', 'IMAP4REV2'] }],
  ['a ID NIL', { name: 'ID', params: null }],
  ['a ID ("name" "Thunderbird" "version" NIL)', { name: 'ID', params: { name: 'Thunderbird', version: null } }],
  ['a ID ()', { name: 'ID', params: {} }],
  ['a ID ("__proto__" "x")', { name: 'ID', params: Object.fromEntries([['__proto__', 'x']]) }],
  // SELECT, EXAMINE
  ['a SELECT inbox', { name: 'SELECT', mailbox: 'INBOX', condstore: false }],
  ['a SELECT "InBox"', { name: 'SELECT', mailbox: 'INBOX', condstore: false }],
  ['a SELECT INBOX.Drafts', { name: 'SELECT', mailbox: 'INBOX.Drafts', condstore: false }],
  ['a EXAMINE "Sent Items" (CONDSTORE)', { name: 'EXAMINE', mailbox: 'Sent Items', condstore: true }],
  ['a SELECT "&ZeVnLIqe-"', { name: 'SELECT', mailbox: '日本語', condstore: false }],
  ['a SELECT Entw&APw-rfe', { name: 'SELECT', mailbox: 'Entwürfe', condstore: false }],
  ['a SELECT "a&-b"', { name: 'SELECT', mailbox: 'a&b', condstore: false }],
  [
    'a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))',
    { name: 'SELECT', mailbox: 'INBOX', condstore: false, qresync: { uidValidity: 67890007, modseq: 20050715194045000n, knownUids: set([41, 41], [43, 211], [214, 541]) } },
  ],
  [
    'a EXAMINE INBOX (CONDSTORE QRESYNC (67890007 90060115194045000 41:211,214:541 (1:2,5 41,43:44)))',
    {
      name: 'EXAMINE',
      mailbox: 'INBOX',
      condstore: true,
      qresync: { uidValidity: 67890007, modseq: 90060115194045000n, knownUids: set([41, 211], [214, 541]), seqMatch: { seqs: set([1, 2], [5, 5]), uids: set([41, 41], [43, 44]) } },
    },
  ],
  ['a SELECT INBOX (QRESYNC (1 2 (1 5)))', { name: 'SELECT', mailbox: 'INBOX', condstore: false, qresync: { uidValidity: 1, modseq: 2n, seqMatch: { seqs: one(1), uids: one(5) } } }],
  ['a SELECT INBOX (QRESYNC (1 9223372036854775807))', { name: 'SELECT', mailbox: 'INBOX', condstore: false, qresync: { uidValidity: 1, modseq: 9223372036854775807n } }],
  // CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE
  ['a CREATE Projects/2026', { name: 'CREATE', mailbox: 'Projects/2026', specialUse: [] }],
  ['a CREATE Drafts (USE (\\Drafts))', { name: 'CREATE', mailbox: 'Drafts', specialUse: ['\\Drafts'] }],
  ['a CREATE Old (use (\\Archive \\junk))', { name: 'CREATE', mailbox: 'Old', specialUse: ['\\Archive', '\\junk'] }],
  ['a DELETE "Old stuff"', { name: 'DELETE', mailbox: 'Old stuff' }],
  ['a RENAME Old New', { name: 'RENAME', from: 'Old', to: 'New' }],
  ['a RENAME {3}\r\nOld {10}\r\nNew &- Old', { name: 'RENAME', from: 'Old', to: 'New & Old' }],
  ['a SUBSCRIBE Lists', { name: 'SUBSCRIBE', mailbox: 'Lists' }],
  ['a UNSUBSCRIBE inbox', { name: 'UNSUBSCRIBE', mailbox: 'INBOX' }],
  // LIST, LSUB
  ['a LIST "" *', { name: 'LIST', select: [], reference: '', patterns: ['*'], return: { options: [] } }],
  ['a LIST "" %', { name: 'LIST', select: [], reference: '', patterns: ['%'], return: { options: [] } }],
  ['a LIST ~/Mail/ %/&ZeVnLIqe-*', { name: 'LIST', select: [], reference: '~/Mail/', patterns: ['%/日本語*'], return: { options: [] } }],
  ['a LIST "" inbox', { name: 'LIST', select: [], reference: '', patterns: ['inbox'], return: { options: [] } }],
  [
    'a LIST (SUBSCRIBED RECURSIVEMATCH) "" (INBOX Drafts* %) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))',
    { name: 'LIST', select: ['SUBSCRIBED', 'RECURSIVEMATCH'], reference: '', patterns: ['INBOX', 'Drafts*', '%'], return: { options: ['CHILDREN'], status: { items: ['MESSAGES', 'UNSEEN'] } } },
  ],
  ['a LIST () "" "*" RETURN ()', { name: 'LIST', select: [], reference: '', patterns: ['*'], return: { options: [] } }],
  [
    'a list (special-use remote) "" * return (special-use subscribed)',
    { name: 'LIST', select: ['SPECIAL-USE', 'REMOTE'], reference: '', patterns: ['*'], return: { options: ['SPECIAL-USE', 'SUBSCRIBED'] } },
  ],
  ['a LIST "" {1}\r\n*', { name: 'LIST', select: [], reference: '', patterns: ['*'], return: { options: [] } }],
  ['a LIST "" ""', { name: 'LIST', select: [], reference: '', patterns: [''], return: { options: [] } }],
  ['a LSUB "" "news.*"', { name: 'LSUB', reference: '', pattern: 'news.*' }],
  // STATUS
  [
    'a STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ RECENT MAILBOXID APPENDLIMIT)',
    { name: 'STATUS', mailbox: 'INBOX', status: { items: ['MESSAGES', 'UIDNEXT', 'UIDVALIDITY', 'UNSEEN', 'DELETED', 'SIZE', 'HIGHESTMODSEQ', 'RECENT', 'MAILBOXID', 'APPENDLIMIT'] } },
  ],
  ['a STATUS blurdybloop (uidnext messages uidnext)', { name: 'STATUS', mailbox: 'blurdybloop', status: { items: ['UIDNEXT', 'MESSAGES'] } }],
  // APPEND
  ['a APPEND INBOX {5}\r\nhello', { name: 'APPEND', mailbox: 'INBOX', messages: [{ flags: [], message: Buffer.from('hello'), binary: false }] }],
  [
    'a APPEND saved-messages (\\Seen $Label1) " 7-Feb-1994 21:52:25 -0800" {7+}\r\nhi\r\nyou',
    { name: 'APPEND', mailbox: 'saved-messages', messages: [{ flags: ['\\Seen', '$Label1'], date: ' 7-Feb-1994 21:52:25 -0800', message: Buffer.from('hi\r\nyou'), binary: false }] },
  ],
  [
    'a APPEND Drafts (\\draft) {3}\r\nabc () "17-Jul-1996 02:44:25 +0000" {3}\r\ndef ~{3}\r\n\0\x01\x02',
    {
      name: 'APPEND',
      mailbox: 'Drafts',
      messages: [
        { flags: ['\\Draft'], message: Buffer.from('abc'), binary: false },
        { flags: [], date: '17-Jul-1996 02:44:25 +0000', message: Buffer.from('def'), binary: false },
        { flags: [], message: Buffer.from([0, 1, 2]), binary: true },
      ],
    },
  ],
  ['a APPEND INBOX {0}\r\n', { name: 'APPEND', mailbox: 'INBOX', messages: [{ flags: [], message: Buffer.alloc(0), binary: false }] }],
  // EXPUNGE
  ['a EXPUNGE', { name: 'EXPUNGE', uid: false }],
  ['a UID EXPUNGE 3000:3002,3005', { name: 'EXPUNGE', uid: true, set: set([3000, 3002], [3005, 3005]) }],
  // SEARCH, SORT, THREAD
  ['a SEARCH ALL', { name: 'SEARCH', uid: false, return: undefined, key: { kind: 'ALL' } }],
  ['a UID SEARCH RETURN (MIN COUNT min) UNSEEN', { name: 'SEARCH', uid: true, return: ['MIN', 'COUNT'], key: flag('\\Seen', false) }],
  ['a SEARCH RETURN () FLAGGED', { name: 'SEARCH', uid: false, return: ['ALL'], key: flag('\\Flagged') }],
  ['a SEARCH RETURN (SAVE) SINCE 1-Feb-2026', { name: 'SEARCH', uid: false, return: ['SAVE'], key: { kind: 'DATE', field: 'internal', op: 'since', date: '1-Feb-2026' } }],
  [
    'a SEARCH CHARSET UTF-8 SUBJECT {6}\r\nnäive',
    { name: 'SEARCH', uid: false, return: undefined, charset: 'UTF-8', key: { kind: 'HEADER', name: 'SUBJECT', value: 'näive' } },
  ],
  [
    'a SEARCH RETURN (ALL) CHARSET us-ascii DELETED FROM "SMITH" SINCE 1-Feb-1994',
    {
      name: 'SEARCH',
      uid: false,
      return: ['ALL'],
      charset: 'us-ascii',
      key: { kind: 'AND', keys: [flag('\\Deleted'), { kind: 'HEADER', name: 'FROM', value: 'SMITH' }, { kind: 'DATE', field: 'internal', op: 'since', date: '1-Feb-1994' }] },
    },
  ],
  [
    'a SORT (REVERSE DATE subject) UTF-8 ALL',
    {
      name: 'SORT',
      uid: false,
      return: undefined,
      sort: [
        { key: 'DATE', reverse: true },
        { key: 'SUBJECT', reverse: false },
      ],
      charset: 'UTF-8',
      key: { kind: 'ALL' },
    },
  ],
  [
    'a UID SORT RETURN (COUNT) (DISPLAYFROM reverse DISPLAYTO ARRIVAL CC FROM SIZE TO) US-ASCII SEEN',
    {
      name: 'SORT',
      uid: true,
      return: ['COUNT'],
      sort: [
        { key: 'DISPLAYFROM', reverse: false },
        { key: 'DISPLAYTO', reverse: true },
        { key: 'ARRIVAL', reverse: false },
        { key: 'CC', reverse: false },
        { key: 'FROM', reverse: false },
        { key: 'SIZE', reverse: false },
        { key: 'TO', reverse: false },
      ],
      charset: 'US-ASCII',
      key: flag('\\Seen'),
    },
  ],
  ['a THREAD REFERENCES UTF-8 ALL', { name: 'THREAD', uid: false, algorithm: 'REFERENCES', charset: 'UTF-8', key: { kind: 'ALL' } }],
  [
    'a UID THREAD orderedsubject UTF-8 SINCE 5-MAR-2000 TEXT x',
    {
      name: 'THREAD',
      uid: true,
      algorithm: 'ORDEREDSUBJECT',
      charset: 'UTF-8',
      key: {
        kind: 'AND',
        keys: [
          { kind: 'DATE', field: 'internal', op: 'since', date: '5-Mar-2000' },
          { kind: 'TEXT', value: 'x' },
        ],
      },
    },
  ],
  // FETCH
  [
    'a FETCH 1:* ALL',
    { name: 'FETCH', uid: false, set: set([1, Infinity]), items: [{ kind: 'FLAGS' }, { kind: 'INTERNALDATE' }, { kind: 'RFC822.SIZE' }, { kind: 'ENVELOPE' }], vanished: false },
  ],
  ['a FETCH 2 fast', { name: 'FETCH', uid: false, set: one(2), items: [{ kind: 'FLAGS' }, { kind: 'INTERNALDATE' }, { kind: 'RFC822.SIZE' }], vanished: false }],
  [
    'a FETCH * FULL',
    { name: 'FETCH', uid: false, set: set([Infinity, Infinity]), items: [{ kind: 'FLAGS' }, { kind: 'INTERNALDATE' }, { kind: 'RFC822.SIZE' }, { kind: 'ENVELOPE' }, { kind: 'BODY' }], vanished: false },
  ],
  ['a FETCH $ FLAGS', { name: 'FETCH', uid: false, set: { saved: true }, items: [{ kind: 'FLAGS' }], vanished: false }],
  [
    'a FETCH 2:4 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY MODSEQ EMAILID THREADID RFC822 RFC822.HEADER rfc822.text)',
    {
      name: 'FETCH',
      uid: false,
      set: set([2, 4]),
      items: (['UID', 'FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODYSTRUCTURE', 'BODY', 'MODSEQ', 'EMAILID', 'THREADID', 'RFC822', 'RFC822.HEADER', 'RFC822.TEXT'] as const).map(
        (kind) => ({ kind }) as FetchItem,
      ),
      vanished: false,
    },
  ],
  ['a FETCH 1 BODY[]', { name: 'FETCH', uid: false, set: one(1), items: [{ kind: 'BODY[]', section: { part: [] }, peek: false }], vanished: false }],
  [
    'a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From subject {7}\r\nX-Thing)]<0.2048>)',
    {
      name: 'FETCH',
      uid: false,
      set: one(1),
      items: [{ kind: 'BODY[]', section: { part: [], specifier: 'HEADER.FIELDS', fields: ['FROM', 'SUBJECT', 'X-THING'] }, partial: { start: 0, length: 2048 }, peek: true }],
      vanished: false,
    },
  ],
  [
    'a FETCH 1 (BODY[1.2.MIME] body[3.text] BODY[4.header.fields.not (Received)] BODY[2] BODY[header])',
    {
      name: 'FETCH',
      uid: false,
      set: one(1),
      items: [
        { kind: 'BODY[]', section: { part: [1, 2], specifier: 'MIME' }, peek: false },
        { kind: 'BODY[]', section: { part: [3], specifier: 'TEXT' }, peek: false },
        { kind: 'BODY[]', section: { part: [4], specifier: 'HEADER.FIELDS.NOT', fields: ['RECEIVED'] }, peek: false },
        { kind: 'BODY[]', section: { part: [2] }, peek: false },
        { kind: 'BODY[]', section: { part: [], specifier: 'HEADER' }, peek: false },
      ],
      vanished: false,
    },
  ],
  [
    'a FETCH 1 (BINARY.PEEK[1.2]<0.100> BINARY[] BINARY.SIZE[1])',
    {
      name: 'FETCH',
      uid: false,
      set: one(1),
      items: [
        { kind: 'BINARY[]', section: { part: [1, 2] }, partial: { start: 0, length: 100 }, peek: true },
        { kind: 'BINARY[]', section: { part: [] }, peek: false },
        { kind: 'BINARY.SIZE', section: { part: [1] } },
      ],
      vanished: false,
    },
  ],
  [
    'a UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)',
    { name: 'FETCH', uid: true, set: set([300, 500]), items: [{ kind: 'FLAGS' }], changedSince: 12345n, vanished: true },
  ],
  ['a FETCH 1:* (FLAGS) (CHANGEDSINCE 0)', { name: 'FETCH', uid: false, set: set([1, Infinity]), items: [{ kind: 'FLAGS' }], changedSince: 0n, vanished: false }],
  ['a FETCH 5:3,*:7 UID', { name: 'FETCH', uid: false, set: set([3, 5], [7, Infinity]), items: [{ kind: 'UID' }], vanished: false }],
  // STORE
  ['a STORE 2:4 +FLAGS (\\Deleted)', { name: 'STORE', uid: false, set: set([2, 4]), op: 'add', silent: false, flags: ['\\Deleted'] }],
  ['a UID STORE 1:* -flags.silent \\seen \\FLAGGED $Junk', { name: 'STORE', uid: true, set: set([1, Infinity]), op: 'remove', silent: true, flags: ['\\Seen', '\\Flagged', '$Junk'] }],
  [
    'a STORE 1 (UNCHANGEDSINCE 320162338) FLAGS.SILENT ()',
    { name: 'STORE', uid: false, set: one(1), op: 'replace', silent: true, flags: [], unchangedSince: 320162338n },
  ],
  // COPY, MOVE
  ['a COPY 2:4 MEETING', { name: 'COPY', uid: false, set: set([2, 4]), mailbox: 'MEETING' }],
  ['a UID MOVE 42 "Archive/2026"', { name: 'MOVE', uid: true, set: one(42), mailbox: 'Archive/2026' }],
  ['a UID COPY $ inbox', { name: 'COPY', uid: true, set: { saved: true }, mailbox: 'INBOX' }],
  // QUOTA, COMPRESS
  ['a GETQUOTA ""', { name: 'GETQUOTA', root: '' }],
  ['a GETQUOTAROOT INBOX', { name: 'GETQUOTAROOT', mailbox: 'INBOX' }],
  ['a SETQUOTA "" (STORAGE 512 message 1000)', { name: 'SETQUOTA', root: '', limits: [{ resource: 'STORAGE', limit: 512 }, { resource: 'MESSAGE', limit: 1000 }] }],
  ['a SETQUOTA "" ()', { name: 'SETQUOTA', root: '', limits: [] }],
  ['a COMPRESS deflate', { name: 'COMPRESS', mechanism: 'DEFLATE' }],
];

describe('readCommand: every command', () => {
  for (const [text, command] of commands) {
    it(text.replace(/\r\n/g, '⏎'), async () => {
      const parsed = await parse(text + '\r\n');
      assert.deepEqual(parsed.command, command);
      assert.ok(parsed.input.done, `left unread: ${JSON.stringify(parsed.input.rest())}`);
    });
  }

  it('keeps the tag as sent', async () => {
    assert.equal((await parse('A0001.x] NOOP\r\n')).tag, 'A0001.x]');
  });

  it('asks a continuation for each synchronizing literal, none for {n+}, with what it is for', async () => {
    const sync = await parse('a LOGIN {5}\r\nalice {6}\r\nsecret\r\n');
    assert.deepEqual(
      sync.options.continuations.map((c) => c.size),
      [5, 6],
    );
    assert.deepEqual(sync.options.continuations[0].literal, { command: 'LOGIN', message: false });
    const nonSync = await parse('a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n');
    assert.deepEqual(nonSync.options.continuations, []);
    const append = await parse('a APPEND Drafts {3}\r\nabc\r\n');
    assert.deepEqual(append.options.continuations[0].literal, { command: 'APPEND', message: true, mailbox: 'Drafts' });
  });

  it('reads mailbox names as UTF-8 with UTF8=ACCEPT: & is itself', async () => {
    assert.deepEqual((await parse('a SELECT "a&b"\r\n', { utf8: true })).command, { name: 'SELECT', mailbox: 'a&b', condstore: false });
    assert.deepEqual((await parse('a SELECT "&ZeVnLIqe-"\r\n', { utf8: true })).command, { name: 'SELECT', mailbox: '&ZeVnLIqe-', condstore: false });
    assert.deepEqual((await parse('a SELECT "Entwürfe"\r\n', { utf8: true })).command, { name: 'SELECT', mailbox: 'Entwürfe', condstore: false });
  });

  it('decodes SEARCH strings in their CHARSET', async () => {
    const latin1 = Buffer.concat([Buffer.from('a SEARCH CHARSET ISO-8859-1 BODY "'), Buffer.from([0x66, 0xfc, 0x72]), Buffer.from('"\r\n')]);
    assert.deepEqual((await parse(latin1)).command, { name: 'SEARCH', uid: false, return: undefined, charset: 'ISO-8859-1', key: { kind: 'BODY', value: 'für' } });
  });

  it('reads a line that ends in LF alone, as the session hands it over', async () => {
    assert.deepEqual((await parse('a NOOP\n')).command, { name: 'NOOP' });
  });
});

/** Search keys of RFC 9051 §6.4.4, with CONDSTORE, WITHIN, OBJECTID and SEARCHRES. */
const searchKeys: [string, SearchKey][] = [
  ['ALL', { kind: 'ALL' }],
  ['ANSWERED', flag('\\Answered')],
  ['UNANSWERED', flag('\\Answered', false)],
  ['DELETED', flag('\\Deleted')],
  ['UNDELETED', flag('\\Deleted', false)],
  ['DRAFT', flag('\\Draft')],
  ['UNDRAFT', flag('\\Draft', false)],
  ['FLAGGED', flag('\\Flagged')],
  ['UNFLAGGED', flag('\\Flagged', false)],
  ['SEEN', flag('\\Seen')],
  ['unseen', flag('\\Seen', false)],
  ['RECENT', flag('\\Recent')],
  ['NEW', { kind: 'AND', keys: [flag('\\Seen', false), flag('\\Recent')] }],
  ['OLD', { kind: 'NOT', key: flag('\\Recent') }],
  ['KEYWORD $Forwarded', flag('$Forwarded')],
  ['UNKEYWORD Junk', flag('Junk', false)],
  ['BCC "x@example.test"', { kind: 'HEADER', name: 'BCC', value: 'x@example.test' }],
  ['CC cc', { kind: 'HEADER', name: 'CC', value: 'cc' }],
  ['FROM alice', { kind: 'HEADER', name: 'FROM', value: 'alice' }],
  ['SUBJECT "hello world"', { kind: 'HEADER', name: 'SUBJECT', value: 'hello world' }],
  ['TO bob', { kind: 'HEADER', name: 'TO', value: 'bob' }],
  ['HEADER Message-ID <x@y>', { kind: 'HEADER', name: 'MESSAGE-ID', value: '<x@y>' }],
  ['HEADER "X-Spam" ""', { kind: 'HEADER', name: 'X-SPAM', value: '' }],
  ['BODY "one two"', { kind: 'BODY', value: 'one two' }],
  ['TEXT {3}\r\nabc', { kind: 'TEXT', value: 'abc' }],
  ['BEFORE 1-Feb-2026', { kind: 'DATE', field: 'internal', op: 'before', date: '1-Feb-2026' }],
  ['ON "29-feb-2024"', { kind: 'DATE', field: 'internal', op: 'on', date: '29-Feb-2024' }],
  ['SINCE 01-Jan-2000', { kind: 'DATE', field: 'internal', op: 'since', date: '01-Jan-2000' }],
  ['SENTBEFORE 31-Dec-1999', { kind: 'DATE', field: 'sent', op: 'before', date: '31-Dec-1999' }],
  ['SENTON 1-Feb-2026', { kind: 'DATE', field: 'sent', op: 'on', date: '1-Feb-2026' }],
  ['SENTSINCE 1-Feb-2026', { kind: 'DATE', field: 'sent', op: 'since', date: '1-Feb-2026' }],
  ['LARGER 1000', { kind: 'SIZE', op: 'larger', size: 1000 }],
  ['SMALLER 9007199254740991', { kind: 'SIZE', op: 'smaller', size: 9007199254740991 }],
  ['NOT SEEN', { kind: 'NOT', key: flag('\\Seen') }],
  ['OR SEEN FLAGGED', { kind: 'OR', a: flag('\\Seen'), b: flag('\\Flagged') }],
  ['OR (SEEN FROM a) NOT (FLAGGED)', { kind: 'OR', a: { kind: 'AND', keys: [flag('\\Seen'), { kind: 'HEADER', name: 'FROM', value: 'a' }] }, b: { kind: 'NOT', key: flag('\\Flagged') } }],
  ['1:3,5', { kind: 'SEQ', set: set([1, 3], [5, 5]) }],
  ['*', { kind: 'SEQ', set: set([Infinity, Infinity]) }],
  ['$', { kind: 'SEQ', set: { saved: true } }],
  ['UID 1:*', { kind: 'UID', set: set([1, Infinity]) }],
  ['UID $', { kind: 'UID', set: { saved: true } }],
  ['MODSEQ 620162338', { kind: 'MODSEQ', modseq: 620162338n }],
  ['MODSEQ "/flags/\\\\draft" all 620162338', { kind: 'MODSEQ', modseq: 620162338n, entry: { flag: '\\Draft', type: 'all' } }],
  ['MODSEQ "/flags/$Label" priv 0', { kind: 'MODSEQ', modseq: 0n, entry: { flag: '$Label', type: 'priv' } }],
  ['OLDER 3600', { kind: 'WITHIN', op: 'older', seconds: 3600 }],
  ['YOUNGER 60', { kind: 'WITHIN', op: 'younger', seconds: 60 }],
  ['EMAILID M6d99ac3275bb4e', { kind: 'EMAILID', id: 'M6d99ac3275bb4e' }],
  ['THREADID T64b478a75b7ea9_-', { kind: 'THREADID', id: 'T64b478a75b7ea9_-' }],
  ['((((SEEN))))', flag('\\Seen')],
  ['SEEN FLAGGED', { kind: 'AND', keys: [flag('\\Seen'), flag('\\Flagged')] }],
];

describe('readCommand: SEARCH keys', () => {
  for (const [text, key] of searchKeys) {
    it(text.replace(/\r\n/g, '⏎'), async () => {
      const { command } = await parse(`a SEARCH ${text}\r\n`);
      assert.deepEqual(command, { name: 'SEARCH', uid: false, return: undefined, key });
    });
  }

  it('takes OR chains 100 deep', async () => {
    const { command } = await parse(`a SEARCH ${'OR SEEN '.repeat(100)}ALL\r\n`);
    assert.equal(command.name, 'SEARCH');
  });
});

describe('readCommand: commands as an independent client (imapflow) writes them', () => {
  type Connection = Parameters<typeof searchCompiler>[0];
  const connection = { capabilities: new Map([['CONDSTORE', true], ['OBJECTID', true]]), enabled: new Set<string>() } as unknown as Connection;
  const wire = (command: Parameters<typeof compileCommand>[0]) => Buffer.concat([compileCommand(command, { literalPlus: true }), Buffer.from('\r\n')]);

  it('SEARCH from its search compiler', async () => {
    const attributes = searchCompiler(connection, {
      or: [{ from: 'alice' }, { subject: 'hi "there"' }],
      seen: false,
      uid: '1:*',
      larger: 100,
      body: 'smörgåsbord',
      modseq: 5,
      emailId: 'M1a2',
      header: { 'X-Foo': 'bar' },
      keyword: '$Fwd',
      not: { deleted: true },
    });
    const { command } = await parse(wire({ tag: 'A1', command: 'UID SEARCH', attributes }), { literalPlus: true });
    assert.deepEqual(command, {
      name: 'SEARCH',
      uid: true,
      return: undefined,
      charset: 'UTF-8',
      key: {
        kind: 'AND',
        keys: [
          { kind: 'OR', a: { kind: 'HEADER', name: 'FROM', value: 'alice' }, b: { kind: 'HEADER', name: 'SUBJECT', value: 'hi "there"' } },
          flag('\\Seen', false),
          { kind: 'UID', set: set([1, Infinity]) },
          { kind: 'SIZE', op: 'larger', size: 100 },
          { kind: 'BODY', value: 'smörgåsbord' },
          { kind: 'MODSEQ', modseq: 5n },
          { kind: 'EMAILID', id: 'M1a2' },
          { kind: 'HEADER', name: 'X-FOO', value: 'bar' },
          flag('$Fwd'),
          { kind: 'NOT', key: flag('\\Deleted') },
        ],
      },
    });
  });

  it('APPEND with a literal, FETCH with sections and partials, STORE', async () => {
    const append = await parse(
      wire({ tag: 'A2', command: 'APPEND', attributes: [{ type: 'ATOM', value: 'Entw&APw-rfe' }, [{ type: 'ATOM', value: '\\Seen' }], { type: 'LITERAL', value: Buffer.from('Subject: x\r\n\r\nhi') }] }),
      { literalPlus: true },
    );
    assert.deepEqual(append.command, { name: 'APPEND', mailbox: 'Entwürfe', messages: [{ flags: ['\\Seen'], message: Buffer.from('Subject: x\r\n\r\nhi'), binary: false }] });
    const fetch = await parse(
      wire({
        tag: 'A3',
        command: 'UID FETCH',
        attributes: [
          { type: 'SEQUENCE', value: '1:*' },
          [
            { type: 'ATOM', value: 'UID' },
            { type: 'ATOM', value: 'BODY.PEEK', section: [{ type: 'ATOM', value: 'HEADER.FIELDS' }, [{ type: 'ATOM', value: 'Subject' }, { type: 'ATOM', value: 'Date' }]] },
            { type: 'ATOM', value: 'BINARY.PEEK', section: [{ type: 'ATOM', value: '1' }], partial: [0, 1024] },
          ],
        ],
      }),
    );
    assert.deepEqual(fetch.command, {
      name: 'FETCH',
      uid: true,
      set: set([1, Infinity]),
      items: [
        { kind: 'UID' },
        { kind: 'BODY[]', section: { part: [], specifier: 'HEADER.FIELDS', fields: ['SUBJECT', 'DATE'] }, peek: true },
        { kind: 'BINARY[]', section: { part: [1] }, partial: { start: 0, length: 1024 }, peek: true },
      ],
      vanished: false,
    });
    const store = await parse(
      wire({ tag: 'A4', command: 'UID STORE', attributes: [{ type: 'SEQUENCE', value: '7' }, { type: 'ATOM', value: '+FLAGS.SILENT' }, [{ type: 'ATOM', value: '\\Flagged' }]] }),
    );
    assert.deepEqual(store.command, { name: 'STORE', uid: true, set: one(7), op: 'add', silent: true, flags: ['\\Flagged'] });
  });
});

/** Malformed commands: the error's code, status and tag, and that the input is at the next command. */
const malformed: [string, { code?: ParseErrorCode; status?: 'BAD' | 'NO'; tag?: string | null; message?: RegExp }][] = [
  ['', { tag: null, message: /Empty/ }],
  ['   ', { tag: null, message: /tag/ }],
  ['A1', { tag: 'A1', message: /Missing command/ }],
  ['A1 ', { tag: 'A1' }],
  ['A*1 NOOP', { tag: null, message: /tag/ }],
  ['+ NOOP', { tag: null }],
  ['A1  NOOP', { tag: 'A1' }],
  ['A1 FOO', { message: /Unknown command FOO/ }],
  ['A1 UID NOOP', { message: /Unknown command UID NOOP/ }],
  ['A1 UID', {}],
  ['A1 NOOP extra', { message: /Too many arguments/ }],
  ['A1 NOOP\r', { message: /Unexpected/ }],
  ['A1 LOGIN alice', {}],
  ['A1 LOGIN alice "unterminated', { message: /Unterminated/ }],
  ['A1 LOGIN "bad\\escape" x', { message: /escape/ }],
  ['A1 LOGIN al(ice x', {}],
  ['A1 LOGIN {5} x', { message: /literal/ }],
  ['A1 LOGIN {x}', { message: /literal/ }],
  ['A1 LOGIN ~{5}', {}],
  ['A1 LOGIN jürgen x', {}],
  ['A1 AUTHENTICATE PLAIN !!!', { message: /base64/ }],
  ['A1 ENABLE', {}],
  ['A1 ID ("a")', {}],
  ['A1 ID ("a" "b" "c" "d"', {}],
  ['A1 ID ("' + 'x'.repeat(31) + '" "b")', { message: /too long/ }],
  ['A1 SELECT', {}],
  ['A1 SELECT INBOX (FOO)', { message: /Unknown SELECT parameter/ }],
  ['A1 SELECT INBOX ()', {}],
  ['A1 SELECT "a&b"', { code: 'CANNOT', status: 'NO', message: /modified UTF-7/ }],
  ['A1 SELECT "&ZeVnLIqe"', { code: 'CANNOT', status: 'NO', message: /modified UTF-7/ }],
  ['A1 SELECT "&AGE-"', { code: 'CANNOT', status: 'NO', message: /modified UTF-7/ }],
  // Raw UTF-8 before ENABLE UTF8=ACCEPT (the session would list it back in modified UTF-7).
  ['A1 CREATE "Entwürfe"', { code: 'CANNOT', status: 'NO', message: /modified UTF-7/ }],
  ['A1 LIST "" "Entwürfe*"', { code: 'CANNOT', status: 'NO', message: /modified UTF-7/ }],
  [`A1 CREATE "${'n'.repeat(1025)}"`, { code: 'CANNOT', status: 'NO', message: /longer than 1024 bytes/ }],
  ['A1 SELECT INBOX (QRESYNC (1 2 1:*))', { message: /\*/ }],
  ['A1 SELECT INBOX (QRESYNC (0 2))', {}],
  ['A1 SELECT INBOX (QRESYNC (1 9223372036854775808))', { message: /range/ }],
  ['A1 CREATE x (USE (Drafts))', {}],
  ['A1 CREATE x (FOO)', {}],
  ['A1 RENAME a', {}],
  ['A1 LIST (RECURSIVEMATCH) "" *', { code: 'CLIENTBUG' }],
  ['A1 LIST (BOGUS) "" *', {}],
  ['A1 LIST "" * RETURN (FOO)', {}],
  ['A1 LIST "" * FOO ()', {}],
  ['A1 LIST "" ()', {}],
  ['A1 STATUS INBOX ()', {}],
  ['A1 STATUS INBOX (FOO)', { message: /Unknown status item/ }],
  ['A1 STATUS INBOX MESSAGES', {}],
  ['A1 APPEND INBOX', {}],
  ['A1 APPEND INBOX (\\Seen) "7-Feb-1994 21:52:25 -0800" {3}', { message: /date-time/ }],
  ['A1 APPEND INBOX "30-Feb-1994 21:52:25 -0800" {3}', { message: /date-time/ }],
  ['A1 APPEND INBOX (\\Seen', {}],
  ['A1 APPEND INBOX hello', {}],
  ['A1 EXPUNGE 1', {}],
  ['A1 UID EXPUNGE', {}],
  ['A1 SEARCH', {}],
  ['A1 SEARCH FOO', { message: /Unknown search key/ }],
  ['A1 SEARCH ALL ', {}],
  ['A1 SEARCH OR ALL', {}],
  ['A1 SEARCH (ALL', {}],
  ['A1 SEARCH ()', {}],
  ['A1 SEARCH BEFORE 30-Feb-2026', { message: /date/ }],
  ['A1 SEARCH BEFORE 1-Foo-2026', { message: /date/ }],
  ['A1 SEARCH BEFORE 1-Feb-26', { message: /date/ }],
  ['A1 SEARCH CHARSET X-NOPE ALL', { code: 'BADCHARSET', status: 'NO' }],
  ['A1 SEARCH RETURN (PARTIAL 1:10) ALL', {}],
  ['A1 SEARCH LARGER x', {}],
  ['A1 SEARCH LARGER 9007199254740992', { message: /range/ }],
  ['A1 SEARCH OLDER 0', {}],
  ['A1 SEARCH EMAILID a.b', {}],
  ['A1 SEARCH MODSEQ "/foo" all 1', {}],
  ['A1 SEARCH MODSEQ "/flags/\\\\Seen" most 1', {}],
  ['A1 SEARCH HEADER "a:b" x', {}],
  ['A1 SEARCH 0', { message: /sequence set/ }],
  ['A1 SEARCH 1:2:3', {}],
  ['A1 SEARCH 01', {}],
  ['A1 SEARCH 4294967296', {}],
  ['A1 SEARCH $,1', {}],
  ['A1 SORT (DATE) ALL', { code: 'BADCHARSET', status: 'NO' }],
  ['A1 SORT (BOGUS) UTF-8 ALL', {}],
  ['A1 SORT () UTF-8 ALL', {}],
  ['A1 SORT (REVERSE) UTF-8 ALL', {}],
  ['A1 THREAD REFS UTF-8 ALL', {}],
  ['A1 THREAD REFERENCES ALL', { code: 'BADCHARSET', status: 'NO' }],
  ['A1 FETCH 0 FLAGS', {}],
  ['A1 FETCH 1:x FLAGS', {}],
  ['A1 FETCH 1 (FLAGS', {}],
  ['A1 FETCH 1 ()', {}],
  ['A1 FETCH 1 (ALL)', {}],
  ['A1 FETCH 1 BOGUS', { message: /Unknown fetch item/ }],
  ['A1 FETCH 1 BODY[MIME]', {}],
  ['A1 FETCH 1 BODY[1.]', {}],
  ['A1 FETCH 1 BODY[0]', {}],
  ['A1 FETCH 1 BODY[HEADER.FIELDS ()]', {}],
  ['A1 FETCH 1 BODY[HEADER.FIELDS]', {}],
  ['A1 FETCH 1 BODY[TEXT', {}],
  ['A1 FETCH 1 BODY.PEEK', {}],
  ['A1 FETCH 1 BINARY[HEADER]', {}],
  ['A1 FETCH 1 BINARY.SIZE', {}],
  ['A1 FETCH 1 BODY[]<0.0>', {}],
  ['A1 FETCH 1 BODY[]<0>', {}],
  ['A1 FETCH 1 FLAGS (VANISHED)', { code: 'CLIENTBUG' }],
  ['A1 UID FETCH 1 FLAGS (VANISHED)', { code: 'CLIENTBUG' }],
  ['A1 FETCH 1 FLAGS (CHANGEDSINCE x)', {}],
  ['A1 FETCH 1 FLAGS (FOO)', {}],
  ['A1 STORE 1 FLAGS', {}],
  ['A1 STORE 1 XFLAGS (\\Seen)', {}],
  ['A1 STORE 1 (FOO 1) FLAGS (\\Seen)', {}],
  ['A1 STORE 1 FLAGS (\\Seen', {}],
  ['A1 STORE 1 FLAGS (\\)', {}],
  ['A1 COPY 1', {}],
  ['A1 MOVE INBOX', {}],
  ['A1 SETQUOTA "" (STORAGE)', {}],
  ['A1 COMPRESS', {}],
];

describe('readCommand: malformed commands', () => {
  for (const [text, expect] of malformed) {
    it(JSON.stringify(text), async () => {
      const { err, input } = await parseError(`${text}\r\nZ9 NOOP\r\n`);
      assert.equal(err.code, expect.code ?? 'PARSE');
      assert.equal(err.status, expect.status ?? 'BAD');
      assert.equal(err.tag, expect.tag === null ? undefined : (expect.tag ?? 'A1'));
      if (expect.message) assert.match(err.message, expect.message);
      assert.equal(err.unread, undefined);
      assert.match(err.response(), /^(A1|\*) (BAD|NO) /);
      assert.doesNotMatch(err.response(), /[\r\n]/);
      // The session answers, then reads the next command.
      assert.deepEqual(await readCommand(input, testOptions()), { tag: 'Z9', command: { name: 'NOOP' } });
    });
  }

  it('puts the code in the response line, and no code for a plain syntax error', async () => {
    assert.equal((await parseError('A1 FOO\r\n')).err.response(), 'A1 BAD Unknown command FOO');
    assert.equal((await parseError('A1 SEARCH CHARSET X-NOPE ALL\r\n')).err.response(), 'A1 NO [BADCHARSET] Unknown charset X-NOPE');
    assert.equal((await parseError('\r\n')).err.response(), '* BAD Empty command line');
  });

  it('keeps text from the client out of the message but printable ASCII', async () => {
    const { err } = await parseError(Buffer.from('A1 FETCH 1 (FLAGS BODY[\x01])\r\n'));
    assert.doesNotMatch(err.response(), /[^\x20-\x7e]/);
  });
});

describe('readCommand: literals', () => {
  it('refuses a synchronizing literal over maxLiteral without asking the continuation', async () => {
    const { err, input, options } = await parseError('A1 LOGIN {9000}\r\nZ9 NOOP\r\n');
    assert.equal(err.code, 'TOOBIG');
    assert.equal(err.status, 'BAD');
    assert.equal(err.unread, undefined);
    assert.deepEqual(options.continuations, []);
    assert.equal((await readCommand(input, testOptions())).tag, 'Z9');
  });

  it('never takes an argument literal over 64 KiB, whatever maxLiteral says', async () => {
    const { err } = await parseError('A1 LOGIN {70000}\r\n', { maxLiteral: () => 1e9 });
    assert.equal(err.code, 'TOOBIG');
  });

  it('fails with TOOBIG when the session refuses the continuation; the literal is not read', async () => {
    const { err, input, options } = await parseError('A1 LOGIN {5}\r\nZ9 NOOP\r\n', { refuse: true });
    assert.equal(err.code, 'TOOBIG');
    assert.equal(options.continuations.length, 1);
    assert.equal((await readCommand(input, testOptions())).tag, 'Z9');
  });

  it('answers an APPEND over APPENDLIMIT with NO [TOOBIG], before the message is sent', async () => {
    const { err, input, options } = await parseError('A1 APPEND INBOX (\\Seen) {2000}\r\nZ9 NOOP\r\n', { maxLiteral: (c) => (c === 'APPEND' ? 1000 : 8192) });
    assert.equal(err.response(), 'A1 NO [TOOBIG] Message over the limit of 1000 bytes');
    assert.deepEqual(options.continuations, []);
    assert.equal((await readCommand(input, testOptions())).tag, 'Z9');
  });

  it('takes LITERAL- {n+} up to 4096 bytes; over it, BAD [TOOBIG], read and discarded when under maxLiteral', async () => {
    const ok = await parse(`a LOGIN alice {4096+}\r\n${'x'.repeat(4096)}\r\n`);
    assert.equal(ok.command.name === 'LOGIN' && ok.command.password.length, 4096);
    const { err, input } = await parseError(`A1 LOGIN alice {5000+}\r\n${'x'.repeat(5000)}\r\nZ9 NOOP\r\n`);
    assert.equal(err.response(), 'A1 BAD [TOOBIG] Non-synchronizing literal over 4096 bytes');
    assert.equal(err.unread, undefined);
    assert.equal((await readCommand(input, testOptions())).tag, 'Z9');
  });

  it('takes LITERAL+ {n+} up to maxLiteral', async () => {
    const { command } = await parse(`a LOGIN alice {5000+}\r\n${'x'.repeat(5000)}\r\n`, { literalPlus: true });
    assert.equal(command.name === 'LOGIN' && command.password.length, 5000);
  });

  it('leaves a non-synchronizing literal over maxLiteral unread, and says how much is coming', async () => {
    const { err, input } = await parseError('A1 APPEND INBOX {100000+}\r\nFrom: a\r\n', { literalPlus: true, maxLiteral: (c) => (c === 'APPEND' ? 1000 : 8192) });
    assert.equal(err.code, 'TOOBIG');
    assert.equal(err.status, 'NO');
    assert.equal(err.unread, true);
    assert.equal(err.pending, 100000);
    assert.equal(input.rest(), 'From: a\r\n');
  });

  it('reads a binary literal ~{n} for APPEND only, and refuses NUL in any other literal', async () => {
    const ok = await parse(Buffer.from('a APPEND INBOX ~{3}\r\n\0\0\0\r\n'));
    assert.equal(ok.command.name === 'APPEND' && ok.command.messages[0].binary, true);
    const nul = await parseError(Buffer.from('A1 APPEND INBOX {3}\r\na\0b\r\nZ9 NOOP\r\n'));
    assert.match(nul.err.message, /NUL/);
    assert.equal((await readCommand(nul.input, testOptions())).tag, 'Z9');
    const login = await parseError(Buffer.from('A1 LOGIN {3}\r\na\0b x\r\nZ9 NOOP\r\n'));
    assert.match(login.err.message, /NUL/);
    assert.equal((await readCommand(login.input, testOptions())).tag, 'Z9');
  });

  it('reads APPEND UTF8 (~{n}) once UTF8=ACCEPT is on (RFC 6855 §4), as a message of text; BAD before', async () => {
    const message = Buffer.from('Subject: Grüße\r\n\r\nhi');
    const wire = Buffer.concat([Buffer.from(`a APPEND INBOX (\\Seen) UTF8 (~{${message.length}}\r\n`), message, Buffer.from(') {2}\r\nhi\r\n')]);
    const ok = await parse(wire, { utf8: true });
    assert.deepEqual(ok.command, {
      name: 'APPEND',
      mailbox: 'INBOX',
      messages: [
        { flags: ['\\Seen'], message, binary: false },
        { flags: [], message: Buffer.from('hi'), binary: false },
      ],
    });
    assert.deepEqual(ok.options.continuations.map((c) => c.size), [message.length, 2]);
    const before = await parseError(Buffer.concat([Buffer.from(`A1 APPEND INBOX UTF8 (~{${message.length}+}\r\n`), message, Buffer.from(')\r\nZ9 NOOP\r\n')]));
    assert.equal(before.err.response(), 'A1 BAD UTF8 needs ENABLE UTF8=ACCEPT');
    assert.equal((await readCommand(before.input, testOptions())).tag, 'Z9');
    for (const bad of ['A1 APPEND INBOX UTF8 ({3}\r\nabc)\r\n', 'A1 APPEND INBOX UTF8 (~{3}\r\nabc\r\n', 'A1 APPEND INBOX UTF8 ~{3}\r\nabc\r\n']) {
      assert.equal((await parseError(bad, { utf8: true })).err.status, 'BAD', bad);
    }
  });

  it('bounds a command: lines and literals past maxCommandBytes are TOOBIG', async () => {
    const { err, input, options } = await parseError(`A1 LOGIN {3000}\r\n${'x'.repeat(3000)} {3000}\r\nZ9 NOOP\r\n`, { maxCommandBytes: 4000 });
    assert.equal(err.code, 'TOOBIG');
    assert.equal(options.continuations.length, 1);
    assert.equal((await readCommand(input, testOptions())).tag, 'Z9');
  });

  it('reads a maxLiteral that is not a number as 0, not as no limit', async () => {
    const { err } = await parseError('A1 LOGIN {5}\r\n', { maxLiteral: () => NaN });
    assert.equal(err.code, 'TOOBIG');
  });

  it('bounds the messages of one MULTIAPPEND together', async () => {
    const { err, options } = await parseError('A1 APPEND INBOX {600}\r\n' + 'x'.repeat(600) + ' {600}\r\n', { maxAppendBytes: 1000 });
    assert.equal(err.response(), 'A1 NO [TOOBIG] Messages over the limit of one APPEND');
    assert.equal(options.continuations.length, 1);
  });
});

describe('readCommand: recovery after an error', () => {
  it('skips the rest of the line', async () => {
    const { input } = await parseError('A1 FETCH 1 (FLAGS BOGUS) more (stuff\r\nZ9 NOOP\r\n');
    assert.equal((await readCommand(input, testOptions())).tag, 'Z9');
  });

  it('refuses a synchronizing literal the bad line announces by not asking for it', async () => {
    const { input, options } = await parseError('A1 BOGUS {5}\r\nZ9 NOOP\r\n');
    assert.deepEqual(options.continuations, []);
    assert.equal((await readCommand(input, testOptions())).tag, 'Z9');
  });

  it('reads and drops the non-synchronizing literals a bad line announces, and the lines after them', async () => {
    const { input } = await parseError('A1 BOGUS {5+}\r\nhello more {3+}\r\n(((\r\nZ9 NOOP\r\n');
    assert.equal((await readCommand(input, testOptions())).tag, 'Z9');
  });

  it('fails after a literal was read: the line after it is the rest of the command', async () => {
    const missing = await parseError('A1 LOGIN {5}\r\nalice\r\nZ9 NOOP\r\n');
    assert.equal(missing.err.tag, 'A1');
    assert.equal((await readCommand(missing.input, testOptions())).tag, 'Z9');
    const extra = await parseError('A1 LOGIN {5}\r\nalice x y {2+}\r\nab\r\nZ9 NOOP\r\n');
    assert.match(extra.err.message, /Too many/);
    assert.equal((await readCommand(extra.input, testOptions())).tag, 'Z9');
  });

  it('leaves a non-synchronizing literal of a bad line unread when it is over maxLiteral', async () => {
    const { err } = await parseError('A1 BOGUS {99999+}\r\n');
    assert.equal(err.unread, true);
    assert.equal(err.pending, 99999);
  });

  it('passes errors of the input through unchanged', async () => {
    const gone = new Error('connection closed');
    const input = { line: () => Promise.reject(gone), bytes: () => Promise.reject(gone) };
    await assert.rejects(readCommand(input, testOptions()), (err) => err === gone);
    const halfway = new BufferInput('A1 LOGIN {5}\r\nal');
    await assert.rejects(readCommand(halfway, testOptions()), EndOfInput);
    const refused = new Error('socket gone while writing +');
    await assert.rejects(
      readCommand(new BufferInput('A1 LOGIN {5}\r\n'), testOptions({ continuation: () => Promise.reject(refused) })),
      (err) => err === refused,
    );
  });

  it('refuses search keys nested past 32 parentheses, without recursing further', async () => {
    const deep = await parseError(`A1 SEARCH ${'('.repeat(100000)}ALL${')'.repeat(100000)}\r\nZ9 NOOP\r\n`);
    assert.equal(deep.err.code, 'LIMIT');
    assert.equal((await readCommand(deep.input, testOptions())).tag, 'Z9');
    assert.equal((await parse(`a SEARCH ${'('.repeat(32)}ALL${')'.repeat(32)}\r\n`)).command.name, 'SEARCH');
    assert.equal((await parseError(`A1 SEARCH ${'('.repeat(33)}ALL${')'.repeat(33)}\r\n`)).err.code, 'LIMIT');
    assert.equal((await parseError(`A1 SEARCH ${'NOT '.repeat(100000)}ALL\r\n`)).err.code, 'LIMIT');
  });
});

describe('sequence sets', () => {
  const cases: [string, SequenceSet | undefined][] = [
    ['1', one(1)],
    ['1:3,5', set([1, 3], [5, 5])],
    ['*', set([Infinity, Infinity])],
    ['5:*', set([5, Infinity])],
    ['*:5', set([5, Infinity])],
    ['9:2', set([2, 9])],
    ['4294967295', one(4294967295)],
    ['$', { saved: true }],
    ['0', undefined],
    ['1,', undefined],
    [',1', undefined],
    ['1::2', undefined],
    ['4294967296', undefined],
    ['$:1', undefined],
    ['', undefined],
  ];
  for (const [text, expected] of cases) {
    it(`${JSON.stringify(text)}${expected ? '' : ' is invalid'}`, () => {
      if (expected) assert.deepEqual(parseSequenceSet(text), expected);
      else assert.throws(() => parseSequenceSet(text), (err) => ImapParseError.is(err));
    });
  }
});

describe('parseDateTime', () => {
  it('reads date-time with its zone', () => {
    assert.equal(parseDateTime('17-Jul-1996 02:44:25 -0700')?.toISOString(), '1996-07-17T09:44:25.000Z');
    assert.equal(parseDateTime(' 7-Feb-1994 21:52:25 +0100')?.toISOString(), '1994-02-07T20:52:25.000Z');
  });
  it('refuses what is not one', () => {
    for (const bad of ['7-Feb-1994 21:52:25 -0800', '30-Feb-1994 21:52:25 -0800', '01-Feb-1994 24:00:00 +0000', '01-Feb-1994 21:52 +0000', '01-Foo-1994 21:52:25 +0000']) {
      assert.equal(parseDateTime(bad), undefined, bad);
    }
  });
});
