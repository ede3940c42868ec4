import type { Primary } from '@mailgrid/directory';
import { createAccountMoveClient, type AccountBatch__Output, type AccountMoveClient } from '@mailgrid/protocol';
import { once } from 'node:events';
import { failed, fenced, unary } from './node-admin.js';

/** The AccountMove service of one group's primary (calls carry its epoch). */
export class MoveClient {
  private readonly client: AccountMoveClient;

  constructor(private readonly primary: Primary) {
    this.client = createAccountMoveClient(primary.address);
  }

  /**
   * Pipes the account from this primary (the group it leaves) into `into` (the primary of
   * the group it joins); resolves with what the import took once it is on disk there.
   */
  copy(into: MoveClient, req: { account: string; from: string; to: string; revision: number }): Promise<{ messages: number; bytes: number }> {
    return new Promise((resolve, reject) => {
      const exp = this.client.Export({ account: req.account, to: req.to, revision: req.revision }, fenced(this.primary));
      const imp = into.client.Import(fenced(into.primary), (err, res) => {
        if (err) {
          exp.cancel();
          reject(failed(err, into.primary.address));
        } else resolve({ messages: Number(res!.messages), bytes: Number(res!.bytes) });
      });
      imp.write({ account: req.account, from: req.from, revision: req.revision });
      exp.on('error', (err) => {
        // The import must not finish on part of the account: cancelled, it is replaced by the next try.
        imp.cancel();
        reject(failed(err, this.primary.address));
      });
      (async () => {
        for await (const batch of exp as AsyncIterable<AccountBatch__Output>) if (!imp.write({ records: batch.records })) await once(imp, 'drain');
        imp.end();
      })().catch(() => undefined);
    });
  }

  async purge(account: string, revision: number): Promise<number> {
    const res = await unary<unknown, { messages: number | string }>(this.primary.address, this.client.Purge.bind(this.client) as never, { account, revision }, fenced(this.primary));
    return Number(res.messages);
  }

  close(): void {
    this.client.close();
  }
}
