import { MailError, toMailError, type SmtpReply } from '@mailgrid/core';
import type { MessagePort, Transferable } from 'node:worker_threads';

type Call<Q> = { id: number; req: Q };
type Answer<S> = { id: number; res: S } | { id: number; error: { code: string; reply: SmtpReply } };

/**
 * Calls to another thread of the same process over a MessagePort, answered as a gRPC call
 * would be: a MailError comes back as it was thrown, an answer that does not come within
 * `timeoutMs` is the `timeout` error, and a closed port fails what is pending.
 */
export class PortClient<Q, S> {
  private readonly pending = new Map<number, { resolve: (r: S) => void; reject: (e: MailError) => void; timer: NodeJS.Timeout }>();
  private next = 1;

  constructor(
    private readonly port: MessagePort,
    private readonly options: { timeoutMs: number; timeout: () => MailError; gone: (why: string) => MailError },
  ) {
    port.on('message', (a: Answer<S>) => {
      const p = this.pending.get(a.id);
      if (!p) return;
      this.pending.delete(a.id);
      clearTimeout(p.timer);
      if ('error' in a) p.reject(new MailError(a.error.code, a.error.reply));
      else p.resolve(a.res);
    });
    port.on('close', () => this.failAll(options.gone('the other thread is gone')));
    // Pending answers keep the process alive; an idle port does not.
    port.unref();
  }

  /** `transfer`: buffers whose memory moves to the other thread (the caller must not use them again). */
  call(req: Q, transfer: Transferable[] = []): Promise<S> {
    return new Promise((resolve, reject) => {
      const id = this.next++;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(this.options.timeout());
      }, this.options.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.port.postMessage({ id, req } satisfies Call<Q>, transfer);
    });
  }

  close(): void {
    this.failAll(this.options.gone('closed'));
    this.port.close();
  }

  private failAll(err: MailError): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
  }
}

/** The answering end of a PortClient. */
export function servePort<Q, S>(port: MessagePort, handler: (req: Q) => Promise<S>): void {
  port.on('message', ({ id, req }: Call<Q>) => {
    handler(req).then(
      (res) => port.postMessage({ id, res } satisfies Answer<S>),
      (err) => {
        const mail = toMailError(err);
        port.postMessage({ id, error: { code: mail.code, reply: mail.reply } } satisfies Answer<S>);
      },
    );
  });
}
