import { accountValue, jsonValue, readPrefix, type AccountValue } from '@mailgrid/cluster';
import { Replies } from '@mailgrid/core';
import { checkedAddress, checkedDomain, type Primary } from '@mailgrid/directory';
import type { ClusterAdmin } from './clients/cluster-admin.js';
import { MoveClient } from './clients/move-client.js';
import { CliError, message } from './errors.js';

export interface MoveOptions {
  to?: string;
  /** Finish a move that was interrupted or failed. */
  resume?: boolean;
  /** Undo a move that has not switched yet: the account stays where it was. */
  abort?: boolean;
}

export interface MoveReport {
  account: string;
  from: string;
  to: string;
  /** What was done: the whole move, the rest of an interrupted one, or an abort. */
  done: 'moved' | 'resumed' | 'aborted';
  messages: number;
  bytes: number;
  ms: number;
}

/**
 * `account move`: an account goes from its hosting group to another, with its mail,
 * folders, flags, rules, vacation marks and idempotency keys. Every step is recorded in
 * the account's directory value, so an interrupted move can be resumed or aborted:
 * 1. mark `moving: {to}` (guarded by the value's revision): the old group takes no more
 *    writes for the account, and its mail is deferred (451 4.2.0, it waits in the queues);
 * 2. copy: the old primary exports the account once every write begun before the mark is
 *    committed, the new one imports it (replicated like any write, replacing what an
 *    earlier try left);
 * 3. switch to `{group: to, purge: from}` in one transaction guarded by the mark's
 *    revision: mail goes to the new group from here;
 * 4. purge the old copy, then drop `purge`.
 * A failure before the switch leaves the account in its group (still marked, its mail
 * waiting) until `--resume` or `--abort`; after it, `--resume` finishes the purge. An
 * abort records the target's partial copy as `purge` before it clears the mark, so a
 * failed abort is finished by `--resume` too.
 */
export async function moveAccount(admin: ClusterAdmin, address: string, opts: MoveOptions): Promise<MoveReport> {
  const started = Date.now();
  const a = checkedAddress(address);
  const account = a.key;
  const key = admin.keys.account(a.domain, account.slice(0, account.lastIndexOf('@')));
  const clients = new Map<string, MoveClient>();
  const primaries = new Map((await admin.groupViews()).map((g) => [g.name, g.leader] as const));
  /** The AccountMove client of a group's primary; throws when the group has none now. */
  const mover = (group: string) => {
    let c = clients.get(group);
    if (c) return c;
    const leader = primaries.get(group);
    if (!primaries.has(group)) throw Replies.noSuchGroup(group);
    if (!leader) throw new CliError(`hosting group ${group} has no elected primary now; try again once it has`);
    clients.set(group, (c = new MoveClient({ address: leader.address, epoch: leader.epoch } satisfies Primary)));
    return c;
  };
  /** Writes the next step's value if nothing changed the account since `revision`; returns the new revision. */
  const step = async (revision: number, next: AccountValue) => {
    const res = await admin.client.if(key, 'Mod', '==', revision).then(admin.client.put(key).value(JSON.stringify(next))).commit();
    if (!res.succeeded) throw new CliError(`${account} was changed by someone else during the move; see where it is with: mailgrid account list ${a.domain}`);
    return Number(res.header.revision);
  };

  try {
    const kv = (await admin.client.get(key).exec()).kvs[0];
    if (!kv) throw Replies.noSuchAccount(account);
    let value: AccountValue;
    try {
      value = jsonValue(accountValue, kv);
    } catch (err) {
      throw new CliError(`the directory value of ${account} does not parse (${(err as Error).message}); fix it in etcd first`);
    }
    let revision = Number(kv.mod_revision);
    const report = (done: MoveReport['done'], from: string, to: string, copied = { messages: 0, bytes: 0 }): MoveReport => ({ account, from, to, done, ...copied, ms: Date.now() - started });

    if (opts.abort) {
      if (!value.moving) throw value.purge ? Replies.notMoving(account, `has a copy in ${value.purge} still to remove: finish with --resume`) : Replies.noMoveUnderWay(account);
      const to = value.moving.to;
      // The target's partial copy is recorded as still to remove before the mark goes, so a
      // failed purge is finished by --resume.
      mover(to);
      revision = await step(revision, { group: value.group, purge: to });
      await mover(to).purge(account, revision);
      await step(revision, { group: value.group });
      return report('aborted', value.group, to);
    }

    const underWay = value.moving?.to ?? value.purge;
    if (underWay !== undefined && !opts.resume) throw Replies.moveUnderWay(account, value.moving ? value.moving.to : value.group);
    if (underWay === undefined && opts.resume) throw Replies.noMoveUnderWay(account);
    if (value.moving && opts.to && opts.to !== value.moving.to) throw Replies.moveUnderWay(account, value.moving.to);
    const done = opts.resume ? 'resumed' : 'moved';

    if (!underWay) {
      if (!opts.to) throw new CliError('give the group to move to: --to <group>');
      if (opts.to === value.group) throw new CliError(`${account} is in group ${opts.to} already`);
      // Both primaries reachable before the account's mail is deferred.
      mover(value.group);
      mover(opts.to);
      value = { group: value.group, moving: { to: opts.to } };
      revision = await step(revision, value);
    }

    let copied = { messages: 0, bytes: 0 };
    const from = value.purge ?? value.group;
    if (value.moving) {
      const to = value.moving.to;
      try {
        copied = await mover(from).copy(mover(to), { account, from, to, revision });
      } catch (err) {
        throw new CliError(
          `moving ${account} to ${to} failed while copying: ${(err as Error).message}\n` +
            `${account} stays in ${from} (its mail waits in the queues); finish with: mailgrid account move ${account} --resume, or undo with --abort`,
        );
      }
      value = { group: to, purge: from };
      revision = await step(revision, value);
    }
    await mover(from).purge(account, revision);
    await step(revision, { group: value.group });
    return report(done, from, value.group, copied);
  } finally {
    for (const c of clients.values()) c.close();
  }
}

/** `domain move`: each account of the domain not yet in `to` is moved (one with a move there under way is resumed). */
export async function moveDomain(admin: ClusterAdmin, domain: string, to: string, each: (r: MoveReport | { account: string; error: string }) => void): Promise<{ moved: number; failed: number }> {
  const d = checkedDomain(domain);
  if (!(await admin.directory.listDomains()).includes(d)) throw Replies.noSuchDomain(d);
  const accounts: { account: string; value: AccountValue }[] = [];
  let moved = 0;
  let failed = 0;
  await readPrefix(admin.client, admin.keys.accountsOf(d), (kv) => {
    try {
      accounts.push({ account: `${kv.key.toString().slice(admin.keys.accountsOf(d).length)}@${d}`, value: accountValue.parse(JSON.parse(kv.value.toString())) });
    } catch {
      each({ account: kv.key.toString(), error: 'its directory value does not parse: fix it first' });
      failed++;
    }
  });
  for (const { account, value } of accounts) {
    if (value.group === to && !value.moving && !value.purge) continue;
    try {
      const resume = value.moving?.to === to || (value.group === to && value.purge !== undefined);
      each(await moveAccount(admin, account, resume ? { resume } : { to }));
      moved++;
    } catch (err) {
      each({ account, error: message(err) });
      failed++;
    }
  }
  return { moved, failed };
}
