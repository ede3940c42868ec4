import { ConfigError, LIVE_SETTINGS, withOverrides, type Config, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import type { Etcd3, Watcher } from 'etcd3';
import { EventEmitter } from 'node:events';
import { readPrefix } from './etcd.js';
import { CLUSTER_SCOPE, type Keys } from './keys.js';

/**
 * Per-node settings in etcd over cluster-wide defaults: `settings/_cluster/<key>` and
 * `settings/<node>/<key>`, each value JSON. The effective config (start-up config, then
 * cluster defaults, then this node's overrides) is validated and emitted as `change`;
 * a bad value is logged and ignored, never applied.
 */
export class NodeSettings extends EventEmitter implements Service {
  readonly name = 'settings';
  private _state: ServiceState = 'new';
  private watcher: Watcher | undefined;
  private readonly cluster = new Map<string, unknown>();
  private readonly node = new Map<string, unknown>();
  private _effective: Config;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: Etcd3,
    private readonly keys: Keys,
    private readonly base: Config,
    private readonly log: Logger,
  ) {
    super();
    this._effective = base;
  }

  get state(): ServiceState {
    return this._state;
  }

  get effective(): Config {
    return this._effective;
  }

  async start(): Promise<void> {
    this._state = 'running';
    await this.follow().catch(() => this.retry());
  }

  async stop(): Promise<void> {
    this._state = 'stopped';
    clearTimeout(this.retryTimer);
    await this.watcher?.cancel().catch(() => undefined);
  }

  private async follow(): Promise<void> {
    this.cluster.clear();
    this.node.clear();
    const rev = await readPrefix(this.client, this.keys.settings, (kv) => this.take(kv.key.toString(), kv.value.toString()));
    this.recompute();
    this.watcher = await this.client.watch().prefix(this.keys.settings).startRevision(String(rev + 1)).create();
    this.watcher.on('put', (kv) => {
      if (this.take(kv.key.toString(), kv.value.toString())) this.recompute();
    });
    this.watcher.on('delete', (kv) => {
      if (this.take(kv.key.toString(), undefined)) this.recompute();
    });
    this.watcher.on('error', () => {
      this.watcher = undefined;
      this.retry();
    });
  }

  /** Records one key; true when it concerns this node. */
  private take(key: string, json: string | undefined): boolean {
    const [scope, name] = key.slice(this.keys.settings.length).split('/');
    const map = scope === CLUSTER_SCOPE ? this.cluster : scope === this.base.nodeId ? this.node : undefined;
    if (!map || !name) return false;
    if (json === undefined) map.delete(name);
    else {
      try {
        map.set(name, JSON.parse(json));
      } catch {
        map.set(name, json);
      }
    }
    return true;
  }

  private recompute(): void {
    const overrides: Record<string, unknown> = {};
    for (const map of [this.cluster, this.node]) {
      for (const [k, v] of map) {
        if (!(LIVE_SETTINGS as readonly string[]).includes(k)) {
          this.log.warn({ event: 'settings.not-live', key: k }, 'setting needs a restart; ignored while running');
          continue;
        }
        try {
          withOverrides(this.base, { [k]: v });
          overrides[k] = v;
        } catch (err) {
          this.log.error({ event: 'settings.invalid', key: k, value: v, problems: (err as ConfigError).problems }, 'invalid setting ignored');
        }
      }
    }
    const next = withOverrides(this.base, overrides);
    if (JSON.stringify(next) === JSON.stringify(this._effective)) return;
    this._effective = next;
    this.log.info({ event: 'settings.applied', overrides }, 'settings applied');
    this.emit('change', next);
  }

  private retry(): void {
    if (this._state !== 'running' || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.follow().catch(() => this.retry());
    }, 1_000);
    this.retryTimer.unref();
  }
}
