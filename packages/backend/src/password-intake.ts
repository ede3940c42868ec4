import { normalizeHash, upkeep, type Logger, type Service } from '@mailgrid/core';
import { readPrefix, type Keys } from '@mailgrid/cluster';
import type { Etcd3, IKeyValue } from 'etcd3';

/**
 * Takes the password hashes `account import` left in etcd (`passwords/<address>`) into the
 * stores of the accounts' groups: the primary of each group stores those of its accounts
 * (flushed and replicated like any write) and only then removes the key, guarded by its
 * revision (a newer import of the same address stays for the next pass). An account that
 * already has a password keeps it. Runs every few seconds while this member is primary.
 */
export function passwordIntake(options: {
  client: Etcd3;
  keys: Keys;
  /** True while this member may write its group's store. */
  primary: () => boolean;
  /** Whether the account lives in this member's group now. */
  ours: (address: string) => boolean;
  has: (address: string) => boolean;
  store: (address: string, hash: string) => Promise<void>;
  log: Logger;
}): Service {
  const { client, keys, log } = options;
  return upkeep(
    'password-intake',
    3_000,
    async (running) => {
      if (!options.primary()) return;
      const pending: IKeyValue[] = [];
      await readPrefix(client, keys.passwords, (kv) => {
        if (options.ours(kv.key.toString().slice(keys.passwords.length))) pending.push(kv);
      });
      let taken = 0;
      // In batches: concurrent store writes share one transaction and one flush.
      for (let i = 0; i < pending.length && running(); i += 500) {
        await Promise.all(
          pending.slice(i, i + 500).map(async (kv) => {
            const key = kv.key.toString();
            const address = key.slice(keys.passwords.length);
            const hash = normalizeHash(kv.value.toString());
            if (hash && !options.has(address)) await options.store(address, hash);
            else if (!hash) log.warn({ event: 'password.bad-import', address }, 'imported password hash is not a known format; dropped');
            await client.if(key, 'Mod', '==', String(kv.mod_revision)).then(client.delete().key(key)).commit();
            taken++;
          }),
        );
      }
      if (taken) log.info({ event: 'password.imported', accounts: taken }, 'imported password hashes taken into the store');
    },
    log,
  );
}
