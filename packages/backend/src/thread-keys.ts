import { threadIds } from '@mailgrid/imap';
import type { ThreadKeys } from '@mailgrid/store';

/** What joins a message to its thread (THREADID): its Message-ID, and the ids it answers (In-Reply-To, References). */
export function threadKeys(message: Buffer): ThreadKeys {
  const h = threadIds(message);
  return { messageId: h.messageId, parents: [...(h.inReplyTo ? [h.inReplyTo] : []), ...h.references] };
}
