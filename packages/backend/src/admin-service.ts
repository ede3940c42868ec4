import type { DirectoryAdmin } from '@mailgrid/directory';
import { proto, toServiceError, type AdminHandlers, type GrpcService } from '@mailgrid/protocol';

/** Directory administration of a node that owns its directory (the single node), for the CLI. */
export function adminService(admin: DirectoryAdmin, defaultGroup: string): GrpcService {
  const reply = <T>(work: () => Promise<T>, callback: (err: any, value?: T) => void) =>
    work().then(
      (v) => callback(null, v),
      (err) => callback(toServiceError(err)),
    );
  const handlers: AdminHandlers = {
    AddDomain: (call, cb) => reply(async () => (await admin.addDomain(call.request.domain), {}), cb),
    RemoveDomain: (call, cb) => reply(async () => (await admin.removeDomain(call.request.domain), {}), cb),
    ListDomains: (_call, cb) => reply(async () => ({ domains: await admin.listDomains() }), cb),
    AddAccount: (call, cb) => reply(async () => (await admin.addAccount(call.request.address, call.request.group || defaultGroup), {}), cb),
    RemoveAccount: (call, cb) => reply(async () => (await admin.removeAccount(call.request.address), {}), cb),
    ListAccounts: (call, cb) => reply(async () => ({ accounts: await admin.listAccounts(call.request.domain || undefined) }), cb),
    AddAlias: (call, cb) => reply(async () => (await admin.addAlias(call.request.alias, call.request.target), {}), cb),
    RemoveAlias: (call, cb) => reply(async () => (await admin.removeAlias(call.request.alias), {}), cb),
    ListAliases: (call, cb) => reply(async () => ({ aliases: await admin.listAliases(call.request.domain || undefined) }), cb),
  };
  return { name: 'Admin', definition: proto.Admin.service, handlers: handlers as never };
}
