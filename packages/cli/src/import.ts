import { normalizeHash, parseAddress } from '@mailgrid/core';
import type { ClusterAdmin } from './clients/cluster-admin.js';

/** One account to load: JSON lines `{"address","group","passwordHash"}` or CSV `address,group[,hash]`. */
export interface ImportLine {
  line: number;
  address: string;
  group: string;
  passwordHash?: string;
}

export interface ImportReport {
  loaded: number;
  /** Already there in the same group: nothing to do (an import runs again safely). */
  unchanged: number;
  bad: { line: number; reason: string }[];
}


/** Parses one line; a string is the reason it is bad. Blank lines and `#` comments are skipped (undefined). */
export function parseImportLine(text: string, line: number): ImportLine | string | undefined {
  const t = text.trim();
  if (!t || t.startsWith('#')) return undefined;
  let fields: { address?: unknown; group?: unknown; passwordHash?: unknown };
  if (t.startsWith('{')) {
    try {
      fields = JSON.parse(t);
    } catch {
      return 'not valid JSON';
    }
  } else {
    const [address, group, passwordHash] = t.split(',').map((s) => s.trim());
    if (address === 'address') return undefined; // a CSV header
    fields = { address, group, passwordHash: passwordHash || undefined };
  }
  const address = typeof fields.address === 'string' ? parseAddress(fields.address) : undefined;
  if (!address) return `not an address: ${JSON.stringify(fields.address ?? '')}`;
  if (typeof fields.group !== 'string' || !/^[A-Za-z0-9._-]+$/.test(fields.group)) return `no valid group for ${address.key}`;
  // Dovecot's bcrypt (BLF-CRYPT) and SHA512-CRYPT, argon2id or scrypt, with or without its {SCHEME} prefix.
  const hash = fields.passwordHash === undefined ? undefined : typeof fields.passwordHash === 'string' ? normalizeHash(fields.passwordHash) : undefined;
  if (fields.passwordHash !== undefined && !hash) return `password hash of ${address.key} is not bcrypt, SHA512-CRYPT, argon2id or scrypt`;
  return { line, address: address.key, group: fields.group, passwordHash: hash };
}

/**
 * Loads accounts into the cluster directory in batched etcd transactions, several at once.
 * What etcd holds is read first: an account already in the same group is left as it is, one
 * in another group is a bad line (moving is `account move`), as are unknown domains and
 * groups. Each batch creates only keys that do not exist yet (a transaction guarded per key);
 * one that loses a race with another writer is done again key by key.
 */
export async function importAccounts(admin: ClusterAdmin, open: () => AsyncIterable<string>): Promise<ImportReport> {
  // etcd allows 128 operations per transaction: an account and its password hash are two.
  const batchSize = 64;
  const report: ImportReport = { loaded: 0, unchanged: 0, bad: [] };
  const [domains, groups, existing] = await Promise.all([admin.directory.listDomains(), admin.groupNames(), admin.accountGroups()]);
  const hosted = new Set(domains);
  const known = new Set(groups);
  const seen = new Map<string, number>();
  let batch: ImportLine[] = [];
  let n = 0;
  const running = new Set<Promise<void>>();
  // A batch that fails (etcd unreachable) ends the import once the others have settled.
  let failed: unknown;
  const flush = async () => {
    if (!batch.length || failed) return;
    const b = batch;
    batch = [];
    const p = writeBatch(admin, b, report)
      .catch((err) => void (failed ??= err))
      .finally(() => running.delete(p));
    running.add(p);
    if (running.size >= 8) await Promise.race(running);
  };
  // Opened only now: a line reader started before the reads above would have emitted lines nobody heard.
  for await (const text of open()) {
    n++;
    const parsed = parseImportLine(text, n);
    if (parsed === undefined) continue;
    if (typeof parsed === 'string') {
      report.bad.push({ line: n, reason: parsed });
      continue;
    }
    const domain = parsed.address.split('@')[1];
    const before = existing.get(parsed.address);
    const first = seen.get(parsed.address);
    if (first !== undefined) report.bad.push({ line: n, reason: `${parsed.address} is on line ${first} already` });
    else if (!hosted.has(domain)) report.bad.push({ line: n, reason: `domain ${domain} is not hosted (mailgrid domain add ${domain})` });
    else if (!known.has(parsed.group)) report.bad.push({ line: n, reason: `no hosting group ${parsed.group}` });
    else if (before === parsed.group) report.unchanged++;
    else if (before !== undefined) report.bad.push({ line: n, reason: `${parsed.address} is in group ${before} (move it with: mailgrid account move)` });
    else {
      batch.push(parsed);
      if (batch.length >= batchSize) await flush();
    }
    seen.set(parsed.address, first ?? n);
  }
  await flush();
  await Promise.all(running);
  if (failed) throw failed;
  report.bad.sort((a, b) => a.line - b.line);
  return report;
}

async function writeBatch(admin: ClusterAdmin, lines: ImportLine[], report: ImportReport): Promise<void> {
  const { client, keys } = admin;
  const key = (l: ImportLine) => {
    const [local, domain] = l.address.split('@');
    return keys.account(domain, local);
  };
  const puts = (l: ImportLine) => [
    client.put(key(l)).value(JSON.stringify({ group: l.group })),
    ...(l.passwordHash ? [client.put(keys.password(l.address)).value(l.passwordHash)] : []),
  ];
  // Each key is new and its domain still exists (as `account add` checks), in the same transaction.
  const domainOf = (l: ImportLine) => l.address.slice(l.address.lastIndexOf('@') + 1);
  const guarded = (batch: ImportLine[]) => {
    let txn = client.if(key(batch[0]), 'Create', '==', 0);
    for (const l of batch.slice(1)) txn = txn.and(key(l), 'Create', '==', 0);
    for (const d of new Set(batch.map(domainOf))) txn = txn.and(keys.domain(d), 'Create', '>', 0);
    return txn;
  };
  const res = await guarded(lines).then(...lines.flatMap(puts)).commit();
  if (res.succeeded) {
    report.loaded += lines.length;
    return;
  }
  // Someone else wrote one of these, or removed a domain, meanwhile: key by key.
  for (const l of lines) {
    const one = await guarded([l]).then(...puts(l)).commit();
    if (one.succeeded) report.loaded++;
    else if (!(await client.get(keys.domain(domainOf(l))).exec()).kvs.length) report.bad.push({ line: l.line, reason: `domain ${domainOf(l)} was removed meanwhile` });
    else report.bad.push({ line: l.line, reason: `${l.address} was added meanwhile by someone else` });
  }
}
