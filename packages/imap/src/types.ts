/**
 * The shapes the IMAP library works in: commands as the parser gives them, search keys,
 * fetch items, sequence sets, and a message's MIME structure. Pure data; no I/O.
 */

/** `1:5,7,9:*` — `*` is the largest number in use (Infinity until resolved); `$` is the saved search result (SEARCHRES). */
export type SequenceSet = { saved: true } | { saved?: false; ranges: [from: number, to: number][] };

/** A flag or keyword as written (`\Seen`, `$Forwarded`, `Junk`). */
export type Flag = string;

/** A mailbox name as the client wrote it, decoded (modified UTF-7 unless UTF8=ACCEPT is on). */
export type MailboxName = string;

// ---- fetch ------------------------------------------------------------------------------

/** A body section: `[]`, `[HEADER]`, `[1.2.TEXT]`, `[HEADER.FIELDS (Subject From)]`, `[2.MIME]`. */
export interface Section {
  /** Part numbers, `[]` for the whole message. */
  part: number[];
  specifier?: 'HEADER' | 'HEADER.FIELDS' | 'HEADER.FIELDS.NOT' | 'TEXT' | 'MIME';
  /** Upper-cased field names, for HEADER.FIELDS and HEADER.FIELDS.NOT. */
  fields?: string[];
}

/** `<start.length>` of BODY[...]/BINARY[...]. */
export interface Partial {
  start: number;
  length: number;
}

export type FetchItem =
  | { kind: 'UID' }
  | { kind: 'FLAGS' }
  | { kind: 'INTERNALDATE' }
  | { kind: 'RFC822.SIZE' }
  | { kind: 'ENVELOPE' }
  | { kind: 'BODYSTRUCTURE' }
  /** `BODY` without a section: the non-extensible structure. */
  | { kind: 'BODY' }
  | { kind: 'MODSEQ' }
  | { kind: 'EMAILID' }
  | { kind: 'THREADID' }
  /** RFC822 = BODY[], RFC822.HEADER = BODY.PEEK[HEADER], RFC822.TEXT = BODY[TEXT]: kept apart for the response name. */
  | { kind: 'RFC822' | 'RFC822.HEADER' | 'RFC822.TEXT' }
  | { kind: 'BODY[]'; section: Section; partial?: Partial; peek: boolean }
  | { kind: 'BINARY[]'; section: Section; partial?: Partial; peek: boolean }
  | { kind: 'BINARY.SIZE'; section: Section };

// ---- search -----------------------------------------------------------------------------

/** A search key (RFC 9051 §6.4.4, with CONDSTORE's MODSEQ, WITHIN's OLDER/YOUNGER, SEARCHRES's `$`). */
export type SearchKey =
  | { kind: 'ALL' }
  | { kind: 'AND'; keys: SearchKey[] }
  | { kind: 'OR'; a: SearchKey; b: SearchKey }
  | { kind: 'NOT'; key: SearchKey }
  | { kind: 'SEQ'; set: SequenceSet }
  | { kind: 'UID'; set: SequenceSet }
  /** `ANSWERED` = flag \Answered set; `UNANSWERED` = not set; KEYWORD/UNKEYWORD likewise; NEW = RECENT UNSEEN (\Recent is never set here). */
  | { kind: 'FLAG'; flag: Flag; set: boolean }
  /** Dates compare the day only (RFC 9051), in the server's zone: `internal` is INTERNALDATE, `sent` the Date: header. */
  | { kind: 'DATE'; field: 'internal' | 'sent'; op: 'before' | 'on' | 'since'; date: string }
  /** OLDER/YOUNGER n (RFC 5032): seconds relative to now, on INTERNALDATE. */
  | { kind: 'WITHIN'; op: 'older' | 'younger'; seconds: number }
  | { kind: 'SIZE'; op: 'larger' | 'smaller'; size: number }
  /** BCC/CC/FROM/SUBJECT/TO/HEADER name value; the name upper-cased; substring, case-insensitive. */
  | { kind: 'HEADER'; name: string; value: string }
  | { kind: 'BODY' | 'TEXT'; value: string }
  /** MODSEQ [entry type] n (RFC 7162): `entry` narrows it to one flag's metadata item (`"/flags/\\Seen" priv`). */
  | { kind: 'MODSEQ'; modseq: bigint; entry?: { flag: Flag; type: 'priv' | 'shared' | 'all' } }
  | { kind: 'EMAILID' | 'THREADID'; id: string };

/** ESEARCH's RETURN options (RFC 4731, with SEARCHRES's SAVE). Empty: the plain SEARCH response. */
export type SearchReturn = 'MIN' | 'MAX' | 'ALL' | 'COUNT' | 'SAVE';

/** SORT keys (RFC 5256, with SORT=DISPLAY's DISPLAYFROM/DISPLAYTO). */
export interface SortKey {
  key: 'ARRIVAL' | 'CC' | 'DATE' | 'FROM' | 'SIZE' | 'SUBJECT' | 'TO' | 'DISPLAYFROM' | 'DISPLAYTO';
  reverse: boolean;
}

// ---- commands ---------------------------------------------------------------------------

export interface StatusItems {
  /** APPENDLIMIT is RFC 7889's per-mailbox limit. */
  items: ('MESSAGES' | 'UIDNEXT' | 'UIDVALIDITY' | 'UNSEEN' | 'DELETED' | 'SIZE' | 'HIGHESTMODSEQ' | 'RECENT' | 'MAILBOXID' | 'APPENDLIMIT')[];
}

/** SELECT/EXAMINE's QRESYNC parameter (RFC 7162 §3.2.5). */
export interface QresyncParams {
  uidValidity: number;
  modseq: bigint;
  knownUids?: SequenceSet;
  /** Message numbers and the UIDs the client has for them. */
  seqMatch?: { seqs: SequenceSet; uids: SequenceSet };
}

export interface AppendMessage {
  flags: Flag[];
  /** RFC 3501 date-time, as given. */
  date?: string;
  /** The literal, read whole (its size was checked against APPENDLIMIT before it was read). */
  message: Buffer;
  /** `BINARY` literal `~{n}` (RFC 3516). */
  binary: boolean;
}

/** Every command a session may get, with its arguments parsed. `uid` marks the UID variants. */
export type Command =
  | { name: 'CAPABILITY' | 'NOOP' | 'LOGOUT' | 'STARTTLS' | 'NAMESPACE' | 'CHECK' | 'CLOSE' | 'UNSELECT' | 'IDLE' }
  | { name: 'LOGIN'; user: string; password: string }
  /** `initial`: SASL-IR's initial response, base64 as sent (`=`, the empty response, is ''). */
  | { name: 'AUTHENTICATE'; mechanism: string; initial?: string }
  | { name: 'ENABLE'; capabilities: string[] }
  | { name: 'ID'; params: Record<string, string | null> | null }
  | { name: 'SELECT' | 'EXAMINE'; mailbox: MailboxName; condstore: boolean; qresync?: QresyncParams }
  | { name: 'CREATE'; mailbox: MailboxName; specialUse: Flag[] }
  | { name: 'DELETE' | 'SUBSCRIBE' | 'UNSUBSCRIBE' | 'GETQUOTAROOT'; mailbox: MailboxName }
  | { name: 'RENAME'; from: MailboxName; to: MailboxName }
  | {
      name: 'LIST';
      /** LIST-EXTENDED selection options (SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE). */
      select: string[];
      reference: MailboxName;
      patterns: MailboxName[];
      /** RETURN options: SUBSCRIBED, CHILDREN, SPECIAL-USE in `options`; STATUS (LIST-STATUS) as `status`, with its items. */
      return: { options: string[]; status?: StatusItems };
    }
  | { name: 'LSUB'; reference: MailboxName; pattern: MailboxName }
  | { name: 'STATUS'; mailbox: MailboxName; status: StatusItems }
  | { name: 'APPEND'; mailbox: MailboxName; messages: AppendMessage[] }
  | { name: 'EXPUNGE'; uid: boolean; set?: SequenceSet }
  | { name: 'SEARCH'; uid: boolean; return: SearchReturn[] | undefined; charset?: string; key: SearchKey }
  | { name: 'SORT'; uid: boolean; return: SearchReturn[] | undefined; sort: SortKey[]; charset: string; key: SearchKey }
  | { name: 'THREAD'; uid: boolean; algorithm: 'REFERENCES' | 'ORDEREDSUBJECT'; charset: string; key: SearchKey }
  | { name: 'FETCH'; uid: boolean; set: SequenceSet; items: FetchItem[]; changedSince?: bigint; vanished: boolean }
  | {
      name: 'STORE';
      uid: boolean;
      set: SequenceSet;
      op: 'add' | 'remove' | 'replace';
      silent: boolean;
      flags: Flag[];
      unchangedSince?: bigint;
    }
  | { name: 'COPY' | 'MOVE'; uid: boolean; set: SequenceSet; mailbox: MailboxName }
  | { name: 'GETQUOTA'; root: string }
  | { name: 'SETQUOTA'; root: string; limits: { resource: string; limit: number }[] }
  | { name: 'COMPRESS'; mechanism: string };

/** A command as read: its tag and what it asks. */
export interface TaggedCommand {
  tag: string;
  command: Command;
}

// ---- MIME -------------------------------------------------------------------------------

/** An address as ENVELOPE gives it (RFC 9051 §7.5.2): a group start has no host, a group end neither mailbox nor host. */
export interface EnvelopeAddress {
  name: string | null;
  /** Always NIL today (the source route). */
  adl: null;
  mailbox: string | null;
  host: string | null;
}

/** Date, Message-ID and In-Reply-To as written; the subject and display names decoded to UTF-8. */
export interface Envelope {
  date: string | null;
  subject: string | null;
  from: EnvelopeAddress[] | null;
  sender: EnvelopeAddress[] | null;
  replyTo: EnvelopeAddress[] | null;
  to: EnvelopeAddress[] | null;
  cc: EnvelopeAddress[] | null;
  bcc: EnvelopeAddress[] | null;
  inReplyTo: string | null;
  messageId: string | null;
}

/** One part of BODYSTRUCTURE, with the extension data (RFC 9051 §7.5.2). */
export interface BodyStructure {
  /** Lower-cased `text`, `multipart`, ... */
  type: string;
  subtype: string;
  /** Content-Type parameters, names lower-cased, values decoded (RFC 2231). */
  params: Record<string, string>;
  /** Multipart: its parts. */
  parts?: BodyStructure[];
  id: string | null;
  description: string | null;
  /** Lower-cased; `7bit` when absent. */
  encoding: string;
  /** Octets of the part's body as it is (encoded). */
  size: number;
  /** text/* and message/rfc822: lines of the body. */
  lines?: number;
  /** message/rfc822: the enclosed message. */
  envelope?: Envelope;
  body?: BodyStructure;
  md5: string | null;
  disposition: { type: string; params: Record<string, string> } | null;
  language: string[] | null;
  location: string | null;
}

/** What search, sort and thread read of a message's header, decoded. */
export interface MessageHeaders {
  /** Date: as a time (ms), when it parses. */
  sent?: number;
  /** The zone Date: was written in, minutes east of UTC: SENTBEFORE/SENTON/SENTSINCE compare the date as written there. */
  sentZone?: number;
  subject: string;
  /** RFC 5256 base subject: re:/fwd: and [blob]s taken off, whitespace folded. */
  baseSubject: string;
  /** `Re:`/`Fwd:` or `(fwd)` made it a reply or forward (ORDEREDSUBJECT's and REFERENCES' rule). */
  isReplyOrForward: boolean;
  from: { name: string; address: string }[];
  to: { name: string; address: string }[];
  cc: { name: string; address: string }[];
  messageId?: string;
  inReplyTo?: string;
  /** Message-ids of References:, in order. */
  references: string[];
}
