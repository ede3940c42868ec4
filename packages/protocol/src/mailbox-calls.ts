import * as grpc from '@grpc/grpc-js';
import { MailError, Replies } from '@mailgrid/core';
import type { MailboxClient } from './generated/mailgrid/v1/Mailbox.js';
import type { FetchChunk__Output } from './generated/mailgrid/v1/FetchChunk.js';
import type { ListResponse__Output } from './generated/mailgrid/v1/ListResponse.js';
import type { MailboxesResponse__Output } from './generated/mailgrid/v1/MailboxesResponse.js';
import type { FolderInfo__Output } from './generated/mailgrid/v1/FolderInfo.js';
import type { SelectResponse__Output } from './generated/mailgrid/v1/SelectResponse.js';
import type { StoreFlagsResponse__Output } from './generated/mailgrid/v1/StoreFlagsResponse.js';
import type { CopyResponse__Output } from './generated/mailgrid/v1/CopyResponse.js';
import type { SearchResponse__Output } from './generated/mailgrid/v1/SearchResponse.js';
import type { QuotaResponse__Output } from './generated/mailgrid/v1/QuotaResponse.js';
import type { MailboxChange__Output } from './generated/mailgrid/v1/MailboxChange.js';
import type { MessageInfo__Output } from './generated/mailgrid/v1/MessageInfo.js';
import { fromServiceError } from './status.js';
import { deadline, traceMetadata, type Trace } from './trace.js';

/** A mailbox that one access session holds at its group's primary (see Mailbox.Hold). */
export interface MailboxHold {
  /** Settles when the hold ends without `release` (the primary changed or stopped, or the call broke). */
  readonly lost: Promise<void>;
  /** Resolves once the primary has let go (so the next session finds the mailbox free). */
  release(): Promise<void>;
}

/**
 * Calls to the Mailbox service of a group's primary, as the CLI and the frontends' access
 * sessions make them: every call carries the primary's epoch (a write reaches only the
 * member elected in it) and a deadline; a failure is the MailError the other side sent, or
 * what the transport fault means (`explain` may word it for a person).
 */
export class MailboxCalls {
  constructor(
    private readonly client: MailboxClient,
    private readonly primary: { address: string; epoch: number },
    private readonly options: { timeoutMs: number; trace?: Trace; explain?: (err: unknown) => Error },
  ) {}

  /** The epoch of the primary these calls are bound to. */
  get epoch(): number {
    return this.primary.epoch;
  }

  private get metadata(): grpc.Metadata {
    return traceMetadata({ ...this.options.trace, epoch: String(this.primary.epoch) });
  }

  private failed(err: unknown): Error {
    return this.options.explain ? this.options.explain(err) : fromServiceError(err, 'mailbox');
  }

  private unary<Res>(method: string, req: object): Promise<Res> {
    const fn = (this.client as any)[method].bind(this.client);
    return new Promise((resolve, reject) =>
      fn(req, this.metadata, { deadline: deadline(this.options.timeoutMs) }, (err: unknown, res: Res) => (err ? reject(this.failed(err)) : resolve(res))),
    );
  }

  list(account: string, folder = ''): Promise<ListResponse__Output> {
    return this.unary('List', { account, folder });
  }

  fetch(account: string, uid: number, folder = ''): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const stream = this.client.Fetch({ account, uid, folder }, this.metadata, { deadline: deadline(this.options.timeoutMs) });
      stream.on('data', (c: FetchChunk__Output) => c.chunk && chunks.push(c.chunk));
      stream.on('error', (err) => reject(this.failed(err)));
      stream.on('end', () => resolve(Buffer.concat(chunks)));
    });
  }

  /**
   * Several messages of a folder, whole or their header blocks only, in the order asked;
   * one expunged since is left out.
   */
  fetchMany(account: string, folder: string, uids: number[], headerOnly: boolean): Promise<{ info: MessageInfo__Output; body: Buffer }[]> {
    return new Promise((resolve, reject) => {
      const out: { info: MessageInfo__Output; body: Buffer }[] = [];
      let chunks: Buffer[] = [];
      const stream = this.client.Fetch({ account, folder, uids, headerOnly }, this.metadata, { deadline: deadline(this.options.timeoutMs) });
      const close = () => {
        if (out.length) out[out.length - 1].body = Buffer.concat(chunks);
        chunks = [];
      };
      stream.on('data', (c: FetchChunk__Output) => {
        if (c.info) {
          close();
          out.push({ info: c.info, body: Buffer.alloc(0) });
        } else if (c.chunk) chunks.push(c.chunk);
      });
      stream.on('error', (err) => reject(this.failed(err)));
      stream.on('end', () => {
        close();
        resolve(out);
      });
    });
  }

  // ---- IMAP ---------------------------------------------------------------------------

  /** The account's folders, its default ones made first if missing (an IMAP login). */
  open(account: string): Promise<MailboxesResponse__Output> {
    return this.unary('Open', { account });
  }

  mailboxes(account: string): Promise<MailboxesResponse__Output> {
    return this.unary('Mailboxes', { account });
  }

  createMailbox(account: string, name: string, specialUse = ''): Promise<FolderInfo__Output> {
    return this.unary('CreateMailbox', { account, name, specialUse });
  }

  deleteMailbox(account: string, name: string): Promise<MailboxesResponse__Output> {
    return this.unary('DeleteMailbox', { account, name });
  }

  renameMailbox(account: string, from: string, to: string): Promise<MailboxesResponse__Output> {
    return this.unary('RenameMailbox', { account, from, to });
  }

  subscribe(account: string, name: string, on: boolean): Promise<MailboxesResponse__Output> {
    return this.unary('Subscribe', { account, name, on });
  }

  select(account: string, folder: string, changedSince = 0): Promise<SelectResponse__Output> {
    return this.unary('Select', { account, folder, changedSince });
  }

  storeFlags(account: string, folder: string, uids: number[], op: 'add' | 'remove' | 'replace', flags: string[], unchangedSince?: number): Promise<StoreFlagsResponse__Output> {
    return this.unary('StoreFlags', { account, folder, uids, op, flags, unchangedSince: unchangedSince ?? 0, hasUnchangedSince: unchangedSince !== undefined });
  }

  /** EXPUNGE (`uids` undefined) or UID EXPUNGE; the uids that went. */
  async expunge(account: string, folder: string, uids?: number[]): Promise<number[]> {
    return (await this.unary<{ uids: number[] }>('Expunge', { account, folder, uids: uids ?? [], all: !uids })).uids;
  }

  copy(account: string, from: string, to: string, uids: number[], move: boolean): Promise<CopyResponse__Output> {
    return this.unary('Copy', { account, from, to, uids, move });
  }

  /** APPEND: the message in chunks (no frame as large as the message). */
  append(account: string, folder: string, flags: string[], receivedAt: number, body: Buffer, chunkBytes = 64 * 1024): Promise<{ uid: number; uidValidity: number }> {
    return new Promise((resolve, reject) => {
      const call = this.client.Append(this.metadata, { deadline: deadline(this.options.timeoutMs) }, (err, res) => (err ? reject(this.failed(err)) : resolve({ uid: res!.uid, uidValidity: res!.uidValidity })));
      for (let at = 0; at === 0 || at < body.length; at += chunkBytes)
        call.write(at === 0 ? { account, folder, flags, receivedAtMs: receivedAt, size: body.length, chunk: body.subarray(0, chunkBytes) } : { chunk: body.subarray(at, at + chunkBytes) });
      call.end();
    });
  }

  search(account: string, folder: string, request: { key: string; sort?: string; thread?: string; scope: number[]; saved?: number[] }): Promise<SearchResponse__Output> {
    return this.unary('Search', { account, folder, sort: '', thread: '', saved: [], ...request });
  }

  quota(account: string): Promise<QuotaResponse__Output> {
    return this.unary('Quota', { account });
  }

  setQuota(account: string, limit: number): Promise<QuotaResponse__Output> {
    return this.unary('SetQuota', { account, limit });
  }

  /**
   * The account's changes after `fromModseq`, as the primary makes them durable; `ended`
   * hears when the feed stops (the primary changed or stopped, or `close`). No deadline: it
   * lives on the channel's keepalive, as a hold does.
   */
  watch(account: string, fromModseq: number, on: { change(c: MailboxChange__Output): void; ended(err?: Error): void }): { close(): void } {
    const call = this.client.Watch({ account, fromModseq }, this.metadata);
    let done = false;
    const end = (err?: Error) => {
      if (done) return;
      done = true;
      on.ended(err);
    };
    call.on('data', (c: MailboxChange__Output) => on.change(c));
    call.on('error', (err) => end(this.failed(err)));
    call.on('end', () => end());
    return {
      close: () => {
        done = true;
        call.cancel();
      },
    };
  }

  async delete(account: string, uids: number[], folder = ''): Promise<number> {
    return (await this.unary<{ deleted: number }>('Delete', { account, folder, uids })).deleted;
  }

  authenticate(user: string, password: string): Promise<{ ok: boolean; account: string; cached: boolean }> {
    return this.unary('Authenticate', { user, password });
  }

  async setPassword(account: string, hash: string): Promise<void> {
    await this.unary('SetPassword', { account, hash });
  }

  /**
   * Resolves once the mailbox is held: `shared` holds never conflict, an exclusive one
   * rejects with MAILBOX_IN_USE while another exclusive session holds it. The grant has the
   * call's deadline; the hold itself lives as long as the session, with no deadline: the
   * channels' keepalive (10 s pings, 5 s to answer, on both sides) ends it when either peer
   * vanishes without a FIN, so neither a session nor a primary waits on a dead one.
   */
  hold(account: string, holder: string, shared = false): Promise<MailboxHold> {
    return new Promise((resolve, reject) => {
      const call = this.client.Hold({ account, holder, shared }, this.metadata);
      let held = false;
      let released = false;
      let lose!: () => void;
      const lost = new Promise<void>((r) => (lose = r));
      const grant = setTimeout(() => {
        call.cancel();
        end(Replies.timeout('mailbox hold'));
      }, this.options.timeoutMs);
      const end = (err?: unknown) => {
        clearTimeout(grant);
        if (!held) {
          held = true;
          released = true;
          reject(err && MailError.is(err) ? err : this.failed(err ?? new Error('hold ended before it was granted')));
        } else if (!released) lose();
      };
      call.on('data', () => {
        if (held) return;
        held = true;
        clearTimeout(grant);
        resolve({
          lost,
          // The server ends the stream; cancelling is only the fallback (see Mailbox.Release).
          release: async () => {
            if (released) return;
            released = true;
            await this.unary('Release', { account, holder }).catch(() => call.cancel());
          },
        });
      });
      call.on('error', (err) => end(err));
      call.on('end', () => end());
    });
  }
}
