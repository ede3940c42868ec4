import { commit, copyEnvironment, flushed, upkeep, type Logger, type Service } from '@mailgrid/core';
import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { LogEntry, LogPosition, Op } from './store.js';

/** The epoch of the position a store reports while a full copy is under way: never an etcd revision. */
const COPYING = Number.MAX_SAFE_INTEGER;

/** One table of a logged environment. */
export interface TableSpec {
  name: string;
  /** Values are raw bytes. */
  binary?: boolean;
  /**
   * Values never change once put (message bodies): a put is logged by reference and its
   * bytes read when the entry is shipped (one deleted later is deleted by a later entry).
   */
  byReference?: boolean;
}

export interface LoggedOptions {
  /**
   * Awaited after each write's flush with its log seq, before the write resolves: a
   * hosting group's primary waits there for its in-sync replicas.
   */
  durable?: (seq: number) => Promise<void>;
  /**
   * Asked inside every logged write transaction: a write refused here writes nothing (a
   * hosting group's replica or deposed primary must not add to its log, or it would fork
   * from the primary's). Throws the refusal; absent: always writable.
   */
  writable?: () => void;
  /** Only reads, beside the process that writes it (an inspection of a running node's data). */
  readOnly?: boolean;
  /**
   * A copy nobody follows in turn (a queue partner's): the entries it applies are not kept
   * as a log, only where they end (its `base`), which halves what it writes.
   */
  endOnly?: boolean;
}

/**
 * An LMDB environment whose every write transaction is also an entry of an ordered log,
 * written in that same transaction, so another environment can be kept the same by
 * applying the entries in order (a hosting group's replicas).
 * - `log`  seq → { epoch, ops }: the puts and removes of one transaction (see `Op`)
 * - `replication` `base` (the seq and epoch the log starts after, once trimmed or copied),
 *   `copying` (a full copy is under way: the data is not whole), `ready` (the data was
 *   whole and in sync once)
 * Subclasses write only through `write` with `set` and `unset`.
 */
export class LoggedLmdb extends EventEmitter {
  protected readonly root: RootDatabase;
  /** The logged tables by name, as ops name them. */
  private readonly tables: Record<string, Database<unknown, Key>> = {};
  private readonly byReference = new Set<string>();
  private readonly log: Database<{ epoch: number; ops: Op[] }, number>;
  private readonly replication: Database<unknown, string>;
  /** The ops of the transaction being written; undefined outside one. */
  private ops: Op[] | undefined;
  /** The epoch new log entries are written in: a group primary's (0 elsewhere). */
  epoch = 0;
  /**
   * The log's end known durable (on disk here and wherever `durable` says) while writing in
   * `epoch`: what is at or before it needs no wait. A new epoch or an applied copy forgets it.
   */
  private durableMark = { seq: 0, epoch: NaN };

  constructor(
    path: string,
    specs: TableSpec[],
    private readonly logged: LoggedOptions = {},
  ) {
    super();
    mkdirSync(path, { recursive: true });
    // mapSize: lmdb-js otherwise starts with a small map and doubles it as the file grows,
    // keeping every old map (readers may point into them), so the same resident file pages
    // were counted up to ten times in RSS. Reserving address space once avoids that; it is
    // virtual only, the file does not grow to it, and LMDB still grows past it.
    this.root = open({ path, maxDbs: specs.length + 4, mapSize: 64 * 1024 ** 3, readOnly: logged.readOnly });
    for (const t of specs) {
      this.tables[t.name] = this.root.openDB({ name: t.name, ...(t.binary && { encoding: 'binary' as const }) });
      if (t.byReference) this.byReference.add(t.name);
    }
    this.log = this.root.openDB({ name: 'log' });
    this.replication = this.root.openDB({ name: 'replication' });
    if (!logged.readOnly && !this.replication.get('id')) this.replication.putSync('id', randomUUID());
  }

  protected table<V, K extends Key>(name: string): Database<V, K> {
    return this.tables[name] as unknown as Database<V, K>;
  }

  /** A put inside `write`, logged. */
  protected set(table: string, key: Key, value: unknown): void {
    this.tables[table].put(key, value);
    this.ops!.push(this.byReference.has(table) ? [2, table, key] : [0, table, key, value]);
  }

  /**
   * Inside `write`, once its work ends: what a subclass gathered over the transaction is
   * written now, once (`ok`), or dropped with the transaction (the work threw).
   */
  protected workEnded(_ok: boolean): void {}

  /** A remove inside `write`, logged. */
  protected unset(table: string, key: Key): void {
    this.tables[table].remove(key);
    this.ops!.push([1, table, key]);
  }

  /**
   * One write transaction whose puts and removes go to the log as one entry; resolves once
   * it is on disk here and (`durable`) wherever it must be before it is answered. A write
   * that found everything done already (a retried delivery) logs nothing, and still answers
   * only once what it found is that durable: it waits for the log's end.
   */
  protected async write<T>(work: () => T): Promise<T> {
    const [out, seq] = await this.commitLogged(work);
    await this.durableUpTo(seq);
    return out;
  }

  /**
   * `write` resolved at commit, with the seq its entry got (or the log's end when it logged
   * nothing): for a caller that answers only after `flushed()` (the queue).
   */
  protected async commitLogged<T>(work: () => T): Promise<[T, number]> {
    let seq = 0;
    const result = await commit(this.root, () => {
      this.logged.writable?.();
      this.ops = [];
      let done = false;
      try {
        const out = work();
        done = true;
        this.workEnded(true);
        if (this.ops.length) {
          seq = this.position().seq + 1;
          this.log.put(seq, { epoch: this.epoch, ops: this.ops });
          this.logging(seq, this.ops);
        }
        return out;
      } finally {
        if (!done) this.workEnded(false);
        this.ops = undefined;
      }
    });
    if (seq) this.emit('logged', seq);
    else seq = this.position().seq;
    return [result, seq];
  }

  /** Resolves once everything committed so far is on disk here and wherever `durable` says. */
  flushed(): Promise<void> {
    return this.durableUpTo(this.position().seq);
  }

  /**
   * Inside `write`, once its entry is in the log (its seq and ops): for a subclass that
   * remembers what each part of its data last changed in.
   */
  protected logging(_seq: number, _ops: readonly Op[]): void {}

  /**
   * Resolves once the log up to `seq` is on disk here and wherever `durable` says; at once
   * when that was known already (a read need not wait on the flush of writes after it).
   */
  protected async durableUpTo(seq: number): Promise<void> {
    if (seq && this.durableMark.epoch === this.epoch && seq <= this.durableMark.seq) return;
    const epoch = this.epoch;
    await flushed(this.root);
    if (!seq) return;
    await this.logged.durable?.(seq);
    if (epoch === this.epoch && (this.durableMark.epoch !== epoch || seq > this.durableMark.seq)) this.durableMark = { seq, epoch };
  }

  /** Whether the log up to `seq` is known durable (see durableUpTo). */
  protected knownDurable(seq: number): boolean {
    return this.durableMark.epoch === this.epoch && seq <= this.durableMark.seq;
  }

  /** What another log wrote here is not known durable by this one's measure. */
  private forgetDurable(): void {
    this.durableMark = { seq: 0, epoch: NaN };
  }

  /**
   * This environment's identity: made when it was first opened, so a new disk (or one that
   * starts over) is told from the one it replaces. Not logged: a copy has its own.
   */
  get identity(): string {
    return this.replication.get('id') as string;
  }

  /**
   * A new epoch for the entries this opening writes (a store with one writer and no
   * election: its queue). A tail the disk lost in a crash and written anew after it then
   * differs in epoch, so `holds` tells a copy that had the lost tail to start over.
   */
  protected openEpoch(): number {
    const opens = ((this.replication.get('opens') as number | undefined) ?? 0) + 1;
    this.replication.putSync('opens', opens);
    return opens;
  }

  /** Gives this environment a new identity (what copies others kept of it are of the old one). */
  async renew(): Promise<string> {
    const id = randomUUID();
    await commit(this.root, () => this.replication.put('id', id));
    await flushed(this.root);
    return id;
  }

  /**
   * Resolves once every write begun before it is committed (an empty transaction: writes
   * are committed in order).
   */
  async barrier(): Promise<void> {
    await commit(this.root, () => undefined);
  }

  /**
   * Where the log ends. While a full copy is under way (the data is not whole) a position no
   * log holds, so a follower whose copy was interrupted is sent a new one.
   */
  position(): LogPosition {
    if (this.replication.get('copying')) return { seq: 0, epoch: COPYING };
    for (const { key, value } of this.log.getRange({ reverse: true, limit: 1 })) return { seq: key, epoch: value.epoch };
    return this.base();
  }

  /**
   * A consistent copy of the environment into `dir` (new, or empty), made from one read
   * transaction while writes go on. Returns where the copy's log ends: a member restored
   * from it follows its primary from there (or takes a full copy if that is gone).
   */
  async backup(dir: string, compact = false): Promise<LogPosition> {
    if (this.position().epoch === COPYING) throw new Error('this member is taking a full copy from its primary; back up another member');
    await copyEnvironment(this.root, dir, compact);
    const copy = new LoggedLmdb(dir, [], { readOnly: true });
    try {
      return copy.position();
    } finally {
      await copy.close();
      // Made by the look above: a copy is its data file alone.
      rmSync(join(dir, 'lock.mdb'), { force: true });
    }
  }

  /** What the log starts after: { 0, 0 } for a log kept from the first write. */
  base(): LogPosition {
    return (this.replication.get('base') as LogPosition | undefined) ?? { seq: 0, epoch: 0 };
  }

  /**
   * Whether this log holds the entry another's log ends with (same seq, same epoch): then
   * both logs are the same up to it, as only one writer writes in an epoch, and the other
   * can follow from the next one. Otherwise it needs a full copy.
   */
  holds(at: LogPosition): boolean {
    const base = this.base();
    if (at.seq === base.seq) return at.epoch === base.epoch;
    if (at.seq < base.seq) return false;
    return this.log.get(at.seq)?.epoch === at.epoch;
  }

  /** Entries from `from` on, up to about `maxBytes` of by-reference values, those read in. */
  entries(from: number, maxBytes = 1 << 20): LogEntry[] {
    const out: LogEntry[] = [];
    let bytes = 0;
    for (const { key, value } of this.log.getRange({ start: from })) {
      const ops: Op[] = [];
      for (const op of value.ops) {
        if (op[0] !== 2) ops.push(op);
        else {
          // Gone: a later entry removed it, and removes it on the copy too.
          const body = this.tables[op[1]].get(op[2] as Key) as Buffer | undefined;
          if (body) ops.push([0, op[1], op[2], body]);
          bytes += body?.length ?? 0;
        }
      }
      out.push({ seq: key, epoch: value.epoch, ops });
      if (bytes >= maxBytes || out.length >= 1_000) break;
    }
    return out;
  }

  /** The keys of `table` put by log entries from `from` on. */
  putsSince(from: number, table: string): Set<unknown> {
    const keys = new Set<unknown>();
    for (const { value } of this.log.getRange({ start: from })) for (const op of value.ops) if (op[0] !== 1 && op[1] === table) keys.add(op[2]);
    return keys;
  }

  /**
   * A copy applies its source's entries, in order, as its own; resolves once committed
   * (`synced` says when on disk), so a follower can take the next batch while this one is
   * being flushed and one sync covers several.
   */
  async apply(entries: LogEntry[]): Promise<void> {
    if (!entries.length) return;
    this.forgetDurable();
    await commit(this.root, () => {
      let last = this.position().seq;
      for (const e of entries) {
        if (e.seq !== last + 1) throw new Error(`log entry ${e.seq} does not follow ${last}`);
        this.applyOps(e.ops);
        if (!this.logged.endOnly) this.log.put(e.seq, { epoch: e.epoch, ops: e.ops.map((op) => (op[0] === 0 && this.byReference.has(op[1]) ? ([2, op[1], op[2]] as Op) : op)) });
        last = e.seq;
      }
      if (this.logged.endOnly) this.replication.put('base', { seq: last, epoch: entries[entries.length - 1].epoch });
    });
  }

  /** Resolves once everything committed here so far is on this disk (a copy's ack waits for it). */
  synced(): Promise<void> {
    return flushed(this.root);
  }

  private applyOps(ops: Op[]): void {
    for (const op of ops) {
      const table = this.tables[op[1]];
      if (!table) throw new Error(`log names no table ${op[1]}`);
      if (op[0] === 0) table.put(op[2] as Key, op[3]);
      else if (op[0] === 1) table.remove(op[2] as Key);
    }
  }

  /**
   * A full copy, for a copy whose log this one cannot continue: the position first (the
   * copy is taken after it, so replaying the log from there over it gives this state even
   * though the copy is read while writes go on), then every table's keys and values in
   * batches.
   */
  *snapshot(batchBytes = 1 << 20): Generator<Op[], void, void> {
    let batch: Op[] = [];
    let bytes = 0;
    for (const [name, table] of Object.entries(this.tables)) {
      for (const { key, value } of table.getRange({})) {
        batch.push([0, name, key, value]);
        bytes += Buffer.isBuffer(value) ? value.length : 64;
        if (bytes >= batchBytes) {
          yield batch;
          batch = [];
          bytes = 0;
        }
      }
    }
    if (batch.length) yield batch;
  }

  /** Starts taking a full copy: everything here goes, and the data counts as not whole until `endCopy`. */
  async beginCopy(): Promise<void> {
    this.forgetDurable();
    await commit(this.root, () => {
      this.replication.put('copying', true);
      this.replication.remove('ready');
    });
    await flushed(this.root);
    for (const table of [...Object.values(this.tables), this.log]) await table.clearAsync();
  }

  async copy(ops: Op[]): Promise<void> {
    this.forgetDurable();
    await commit(this.root, () => this.applyOps(ops));
  }

  /** The copy is whole: the log goes on after `base`. */
  async endCopy(base: LogPosition): Promise<void> {
    await commit(this.root, () => {
      this.replication.put('base', base);
      this.replication.remove('copying');
    });
    await flushed(this.root);
  }

  /** Whether the data was whole and in sync once (a new disk is not: it must not be elected). */
  get ready(): boolean {
    return Boolean(this.replication.get('ready')) && !this.replication.get('copying');
  }

  async setReady(): Promise<void> {
    if (this.ready) return;
    await commit(this.root, () => this.replication.put('ready', true));
    await flushed(this.root);
  }

  /** Forgets log entries up to `upto` (every copy has them). Not flushed: a lost trim is done again. */
  async trim(upto: number): Promise<number> {
    return commit(this.root, () => {
      const base = this.base();
      const last = this.position().seq;
      upto = Math.min(upto, last);
      if (upto <= base.seq) return 0;
      const epoch = this.log.get(upto)!.epoch;
      let n = 0;
      for (const key of this.log.getKeys({ start: base.seq + 1, end: upto + 1 })) {
        this.log.remove(key);
        n++;
      }
      this.replication.put('base', { seq: upto, epoch });
      return n;
    });
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}

/** Trims a log every 10 s up to `upto()` (what every copy has, less what is kept for copies that were away). */
export function logTrimmer(store: LoggedLmdb, upto: () => number, log: Logger): Service {
  return upkeep(
    'log-trimmer',
    10_000,
    async () => {
      const to = upto();
      if (to > store.base().seq) await store.trim(to);
    },
    log,
  );
}
