import { sequenceSet, type QresyncParams } from '@mailgrid/imap';
import { Selected } from './selected.js';
import { Tagged, type Handlers, type ImapSession } from './session.js';
import { MailboxView } from './view.js';
import { flagList, listLine } from './mailboxes.js';

const SYSTEM_FLAGS = ['\\Answered', '\\Flagged', '\\Deleted', '\\Seen', '\\Draft'];

/** SELECT, EXAMINE (with CONDSTORE and QRESYNC), CLOSE and UNSELECT. */
export const selectCommands: Handlers = {
  SELECT: (s, cmd) => open(s, cmd.mailbox, false, cmd.condstore, cmd.qresync),
  EXAMINE: (s, cmd) => open(s, cmd.mailbox, true, cmd.condstore, cmd.qresync),

  CLOSE: async (s) => {
    const sel = s.selected!;
    // CLOSE removes the \Deleted messages silently (no EXPUNGE responses), in a folder open for writing.
    if (!sel.readOnly) await s.mailbox.calls.expunge(s.mailbox.account, sel.folder);
    s.selected = undefined;
    s.state = 'authenticated';
  },

  UNSELECT: async (s) => {
    s.selected = undefined;
    s.state = 'authenticated';
  },
};

async function open(s: ImapSession, folder: string, readOnly: boolean, condstore: boolean, qresync: QresyncParams | undefined): Promise<string> {
  if (qresync && !s.qresync) throw new Tagged('BAD', 'ENABLE QRESYNC first');
  if (condstore) s.condstore = true;
  // A failed SELECT leaves no folder selected (RFC 9051 §6.3.2).
  s.select(undefined);
  const { account, calls } = s.mailbox;
  const res = await calls.select(account, folder, 0);
  const info = res.folder!;
  const metas = s.metas.folder(account, info.id);
  const view = new MailboxView(res.messages.map((m) => metas.of(m)), Number(info.highestModseq));
  const sel = new Selected(folder, readOnly, info.uidValidity, info.id, view, metas);

  const keywords = new Set<string>();
  for (const m of res.messages) for (const f of m.flags) if (!f.startsWith('\\')) keywords.add(f);
  const flags = [...SYSTEM_FLAGS, ...keywords];
  s.out(`* ${view.exists} EXISTS`);
  if (!s.rev2) s.out('* 0 RECENT');
  s.out(`* FLAGS (${flags.join(' ')})`);
  s.out(`* OK [PERMANENTFLAGS (${readOnly ? '' : `${flags.join(' ')} \\*`})] Flags permitted`);
  s.out(`* OK [UIDVALIDITY ${info.uidValidity}] UIDs valid`);
  s.out(`* OK [UIDNEXT ${info.uidNext}] Predicted next UID`);
  s.out(`* OK [HIGHESTMODSEQ ${info.highestModseq}] Highest`);
  s.out(`* OK [MAILBOXID (${info.id})] Ok`);
  if (!s.rev2) {
    const firstUnseen = res.messages.findIndex((m) => !m.flags.includes('\\Seen'));
    if (firstUnseen >= 0) s.out(`* OK [UNSEEN ${view.seqOf(res.messages[firstUnseen].uid)}] First unseen`);
  } else s.out(listLine(s, folder, [...flagList(info.specialUse)]));

  if (qresync && qresync.uidValidity === info.uidValidity) await resync(s, sel, qresync);
  s.select(sel);
  return `[${readOnly ? 'READ-ONLY' : 'READ-WRITE'}] ${readOnly ? 'EXAMINE' : 'SELECT'} completed`;
}

/**
 * QRESYNC's catch-up (RFC 7162 §3.2.5): the uids expunged since the client's mod-sequence
 * (exact: the folder keeps every expunged uid with its mod-sequence) as VANISHED (EARLIER),
 * then the messages changed since as FETCH.
 */
async function resync(s: ImapSession, sel: Selected, q: QresyncParams): Promise<void> {
  const since = Number(q.modseq);
  const changes = await s.mailbox.calls.select(s.mailbox.account, sel.folder, since);
  const known = q.knownUids && !q.knownUids.saved ? q.knownUids.ranges : undefined;
  const inKnown = (uid: number) => !known || known.some(([a, b]) => uid >= Math.min(a, b) && uid <= Math.max(a, b));
  // Only what the view does not hold: an expunge after the view was taken is told by the next look.
  const vanished = changes.vanished.filter((u) => inKnown(u) && !sel.view.get(u));
  if (vanished.length) s.out(`* VANISHED (EARLIER) ${sequenceSet(vanished)}`);
  for (const m of sel.view.visible().map((u) => sel.view.get(u)!)) {
    if (m.modseq <= since) continue;
    s.out(`* ${sel.view.seqOf(m.uid)} FETCH (UID ${m.uid} FLAGS (${m.flags.join(' ')}) MODSEQ (${m.modseq}))`);
  }
}

export { SYSTEM_FLAGS };
