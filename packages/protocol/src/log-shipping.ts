import type * as grpc from '@grpc/grpc-js';
import { pack, unpack } from 'msgpackr';
import { once } from 'node:events';
import type { FollowRequest__Output, FollowResponse, FollowResponse__Output } from './types.js';

/** A log position: the last entry's seq and the epoch it was written in. */
export interface Position {
  seq: number;
  epoch: number;
}

/** One log entry as shipped: its ops are the store's, opaque here. */
export interface ShippedEntry {
  seq: number;
  epoch: number;
  ops: unknown[];
}

/** The shipping side's log (LoggedLmdb). */
export interface LogSource {
  position(): Position;
  holds(at: Position): boolean;
  snapshot(): Iterable<unknown[]>;
  entries(from: number): ShippedEntry[];
  on(event: 'logged', listener: () => void): unknown;
}

/** The following side's copy (LoggedLmdb). */
export interface LogCopy {
  position(): Position;
  beginCopy(): Promise<void>;
  copy(ops: never[]): Promise<void>;
  endCopy(base: Position): Promise<void>;
  apply(entries: never[]): Promise<void>;
  synced(): Promise<void>;
}

export type FollowCall = grpc.ServerDuplexStream<FollowRequest__Output, FollowResponse>;
export type FollowClientCall = grpc.ClientDuplexStream<unknown, FollowResponse__Output>;

/** Resolves on the source's next logged write: a shipper waiting for more waits on it. */
export class LogSignal {
  private next: Promise<void>;
  private wake!: () => void;

  constructor(source: Pick<LogSource, 'on'>) {
    this.next = this.arm();
    source.on('logged', () => this.wake());
  }

  private arm(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wake = () => {
        this.next = this.arm();
        resolve();
      };
    });
  }

  get logged(): Promise<void> {
    return this.next;
  }
}

/**
 * Streams a log to one follower whose own log ends at `from`: a full copy first when this
 * log cannot continue it, then `onCaughtUp` with the seq the follower has, then every entry
 * as it is written, while `open()`. (The source trims no further than what the follower has
 * acked, which is never past what was sent.)
 */
export async function shipLog(o: {
  source: LogSource;
  signal: LogSignal;
  call: FollowCall;
  epoch: number;
  from: Position;
  open: () => boolean;
  closed: Promise<void>;
  onCopy?: (base: Position) => void;
  onCaughtUp: (acked: number) => void;
}): Promise<void> {
  const { source, call } = o;
  const send = async (res: FollowResponse) => {
    if (!call.write({ ...res, epoch: o.epoch })) await Promise.race([once(call, 'drain'), o.closed]);
  };
  let sent = o.from.seq;
  if (!source.holds(o.from)) {
    const base = source.position();
    o.onCopy?.(base);
    await send({ copyBegin: true });
    for (const batch of source.snapshot()) {
      if (!o.open()) return;
      await send({ copy: pack(batch) });
    }
    await send({ copyEnd: true, baseSeq: base.seq, baseEpoch: base.epoch });
    sent = base.seq;
  } else o.onCaughtUp(o.from.seq);
  while (o.open()) {
    const wait = o.signal.logged;
    const entries = source.entries(sent + 1);
    if (!entries.length) {
      await Promise.race([wait, o.closed]);
      // Writes committed together wake it one by one: one turn later they go as one batch.
      await new Promise((resolve) => setImmediate(resolve));
      continue;
    }
    await send({ entries: entries.map((e) => pack([e.seq, e.epoch, e.ops])) });
    sent = entries[entries.length - 1].seq;
    }
}

/**
 * The following side: asks `node`'s way in (where its copy's log ends, of which `source`),
 * applies what the stream brings (a full copy, then entries) to `copy` as its own log, and
 * acks each batch once it is on disk; `after` runs after each ack. A batch is applied while
 * the one before is being flushed (one sync may cover both); acks go in order. Ends with the
 * stream, or when `still()` says this stream is no longer followed.
 */
export async function receiveLog(o: {
  copy: LogCopy;
  call: FollowClientCall;
  node: string;
  epoch: number;
  source?: string;
  still: () => boolean;
  after?: () => Promise<void>;
}): Promise<void> {
  const { copy, call } = o;
  // The position it starts from counts as acked: it must be on disk (an apply resolves at commit).
  await copy.synced();
  const pos = copy.position();
  call.write({ node: o.node, epoch: o.epoch, lastSeq: pos.seq, lastEpoch: pos.epoch, source: o.source ?? '' });
  let acks: Promise<void> = Promise.resolve();
  let failed: unknown;
  for await (const res of call as AsyncIterable<FollowResponse__Output>) {
    if (failed) throw failed;
    if (!o.still()) return;
    if (Number(res.epoch) !== o.epoch) throw new Error(`entries of epoch ${res.epoch} on a stream of epoch ${o.epoch}`);
    if (res.copyBegin) await copy.beginCopy();
    if (res.copy?.length) await copy.copy(unpack(res.copy) as never[]);
    if (res.copyEnd) await copy.endCopy({ seq: Number(res.baseSeq), epoch: Number(res.baseEpoch) });
    if (res.entries.length)
      await copy.apply(
        res.entries.map((b) => {
          const [seq, epoch, ops] = unpack(b) as [number, number, unknown[]];
          return { seq, epoch, ops };
        }) as never[],
      );
    const seq = copy.position().seq;
    const synced = copy.synced();
    acks = acks
      .then(() => synced)
      .then(async () => {
        if (!o.still()) return;
        call.write({ flushed: seq });
        await o.after?.();
      })
      .catch((err) => {
        failed ??= err;
        call.cancel();
      });
  }
  await acks;
  if (failed) throw failed;
}

/** Ends a follower's stream with a status (grpc-js sends an emitted error as the call's status). */
export function refuseFollower(call: FollowCall, code: grpc.status, details: string): void {
  call.emit('error', { code, details });
}
