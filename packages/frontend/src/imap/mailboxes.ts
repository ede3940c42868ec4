import { listMatcher, mailboxName, sequenceSet, parseDateTime, type AppendMessage, type StatusItems } from '@mailgrid/imap';
import type { FolderInfo__Output } from '@mailgrid/protocol';
import { toCodedError } from '@mailgrid/core';
import { Tagged, type Handlers, type ImapSession } from './session.js';

const DELIMITER = '/';
/** The uses a folder can be made with (CREATE-SPECIAL-USE): not \\All, a virtual folder of every message, which a folder of its own is not. */
const SPECIAL_USES = new Set(['\\Archive', '\\Drafts', '\\Flagged', '\\Junk', '\\Sent', '\\Trash']);

/** A mailbox name on the wire: modified UTF-7 unless UTF8=ACCEPT, an atom, quoted or a literal. */
export function mailboxString(s: ImapSession, name: string): string {
  return mailboxName(name, s.utf8);
}

export function flagList(specialUse: string): string[] {
  return specialUse ? [specialUse] : [];
}

export function listLine(s: ImapSession, name: string, attributes: string[], extra = ''): string {
  return `* LIST (${attributes.join(' ')}) "${DELIMITER}" ${mailboxString(s, name)}${extra}`;
}

/** A name the store takes: without a trailing delimiter, INBOX in capitals (the parser did that). */
function canonical(name: string): string {
  return name.endsWith(DELIMITER) ? name.slice(0, -1) : name;
}

/** A LIST pattern (RFC 9051 §6.3.9) after its reference; INBOX (and what is under it) in any case. */
function matcher(reference: string, pattern: string): (name: string) => boolean {
  const match = listMatcher(reference + pattern, DELIMITER);
  const folded = listMatcher((reference + pattern).toLowerCase(), DELIMITER);
  return (name) => match(name) || ((name === 'INBOX' || name.startsWith('INBOX/')) && folded(name.toLowerCase()));
}

function order(a: string, b: string): number {
  if (a === 'INBOX') return -1;
  if (b === 'INBOX') return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The STATUS items of a folder (RFC 9051 §6.3.11, with STATUS=SIZE, CONDSTORE, OBJECTID, APPENDLIMIT). */
function statusItems(s: ImapSession, f: FolderInfo__Output, items: StatusItems['items']): string {
  const values: Record<string, string> = {
    MESSAGES: String(f.messages),
    UIDNEXT: String(f.uidNext),
    UIDVALIDITY: String(f.uidValidity),
    UNSEEN: String(f.unseen),
    DELETED: String(f.deleted),
    SIZE: String(f.size),
    HIGHESTMODSEQ: String(f.highestModseq),
    RECENT: '0',
    MAILBOXID: `(${f.id})`,
    APPENDLIMIT: String(s.appendLimit),
  };
  return `* STATUS ${mailboxString(s, f.name)} (${items.map((i) => `${i} ${values[i]}`).join(' ')})`;
}

/** NOT_FOUND on the way to a target folder: the client may create it (RFC 9051 §7.1 TRYCREATE). */
export function tryCreate(err: unknown): never {
  if (toCodedError(err).code === 'NOT_FOUND') throw new Tagged('NO', '[TRYCREATE] No such mailbox');
  throw err;
}

/** The mailbox commands of the authenticated (and selected) state. */
export const mailboxCommands: Handlers = {
  NAMESPACE: async (s) => s.out(`* NAMESPACE (("" "${DELIMITER}")) NIL NIL`),

  LIST: async (s, cmd) => {
    const { select, reference, patterns } = cmd;
    const ret = cmd.return;
    // `LIST "" ""`: the delimiter and the root.
    if (patterns.length === 1 && patterns[0] === '' && !select.length) {
      s.out(`* LIST (\\Noselect) "${DELIMITER}" ""`);
      return;
    }
    const extended = s.rev2 || select.length > 0 || ret.options.length > 0 || !!ret.status;
    const subscribedOnly = select.includes('SUBSCRIBED');
    const specialOnly = select.includes('SPECIAL-USE');
    const recursive = select.includes('RECURSIVEMATCH');
    const showSubscribed = subscribedOnly || ret.options.includes('SUBSCRIBED');
    const boxes = await s.mailbox.calls.mailboxes(s.mailbox.account);
    const folders = new Map(boxes.folders.map((f) => [f.name, f]));
    const subscribed = new Set(boxes.subscribed);
    const parents = (n: string) => {
      const out: string[] = [];
      for (let at = n.indexOf(DELIMITER); at > 0; at = n.indexOf(DELIMITER, at + 1)) out.push(n.slice(0, at));
      return out;
    };
    // The names to list: the folders and the parents they imply; with the SUBSCRIBED selection the
    // subscribed names (some may not exist) and, for RECURSIVEMATCH, their parents. A name that is
    // only subscribed is never listed otherwise (RFC 5258 §3).
    const base = subscribedOnly ? [...subscribed] : [...folders.keys()];
    const names = new Set<string>(base);
    for (const n of base) for (const p of parents(n)) names.add(p);
    const hasChildren = (n: string) => [...folders.keys()].some((o) => o.startsWith(n + DELIMITER));
    const hasSubscribedChild = (n: string) => [...subscribed].some((o) => o.startsWith(n + DELIMITER));
    const matches = patterns.map((p) => matcher(reference, p));
    for (const name of [...names].sort(order)) {
      if (!matches.some((m) => m(name))) continue;
      const f = folders.get(name);
      const attrs: string[] = [];
      let extra = '';
      if (subscribedOnly) {
        // RECURSIVEMATCH: a name with a subscribed child says so, whether or not it is subscribed itself (RFC 9051 §6.3.9.2).
        const childInfo = recursive && hasSubscribedChild(name);
        if (childInfo) extra = ' ("CHILDINFO" ("SUBSCRIBED"))';
        if (!subscribed.has(name) && !childInfo) continue;
      }
      if (specialOnly && !f?.specialUse) continue;
      if (!f) attrs.push(extended ? '\\NonExistent' : '\\Noselect');
      // Children are folders that exist (CHILDREN, RFC 3348): a name that is not a folder has them too when it is their parent.
      if (f || hasChildren(name)) attrs.push(hasChildren(name) ? '\\HasChildren' : '\\HasNoChildren');
      if (showSubscribed && subscribed.has(name)) attrs.push('\\Subscribed');
      if (f?.specialUse) attrs.push(f.specialUse);
      s.out(listLine(s, name, attrs, extra));
      if (ret.status && f) s.out(statusItems(s, f, ret.status.items));
    }
  },

  LSUB: async (s, cmd) => {
    const boxes = await s.mailbox.calls.mailboxes(s.mailbox.account);
    const folders = new Set(boxes.folders.map((f) => f.name));
    const match = matcher(cmd.reference, cmd.pattern);
    for (const name of [...boxes.subscribed].sort(order))
      if (match(name)) s.out(`* LSUB (${folders.has(name) ? '' : '\\Noselect'}) "${DELIMITER}" ${mailboxString(s, name)}`);
  },

  STATUS: async (s, cmd) => {
    const boxes = await s.mailbox.calls.mailboxes(s.mailbox.account);
    const f = boxes.folders.find((f) => f.name === cmd.mailbox);
    if (!f) throw new Tagged('NO', '[NONEXISTENT] No such mailbox');
    if (cmd.status.items.includes('HIGHESTMODSEQ')) s.condstore = true;
    s.out(statusItems(s, f, cmd.status.items));
  },

  CREATE: async (s, cmd) => {
    const name = canonical(cmd.mailbox);
    if (!name) throw new Tagged('BAD', 'Empty mailbox name');
    const use = cmd.specialUse;
    if (use.length > 1 || (use.length === 1 && !SPECIAL_USES.has(use[0]))) throw new Tagged('NO', '[USEATTR] Unsupported special use');
    const made = await s.mailbox.calls.createMailbox(s.mailbox.account, name, use[0] ?? '');
    return `[MAILBOXID (${made.id})] CREATE completed`;
  },

  DELETE: async (s, cmd) => {
    await s.mailbox.calls.deleteMailbox(s.mailbox.account, canonical(cmd.mailbox));
  },

  RENAME: async (s, cmd) => {
    await s.mailbox.calls.renameMailbox(s.mailbox.account, canonical(cmd.from), canonical(cmd.to));
  },

  SUBSCRIBE: async (s, cmd) => {
    await s.mailbox.calls.subscribe(s.mailbox.account, canonical(cmd.mailbox), true);
  },

  UNSUBSCRIBE: async (s, cmd) => {
    await s.mailbox.calls.subscribe(s.mailbox.account, canonical(cmd.mailbox), false);
  },

  GETQUOTAROOT: async (s, cmd) => {
    const boxes = await s.mailbox.calls.mailboxes(s.mailbox.account);
    if (!boxes.folders.some((f) => f.name === cmd.mailbox)) throw new Tagged('NO', '[NONEXISTENT] No such mailbox');
    const q = await s.mailbox.calls.quota(s.mailbox.account);
    // One quota root, the account (""), when it has a limit.
    s.out(`* QUOTAROOT ${mailboxString(s, cmd.mailbox)}${Number(q.limit) ? ' ""' : ''}`);
    if (Number(q.limit)) s.out(quotaLine(q));
  },

  GETQUOTA: async (s, cmd) => {
    if (cmd.root !== '') throw new Tagged('NO', '[NONEXISTENT] No such quota root');
    const q = await s.mailbox.calls.quota(s.mailbox.account);
    if (!Number(q.limit)) throw new Tagged('NO', '[NONEXISTENT] No quota set');
    s.out(quotaLine(q));
  },

  SETQUOTA: async () => {
    // The operator sets quotas (`mailgrid account set ... quota`), not the user.
    throw new Tagged('NO', '[NOPERM] Quotas are set by the administrator');
  },

  APPEND: async (s, cmd) => append(s, cmd.mailbox, cmd.messages),
};

/** RFC 9208: STORAGE in units of 1024 octets. */
function quotaLine(q: { limit: number | string; used: number | string }): string {
  return `* QUOTA "" (STORAGE ${Math.ceil(Number(q.used) / 1024)} ${Math.floor(Number(q.limit) / 1024)})`;
}

/**
 * APPEND with MULTIAPPEND (RFC 3502): all or none. Each message is appended as it is;
 * if one fails, those before it are expunged again, and the answer is the failure.
 */
async function append(s: ImapSession, mailbox: string, messages: AppendMessage[]): Promise<string> {
  const { account, calls } = s.mailbox;
  for (const m of messages) {
    if (m.flags.some((f) => f.toLowerCase() === '\\recent')) throw new Tagged('BAD', '\\Recent cannot be set');
    if (!m.binary && hasBareLineEnd(m.message)) throw new Tagged('NO', '[CANNOT] Message has a bare CR, LF or NUL: lines must end with CRLF');
  }
  const done: number[] = [];
  let uidValidity = 0;
  try {
    for (const m of messages) {
      const at = m.date === undefined ? new Date() : parseDateTime(m.date);
      if (at === undefined) throw new Tagged('BAD', 'Invalid date-time');
      const r = await calls.append(account, mailbox, m.flags, at.getTime(), m.message);
      uidValidity = r.uidValidity;
      done.push(r.uid);
    }
  } catch (err) {
    if (done.length) await calls.delete(account, done, mailbox).catch(() => undefined);
    tryCreate(err);
  }
  if (s.selected?.folder === mailbox) s.selected.stale();
  return `[APPENDUID ${uidValidity} ${sequenceSet(done)}] APPEND completed`;
}

/** A CR not before LF, an LF not after CR, or NUL: refused in a message (no smuggling through our store). */
function hasBareLineEnd(body: Buffer): boolean {
  for (let i = body.indexOf(0x0d); i >= 0; i = body.indexOf(0x0d, i + 1)) if (body[i + 1] !== 0x0a) return true;
  for (let i = body.indexOf(0x0a); i >= 0; i = body.indexOf(0x0a, i + 1)) if (body[i - 1] !== 0x0d) return true;
  return body.includes(0);
}
