import type { FolderMetas, MailboxView } from './view.js';

/** The selected folder of a session: its view, how it was opened and the saved search result. */
export class Selected {
  /** Changes not in the view yet: the feed told of them, or the session made them. */
  dirty = false;
  /**
   * The next look must be the session's own, not one shared with the account's other
   * sessions here (MailboxSession.changesAfterFeed): what is to be seen is the session's own
   * change (APPEND, COPY into the folder) or came while the feed was down, which a look
   * that started after the feed's last change need not cover.
   */
  lookAlone = false;
  /** SEARCHRES's `$`: uids. */
  saved: number[] = [];

  constructor(
    readonly folder: string,
    readonly readOnly: boolean,
    readonly uidValidity: number,
    readonly id: string,
    readonly view: MailboxView,
    /** The folder's message states on this frontend, shared by its views (and kept while this view is). */
    readonly metas: FolderMetas,
  ) {}

  /** The folder changed and the feed may not have said so (yet): the next look is the session's own. */
  stale(): void {
    this.dirty = true;
    this.lookAlone = true;
  }
}
