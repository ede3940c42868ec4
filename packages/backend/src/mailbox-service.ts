import type * as grpc from '@grpc/grpc-js';
import { Replies, type Logger } from '@mailgrid/core';
import type { Router } from '@mailgrid/mailflow';
import { proto, toServiceError, traceFromMetadata, type GrpcService, type MailboxHandlers } from '@mailgrid/protocol';
import { INBOX, type MailStore, type MessageInfo } from '@mailgrid/store';

export interface MailboxServiceDeps {
  group: string;
  router: Router;
  store: MailStore;
  chunkBytes: number;
  /** The epoch while this member is its group's primary (a cluster member); absent: not fenced. */
  epoch?: () => number | undefined;
  log: Logger;
}

/**
 * A fenced member (`epoch`) serves only while it is its group's primary, and a write (`call`)
 * only when the call carries its current epoch.
 */
export function fence(group: string, epoch: (() => number | undefined) | undefined, write?: { metadata: grpc.Metadata }): void {
  if (!epoch) return;
  const current = epoch();
  if (current === undefined) throw Replies.notPrimary(group);
  const sent = write && Number(traceFromMetadata(write.metadata).epoch);
  if (write && sent !== current) throw Replies.staleEpoch(Number(sent) || 0, current);
}

/**
 * The account an address names, if this backend's group holds it; else the admin answer why
 * not. A fenced member (`epoch`) answers only while it is the primary, and a write only when
 * the call carries its epoch: a replica or a deposed primary never serves what could diverge.
 */
export function ownedAccount(router: Router, group: string, epoch?: () => number | undefined): (address: string, call?: { metadata: grpc.Metadata }) => Promise<string> {
  return async (address, write) => {
    fence(group, epoch, write);
    const route = await router.route(address);
    if (route.kind === 'tempfail') throw route.reason;
    if (route.kind !== 'local') throw route.kind === 'unknown' && route.reason.code === 'BAD_ADDRESS' ? Replies.invalidAddress(address) : Replies.noSuchAccount(address);
    if (route.group !== group) throw Replies.accountInOtherGroup(route.account, route.group, group);
    return route.account;
  };
}

/** Reading and deleting an account's messages (CLI now, POP3 and IMAP later). */
export function mailboxService(deps: MailboxServiceDeps): GrpcService {
  const account = ownedAccount(deps.router, deps.group, deps.epoch);
  const wire = (m: MessageInfo) => ({ folder: m.folder, uid: m.uid, size: m.size, receivedAtMs: m.receivedAt, flags: m.flags });

  const handlers: MailboxHandlers = {
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
          if (!found) throw Replies.noSuchMessage(acct, folder || INBOX, uid);
          call.write({ info: wire(found.info) });
          for (let i = 0; i < found.body.length; i += deps.chunkBytes) call.write({ chunk: found.body.subarray(i, i + deps.chunkBytes) });
          call.end();
        })
        .catch((err) => call.destroy(Object.assign(new Error(String((err as Error).message)), toServiceError(err))));
    },

    Delete(call, callback) {
      account(call.request.account, call)
        .then((acct) => deps.store.delete(acct, call.request.folder || INBOX, call.request.uids))
        .then((deleted) => callback(null, { deleted }))
        .catch((err) => callback(toServiceError(err)));
    },
  };
  return { name: 'Mailbox', definition: proto.Mailbox.service, handlers: handlers as never };
}
