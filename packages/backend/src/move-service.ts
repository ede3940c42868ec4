import type * as grpc from '@grpc/grpc-js';
import { Replies, type Logger } from '@mailgrid/core';
import type { Directory } from '@mailgrid/directory';
import { proto, toServiceError, type AccountBatch__Output, type AccountMoveHandlers, type GrpcService, type ImportRequest__Output } from '@mailgrid/protocol';
import type { AccountRecord, LmdbMailStore } from '@mailgrid/store';
import { pack, unpack } from 'msgpackr';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { fence } from './mailbox-service.js';

export interface MoveServiceDeps {
  group: string;
  store: LmdbMailStore;
  directory: Directory;
  epoch?: () => number | undefined;
  log: Logger;
}

/** How long a call waits for this member's directory to reach the revision the mover saw. */
const DIRECTORY_WAIT_MS = 10_000;

/**
 * The backend's side of `account move`: export from the group an account leaves, import
 * into the one it joins, purge the copy left behind. Each step checks the account's place
 * in this member's directory once it has caught up with the step before (the mover's
 * revision), so the steps cannot run out of order: the old group exports only an account
 * that is marked as moving (no write reaches it any more), the new one imports only an
 * account on its way to it, and a group purges only an account that is not its own.
 */
export function moveService(deps: MoveServiceDeps): GrpcService {
  const home = (account: string) => deps.directory.home?.(account);
  const caughtUp = async (revision: number) => {
    for (const until = Date.now() + DIRECTORY_WAIT_MS; deps.directory.revision < revision; await sleep(20))
      if (Date.now() > until) throw Replies.directoryBehind(`revision ${revision}`);
  };
  const log = deps.log.child({ component: 'move' });

  const handlers: AccountMoveHandlers = {
    Export(call: grpc.ServerWritableStream<any, AccountBatch__Output>) {
      const { account, to } = call.request;
      (async () => {
        fence(deps.group, deps.epoch, call);
        await caughtUp(Number(call.request.revision));
        const h = home(account);
        if (h?.group !== deps.group || h.movingTo !== to) throw Replies.notMoving(account, `is not marked as moving from ${deps.group} to ${to} here`);
        // Every write that began before the mark reached this member is committed now, and no later one takes the account.
        await deps.store.barrier();
        let messages = 0;
        // A mover that went away never drains the stream.
        const gone = once(call, 'cancelled');
        for (const records of deps.store.exportAccount(account)) {
          messages += records.filter((r) => r.kind === 'message').length;
          if (call.cancelled) return;
          if (!call.write({ records: pack(records) })) await Promise.race([once(call, 'drain'), gone]);
        }
        if (call.cancelled) return;
        log.info({ event: 'move.exported', account, to, messages }, 'account exported');
        call.end();
      })().catch((err) => {
        log.warn({ event: 'move.export-failed', account, to, err }, 'account export failed');
        call.destroy(Object.assign(new Error(String((err as Error).message)), toServiceError(err)));
      });
    },

    Import(call: grpc.ServerReadableStream<ImportRequest__Output, any>, callback) {
      const requests = call[Symbol.asyncIterator]() as AsyncIterator<ImportRequest__Output>;
      let account = '';
      (async () => {
        fence(deps.group, deps.epoch, call);
        const first = await requests.next();
        if (first.done) throw Replies.malformedRequest('no account named');
        ({ account } = first.value);
        await caughtUp(Number(first.value.revision));
        const h = home(account);
        if (h?.group !== first.value.from || h.movingTo !== deps.group) throw Replies.notMoving(account, `is not marked as moving from ${first.value.from} to ${deps.group} here`);
        async function* batches(): AsyncGenerator<AccountRecord[]> {
          for (let r: IteratorResult<ImportRequest__Output> = first; !r.done; r = await requests.next()) if (r.value.records?.length) yield unpack(r.value.records) as AccountRecord[];
        }
        const done = await deps.store.importAccount(account, batches());
        log.info({ event: 'move.imported', account, from: first.value.from, ...done }, 'account imported');
        return done;
      })().then(
        (done) => callback(null, done),
        (err) => {
          log.warn({ event: 'move.import-failed', account, err }, 'account import failed');
          callback(toServiceError(err));
        },
      );
    },

    Purge(call, callback) {
      const { account } = call.request;
      (async () => {
        fence(deps.group, deps.epoch, call);
        await caughtUp(Number(call.request.revision));
        const h = home(account);
        if (h?.group === deps.group) throw Replies.notMoving(account, `is still an account of ${deps.group}: not purged`);
        const messages = await deps.store.purgeAccount(account);
        log.info({ event: 'move.purged', account, messages }, "moved account's old copy removed");
        return { messages };
      })().then(
        (res) => callback(null, res),
        (err) => callback(toServiceError(err)),
      );
    },
  };
  return { name: 'AccountMove', definition: proto.AccountMove.service, handlers: handlers as never };
}
