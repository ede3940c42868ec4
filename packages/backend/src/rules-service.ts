import { Replies } from '@mailgrid/core';
import type { Router } from '@mailgrid/mailflow';
import { proto, toServiceError, type GrpcService, type RulesHandlers } from '@mailgrid/protocol';
import { parseSieve, SieveError } from '@mailgrid/rules';
import type { MailStore } from '@mailgrid/store';
import { ownedAccount } from './mailbox-service.js';

/**
 * An account's rules on the backend that owns it (`mailgrid rules set|get`). A script is
 * checked before it is saved: one that does not parse is refused with its line and column,
 * and the rules in force stay.
 */
export function rulesService(deps: { group: string; router: Router; store: MailStore; epoch?: () => number | undefined }): GrpcService {
  const account = ownedAccount(deps.router, deps.group, deps.epoch);
  const handlers: RulesHandlers = {
    Set(call, callback) {
      const { script } = call.request;
      account(call.request.account, call)
        .then(async (acct) => {
          if (script.trim()) {
            try {
              parseSieve(script);
            } catch (err) {
              throw err instanceof SieveError ? Replies.badScript(err.message) : err;
            }
          }
          await deps.store.setRules(acct, script.trim() ? script : undefined);
          callback(null, { account: acct, script });
        })
        .catch((err) => callback(toServiceError(err)));
    },
    Get(call, callback) {
      account(call.request.account)
        .then((acct) => callback(null, { account: acct, script: deps.store.rules(acct) ?? '' }))
        .catch((err) => callback(toServiceError(err)));
    },
  };
  return { name: 'Rules', definition: proto.Rules.service, handlers: handlers as never };
}
