import { DirectoryError, type DirectoryAdmin } from '@mailgrid/directory';
import {
  alreadyExists,
  failedPrecondition,
  invalidArgument,
  notFound,
  toServiceError,
  type AdminHandlers,
} from '@mailgrid/protocol';

/** Directory administration of a single node, for the CLI. */
export function adminHandlers(admin: DirectoryAdmin, defaultGroup: string): AdminHandlers {
  const reply = <T>(work: () => Promise<T>, callback: (err: any, value?: T) => void) =>
    work().then(
      (v) => callback(null, v),
      (err) => callback(toServiceError(asMailError(err))),
    );
  return {
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
}

function asMailError(err: unknown): unknown {
  if (!(err instanceof DirectoryError)) return err;
  switch (err.code) {
    case 'INVALID_ARGUMENT':
      return invalidArgument(err.message);
    case 'NOT_FOUND':
      return notFound(err.message);
    case 'ALREADY_EXISTS':
      return alreadyExists(err.message);
    case 'FAILED_PRECONDITION':
      return failedPrecondition(err.message);
  }
}
