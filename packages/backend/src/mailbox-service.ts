import type * as grpc from '@grpc/grpc-js';
import { parseAddress, type Logger } from '@mailgrid/core';
import type { Directory } from '@mailgrid/directory';
import {
  failedPrecondition,
  invalidArgument,
  notFound,
  toServiceError,
  type MailboxHandlers,
} from '@mailgrid/protocol';
import { INBOX, type MailStore, type MessageInfo } from '@mailgrid/store';

export interface MailboxServiceDeps {
  group: string;
  directory: Directory;
  store: MailStore;
  chunkBytes: number;
  log: Logger;
}

/** Reading and deleting an account's messages (CLI now, POP3 and IMAP later). */
export function mailboxHandlers(deps: MailboxServiceDeps): MailboxHandlers {
  const account = async (address: string): Promise<string> => {
    const a = parseAddress(address);
    if (!a) throw invalidArgument(`invalid address: ${address}`);
    const res = await deps.directory.resolve(a);
    if (res.kind !== 'account') throw notFound(`no such account: ${a.key}`);
    if (res.group !== deps.group) throw failedPrecondition(`account ${res.account} is in hosting group ${res.group}, not ${deps.group}`);
    return res.account;
  };
  const wire = (m: MessageInfo) => ({ folder: m.folder, uid: m.uid, size: m.size, receivedAtMs: m.receivedAt, flags: m.flags });

  return {
    List(call, callback) {
      account(call.request.account)
        .then((acct) => callback(null, { messages: deps.store.list(acct, call.request.folder || INBOX).map(wire) }))
        .catch((err) => callback(toServiceError(err)));
    },

    Fetch(call: grpc.ServerWritableStream<any, any>) {
      const { folder, uid } = call.request;
      account(call.request.account)
        .then((acct) => {
          const found = deps.store.fetch(acct, folder || INBOX, uid);
          if (!found) throw notFound(`no message ${uid} in ${acct}/${folder || INBOX}`);
          call.write({ info: wire(found.info) });
          for (let i = 0; i < found.body.length; i += deps.chunkBytes) call.write({ chunk: found.body.subarray(i, i + deps.chunkBytes) });
          call.end();
        })
        .catch((err) => call.destroy(Object.assign(new Error(String((err as Error).message)), toServiceError(err))));
    },

    Delete(call, callback) {
      account(call.request.account)
        .then((acct) => deps.store.delete(acct, call.request.folder || INBOX, call.request.uids))
        .then((deleted) => callback(null, { deleted }))
        .catch((err) => callback(toServiceError(err)));
    },
  };
}
