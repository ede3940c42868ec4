import type { MessageState__Output } from '@mailgrid/protocol';
import { MailboxView, type MessageMeta } from './view.js';

/** The selected folder of a session: its view, how it was opened and the saved search result. */
export class Selected {
  /** The feed told of changes not in the view yet. */
  dirty = false;
  /** SEARCHRES's `$`: uids. */
  saved: number[] = [];

  constructor(
    readonly folder: string,
    readonly readOnly: boolean,
    readonly uidValidity: number,
    readonly id: string,
    readonly view: MailboxView,
  ) {}
}

export function metaOf(m: MessageState__Output): MessageMeta {
  return {
    uid: m.uid,
    flags: m.flags,
    modseq: Number(m.modseq),
    size: Number(m.size),
    receivedAt: Number(m.receivedAtMs),
    emailId: m.emailId,
    threadId: m.threadId,
  };
}
