import type { Logger, Service, ServiceState } from '@mailgrid/core';
import type { Etcd3, IKeyValue, IWatchResponse, Watcher } from 'etcd3';
import { EventEmitter, once } from 'node:events';
import type { z } from 'zod';
import { readPrefix } from './etcd.js';

/** What a PrefixWatch keeps current. A `put` that throws refuses the value, nothing else. */
export interface PrefixHandler {
  /** Forget everything: a full load follows. */
  reset(): void;
  put(kv: IKeyValue): void;
  delete(kv: IKeyValue): void;
  /** `put` refused this value (already logged); whatever the key held before is gone too. */
  invalid?(kv: IKeyValue, err: Error): void;
}

export interface PrefixWatchOptions {
  client: Etcd3;
  prefix: string;
  /** For logs: which watch a line is about. */
  name: string;
  log: Logger;
  handler: PrefixHandler;
  /**
   * For small prefixes: read the whole prefix this often and reload when the watch has
   * missed a change (seen on two reads in a row). etcd watches have gone silent after an
   * etcd restart without any error (microsoft/etcd3 #31, #72; etcd-io/jetcd #1209).
   */
  auditEveryMs?: number;
}

/**
 * Keeps a handler current with every key under an etcd prefix: a paged load at one revision,
 * then a watch from the next one; a full reload whenever etcd cancels the watch (its
 * revision was compacted while this node was cut off, or anything else).
 *
 * No exception from the handler reaches etcd3 (which would re-throw it and crash the
 * process): a value the handler refuses is logged once as `etcd.bad-value` and skipped.
 *
 * Events: `synced` / `unsynced` when `synced` changes, `change` after each applied batch.
 */
export class PrefixWatch extends EventEmitter implements Service {
  readonly name: string;
  private _state: ServiceState = 'new';
  private _synced = false;
  private _revision = 0;
  private watcher: Watcher | undefined;
  private loading: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly stopped = new AbortController();
  /** With `auditEveryMs`: each applied key's mod revision, and what the last audit found missing. */
  private readonly applied = new Map<string, number>();
  private missed = '';
  private auditTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: PrefixWatchOptions) {
    super();
    this.name = options.name;
  }

  get state(): ServiceState {
    return this._state;
  }

  /** Loaded, and the watch is connected: what the handler holds is current. */
  get synced(): boolean {
    return this._synced;
  }

  /** Every change under the prefix up to this revision has been applied. */
  get revision(): number {
    return this._revision;
  }

  /** Loads and starts watching. If etcd cannot be reached it still resolves and keeps retrying. */
  async start(): Promise<void> {
    this._state = 'running';
    if (this.options.auditEveryMs) {
      this.auditTimer = setInterval(() => void this.audit().catch(() => undefined), this.options.auditEveryMs);
      this.auditTimer.unref();
    }
    try {
      await this.load();
    } catch (err) {
      this.options.log.warn({ event: 'etcd.load-failed', watch: this.name, err: (err as Error).message }, 'not loaded from etcd yet, retrying');
      this.scheduleReload();
    }
  }

  async stop(): Promise<void> {
    this._state = 'stopped';
    this.stopped.abort();
    clearInterval(this.auditTimer);
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.loading?.catch(() => undefined);
    await this.dropWatcher();
  }

  private load(): Promise<void> {
    this.loading ??= this.doLoad().finally(() => (this.loading = undefined));
    return this.loading;
  }

  private async doLoad(): Promise<void> {
    const { client, prefix, handler, log } = this.options;
    const t0 = Date.now();
    await this.dropWatcher();
    handler.reset();
    this.applied.clear();
    let keys = 0;
    const revision = await readPrefix(client, prefix, (kv) => {
      keys++;
      this.apply('put', kv);
    });
    this.advance(revision);
    this.emitSafely('change');
    log.info({ event: 'etcd.loaded', watch: this.name, keys, revision, ms: Date.now() - t0 }, 'loaded from etcd');
    if (this._state !== 'running') return;
    // watcher() rather than create(): the listeners are on before etcd can send anything.
    const watcher = client.watch().prefix(prefix).startRevision(String(revision + 1)).watcher();
    this.watcher = watcher;
    watcher.on('data', (res) => this.onData(watcher, res));
    watcher.on('connected', () => this.onConnected(watcher));
    watcher.on('disconnected', (err) => {
      if (watcher !== this.watcher) return;
      if (this._synced) log.warn({ event: 'etcd.watch-disconnected', watch: this.name, err: err.message }, 'etcd watch cut off');
      this.setSynced(false);
    });
    watcher.on('error', (err) => {
      if (watcher !== this.watcher) return;
      // etcd cancelled the watch: its revision was compacted, or worse. Start over.
      log.warn({ event: 'etcd.watch-canceled', watch: this.name, revision: this._revision, err: err.message }, 'etcd watch canceled, reloading');
      this.watcher = undefined;
      this.setSynced(false);
      this.scheduleReload();
    });
    // Resolve once connected, cut off, cancelled (each handled above) or stopped, or after
    // 5 s: a watch that never says either must not hold the load (and the audit) for ever.
    const { signal } = this.stopped;
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, 5_000)));
    await Promise.race([once(watcher, 'connected', { signal }), once(watcher, 'disconnected', { signal }), waited]).catch(() => undefined);
    clearTimeout(timer);
  }

  private onConnected(watcher: Watcher): void {
    if (watcher !== this.watcher) return;
    this.resumeFromApplied(watcher);
    if (!this._synced) this.options.log.info({ event: 'etcd.watch-connected', watch: this.name, revision: this._revision }, 'etcd watch connected');
    this.setSynced(true);
  }

  private onData(watcher: Watcher, res: IWatchResponse): void {
    if (watcher !== this.watcher) return;
    for (const ev of res.events) {
      this.apply(ev.type === 'Put' ? 'put' : 'delete', ev.kv);
      this.advance(Number(ev.kv.mod_revision));
    }
    // An empty response is a progress notice, sent only to a watch that has every event up
    // to its revision. One with events may carry a revision past them when etcd holds
    // more back (a catch-up longer than 1,000 revisions), so those count their events only.
    if (!res.events.length) this.advance(Number(res.header.revision));
    this.resumeFromApplied(watcher);
    this.emitSafely('change');
  }

  /**
   * etcd3 resumes a watch after the revision in the last header it saw, which can be past
   * events etcd has not sent yet (see onData; a reconnect's "created" header is the newest
   * revision, its catch-up comes after). Resume after what was applied instead.
   */
  private resumeFromApplied(watcher: Watcher): void {
    watcher.request.start_revision = String(this._revision + 1);
  }

  /** Reads the prefix; a difference from what was applied that is still there on the next read means the watch missed it. */
  private async audit(): Promise<void> {
    // Also while cut off: a watch that never reconnects after an etcd restart is the case this is for.
    if (this.loading || this.retryTimer) return;
    const fresh = new Map<string, number>();
    await readPrefix(this.options.client, this.options.prefix, (kv) => void fresh.set(kv.key.toString(), Number(kv.mod_revision)));
    const diff: string[] = [];
    for (const [key, mod] of fresh) if (this.applied.get(key) !== mod) diff.push(`${key}@${mod}`);
    for (const key of this.applied.keys()) if (!fresh.has(key)) diff.push(`${key}@-`);
    const before = new Set(this.missed.split(' '));
    const now = diff.join(' ');
    if (diff.some((d) => before.has(d))) {
      this.options.log.warn({ event: 'etcd.watch-stale', watch: this.name, missed: diff.slice(0, 5) }, 'etcd watch missed changes, reloading');
      this.missed = '';
      this.setSynced(false);
      this.scheduleReload();
      return;
    }
    this.missed = now;
  }

  private apply(kind: 'put' | 'delete', kv: IKeyValue): void {
    const { handler, log } = this.options;
    if (this.options.auditEveryMs) {
      if (kind === 'put') this.applied.set(kv.key.toString(), Number(kv.mod_revision));
      else this.applied.delete(kv.key.toString());
    }
    try {
      if (kind === 'delete') return handler.delete(kv);
      try {
        handler.put(kv);
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        log.warn({ event: 'etcd.bad-value', watch: this.name, key: kv.key.toString(), err: e.message }, 'ignoring a value that does not parse');
        handler.invalid?.(kv, e);
      }
    } catch (err) {
      log.error({ event: 'etcd.apply-failed', watch: this.name, key: kv.key.toString(), err }, 'etcd change not applied');
    }
  }

  private advance(revision: number): void {
    if (revision > this._revision) this._revision = revision;
  }

  private setSynced(synced: boolean): void {
    if (this._synced === synced) return;
    this._synced = synced;
    this.emitSafely(synced ? 'synced' : 'unsynced');
  }

  /** A listener's exception must not unwind into etcd3 either. */
  private emitSafely(event: 'change' | 'synced' | 'unsynced'): void {
    try {
      this.emit(event);
    } catch (err) {
      this.options.log.error({ event: 'etcd.listener-failed', watch: this.name, on: event, err }, 'watch listener failed');
    }
  }

  private async dropWatcher(): Promise<void> {
    const watcher = this.watcher;
    this.watcher = undefined;
    this.setSynced(false);
    await watcher?.cancel().catch(() => undefined);
  }

  private scheduleReload(): void {
    if (this._state !== 'running' || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.load().catch((err) => {
        this.options.log.debug({ event: 'etcd.load-failed', watch: this.name, err: (err as Error).message }, 'reload from etcd failed');
        this.scheduleReload();
      });
    }, 1_000);
    this.retryTimer.unref();
  }
}

/**
 * A value as JSON checked against `schema`. Throws an Error saying what is wrong (for the
 * `etcd.bad-value` log line).
 */
export function jsonValue<T>(schema: z.ZodType<T>, kv: IKeyValue): T {
  let json: unknown;
  try {
    json = JSON.parse(kv.value.toString());
  } catch {
    throw new Error('not JSON');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new Error(parsed.error.issues.map((i) => `${i.path.join('.') || 'value'}: ${i.message}`).join('; '));
  return parsed.data;
}
