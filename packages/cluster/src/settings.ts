import { canonicalKey, ConfigError, leaves, LIVE_SETTINGS, withOverrides, type Config, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import type { Etcd3, IKeyValue } from 'etcd3';
import { EventEmitter } from 'node:events';
import { CLUSTER_SCOPE, type Keys } from './keys.js';
import { PrefixWatch } from './prefix-watch.js';

/**
 * Per-node settings in etcd over cluster-wide defaults: `settings/_cluster/<key>` and
 * `settings/<node>/<key>`, each value JSON (anything else is taken as a string). The
 * effective config (start-up config, then cluster defaults, then this node's overrides) is
 * validated and emitted as `change`; a bad value is logged and ignored, never applied.
 */
export class NodeSettings extends EventEmitter implements Service {
  readonly name = 'settings';
  private readonly cluster = new Map<string, unknown>();
  private readonly node = new Map<string, unknown>();
  private readonly watch: PrefixWatch;
  private _effective: Config;
  /** A key of this node's changed since the last recompute. */
  private dirty = false;

  constructor(
    client: Etcd3,
    private readonly keys: Keys,
    private readonly base: Config,
    private readonly log: Logger,
  ) {
    super();
    this._effective = base;
    this.watch = new PrefixWatch({
      client,
      prefix: keys.settings,
      name: 'settings',
      log,
      handler: {
        reset: () => {
          this.cluster.clear();
          this.node.clear();
          this.dirty = true;
        },
        put: (kv) => this.take(kv, true),
        delete: (kv) => this.take(kv, false),
      },
    });
    this.watch.on('change', () => {
      if (!this.dirty) return;
      this.dirty = false;
      this.recompute();
    });
  }

  get state(): ServiceState {
    return this.watch.state;
  }

  get effective(): Config {
    return this._effective;
  }

  start(): Promise<void> {
    return this.watch.start();
  }

  stop(): Promise<void> {
    return this.watch.stop();
  }

  /** Records one key, if it concerns this node. */
  private take(kv: IKeyValue, put: boolean): void {
    const [scope, name] = kv.key.toString().slice(this.keys.settings.length).split('/');
    const map = scope === CLUSTER_SCOPE ? this.cluster : scope === this.base.nodeId ? this.node : undefined;
    if (!map || !name) return;
    this.dirty = true;
    if (!put) {
      map.delete(name);
      return;
    }
    const text = kv.value.toString();
    try {
      map.set(name, JSON.parse(text));
    } catch {
      map.set(name, text);
    }
  }

  private recompute(): void {
    const overrides: Record<string, unknown> = {};
    for (const map of [this.cluster, this.node]) {
      // Old names first: a key set under its new name too wins.
      for (const [given, v] of [...map].sort(([a], [b]) => Number(canonicalKey(b) !== b) - Number(canonicalKey(a) !== a))) {
        const k = canonicalKey(given);
        if (k !== given) this.log.warn({ event: 'settings.deprecated', key: given, now: k }, `setting ${given} is deprecated: set ${k} instead (taken as ${k})`);
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
}

/** A setting refused before anything is written: not a live key, a value the config schema does not take, or no such member. */
export class SettingRefused extends Error {
  override readonly name = 'SettingRefused';
  readonly code = 'SETTING_REFUSED';
}

/**
 * Sets one live setting of a node (`_cluster` for the cluster-wide default) from its text,
 * as `mailgrid node set` and the dashboard do: the key must be live, the value must pass the
 * config schema over `base` (it is written as the schema reads it: `2048` a number, `true` a
 * boolean), and the node a live member. Returns the value written; throws SettingRefused.
 */
export async function putSetting(
  client: Etcd3,
  keys: Keys,
  change: { node: string; key: string; raw: string },
  base: Config,
  isMember: (id: string) => boolean | Promise<boolean>,
): Promise<unknown> {
  const { node, raw } = change;
  // An old name is written under its new one.
  const key = canonicalKey(change.key);
  if (!(LIVE_SETTINGS as readonly string[]).includes(key))
    throw new SettingRefused(`${key} cannot be changed on a running node; live settings: ${LIVE_SETTINGS.join(', ')}`);
  const leaf = leaves().find((l) => l.key === key)!;
  let value: unknown;
  try {
    const checked = withOverrides(base, { [key]: raw });
    value = leaf.path.reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], checked);
  } catch (err) {
    throw new SettingRefused(err instanceof ConfigError ? err.problems.join('; ') : (err as Error).message);
  }
  if (node !== CLUSTER_SCOPE && !(await isMember(node)))
    throw new SettingRefused(`no live member named ${node} (see: mailgrid member list); use ${CLUSTER_SCOPE} for a cluster-wide default`);
  await client.put(keys.setting(node, key)).value(JSON.stringify(value)).exec();
  return value;
}
