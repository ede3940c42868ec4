import { CodedError, Replies, toCodedError, type AdminError, type MailError } from '@mailgrid/core';
import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleType, handleWhen, isBrokenCircuitError, retry } from 'cockatiel';
import {
  EtcdWatchStreamEnded,
  Etcd3,
  GRPCDeadlineExceededError,
  GRPCResourceExhastedError,
  GRPCUnavailableError,
  isRecoverableError,
  type IKeyValue,
} from 'etcd3';
import { prefixEnd } from './keys.js';

/**
 * An etcd client tuned for a mail cluster: every unary call has a 5 s deadline, a broken
 * host is skipped for 2 s, and watches reconnect within 2 s once etcd is back (etcd3's
 * default backoff grows to 30 s, far too slow to recover a directory cache).
 */
export function connectEtcd(endpoints: string): Etcd3 {
  const hosts = endpoints.split(',').map((h) => h.trim()).filter(Boolean);
  if (!hosts.length) throw new Error('no etcd endpoints given');
  return new Etcd3({
    hosts,
    dialTimeout: 3_000,
    // A directory page of 20,000 keys is a few MB; gRPC's default limit is 4 MB.
    grpcOptions: { 'grpc.max_receive_message_length': 64 * 1024 * 1024 },
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5_000 }),
    faultHandling: {
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 2_000, breaker: new ConsecutiveBreaker(3) }),
      // Retried: only UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED (etcd3's recoverable
      // errors also take in CANCELLED, UNKNOWN, INTERNAL and ABORTED).
      global: retry(handleType(GRPCUnavailableError).orType(GRPCResourceExhastedError).orType(GRPCDeadlineExceededError), { maxAttempts: 2 }),
      // etcd3 calls .next() on this itself (its typings say IBackoff, it wants the factory).
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2_000 }) as never,
    },
  });
}

/**
 * Every key under a prefix at one revision, read in pages so a directory of a million
 * accounts never needs one huge response. Calls `each` per key-value; returns the revision.
 *
 * No sort is asked for: etcd returns keys in key order anyway, and etcd 3.4 answers a
 * sorted range by sorting the whole rest of the range for every page (a million keys took
 * minutes). Large pages, because 3.4 also scans its index to the end of the range per page.
 */
export async function readPrefix(client: Etcd3, prefix: string, each: (kv: IKeyValue) => void, pageSize = 20_000): Promise<number> {
  const end = prefixEnd(prefix);
  let start = prefix;
  let revision: string | undefined;
  for (;;) {
    let range = client.getAll().inRange({ start, end }).limit(pageSize);
    if (revision) range = range.revision(revision);
    const res = await range.exec();
    revision ??= res.header.revision;
    for (const kv of res.kvs) each(kv);
    if (!res.more || !res.kvs.length) break;
    start = res.kvs[res.kvs.length - 1].key.toString() + '\0';
  }
  return Number(revision);
}

/**
 * An etcd failure as the reply it deserves: etcd unreachable or overloaded (what etcd3
 * calls recoverable, or its circuit breaker open) is `ETCD_UNAVAILABLE`, a MailError or an admin
 * answer (a directory edit's refusal) stays itself, anything else is a 4xx local error.
 */
export function fromEtcdError(err: unknown): MailError | AdminError {
  if (CodedError.is(err)) return err;
  if (err instanceof Error && (isRecoverableError(err) || err instanceof EtcdWatchStreamEnded || isBrokenCircuitError(err))) return Replies.etcdUnavailable(err);
  return toCodedError(err);
}

/** Command-line flags of a one-member etcd on loopback (the launcher's, the benches'). */
export function singleEtcdArgs(name: string, dataDir: string, clientPort: number, peerPort: number): string[] {
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  return [
    '--name', name,
    '--data-dir', dataDir,
    '--listen-client-urls', client,
    '--advertise-client-urls', client,
    '--listen-peer-urls', peer,
    '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `${name}=${peer}`,
  ];
}
