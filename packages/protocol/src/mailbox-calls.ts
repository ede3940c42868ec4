import * as grpc from '@grpc/grpc-js';
import { MailError, Replies } from '@mailgrid/core';
import type { MailboxClient } from './generated/mailgrid/v1/Mailbox.js';
import type { FetchChunk__Output } from './generated/mailgrid/v1/FetchChunk.js';
import type { ListResponse__Output } from './generated/mailgrid/v1/ListResponse.js';
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
