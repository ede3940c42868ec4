import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { createLogger, freePort, HealthServer, leaves, loadConfig, type AccessListenerName, type Config } from '@mailgrid/core';
import {
  ACCESS_PORTS,
  ACCESS_SERVICES,
  clusterNodes,
  haproxyConfig,
  PORT_ENV,
  ROLE_PORTS,
  roleEnv,
  type HaproxyFrontend,
  type NodeRole,
  type NodeSpec,
  type PortName,
} from '@mailgrid/cli';
import { repoRoot } from '@mailgrid/testing';

/**
 * The files in deploy/ against the launcher's topology (packages/cli/src/local-cluster/topology.ts): the
 * same roles and node names as `cluster up --frontends 2 --groups 2 --replicas 1`, the same
 * MAILGRID_* variables per role, values that load through the config pipeline, and ports,
 * probes, volumes, balancers and stop timeouts that agree with them.
 */
const deploy = join(repoRoot, 'deploy');
const read = (...path: string[]) => readFileSync(join(deploy, ...path), 'utf8');
const SHAPE = { frontends: 2, groups: 2, replicas: 1 };
/** What stops after the sessions' drain (queue runner, gRPC, stores) gets at least this before the engine's SIGKILL. */
const AFTER_DRAIN_MS = 10_000;

const byEnv = new Map(leaves().map((l) => [l.env, l]));

/** A node's environment against the config schema; its effective config. */
function checkNode(where: string, env: Record<string, string>): Config {
  const names = Object.keys(env).filter((k) => k.startsWith('MAILGRID_'));
  assert.deepEqual(
    names.filter((k) => !byEnv.has(k)),
    [],
    `${where}: variables that are no config setting`,
  );
  try {
    return loadConfig({ env });
  } catch (err) {
    assert.fail(`${where}: ${(err as Error).message}`);
  }
}

/** A config's value of the setting a variable sets. */
const setting = (config: Config, variable: string) => byEnv.get(variable)!.path.reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], config);
/** The value of a port of the role in a config, through the variable that sets it. */
const port = (config: Config, name: PortName) => setting(config, PORT_ENV[name]) as number;

/**
 * A node has the settings of its role: exactly the MAILGRID_* that the launcher's roleEnv
 * gives that role for this node (its id and group as the topology names them, the PROXY
 * settings its balancer needs; ports, etcd, data dir and placement as the file sets them),
 * and each loads through the config pipeline into its setting with that value.
 */
function assertRoleSettings(where: string, role: NodeRole, env: Record<string, string>, config: Config, node: { id: string; group?: string; proxy: boolean }): void {
  const spec: NodeSpec = {
    id: node.id,
    dataDir: env.MAILGRID_DATA_DIR,
    etcd: env.MAILGRID_ETCD,
    ports: Object.fromEntries(ROLE_PORTS[role].map((p) => [p, Number(env[PORT_ENV[p]])])),
    group: node.group,
    proxyFrom: node.proxy ? env.MAILGRID_LISTEN_PROXY_FROM : undefined,
    placed: { host: env.MAILGRID_GRPC_HOST, advertise: env.MAILGRID_GRPC_ADVERTISE, mailName: env.MAILGRID_SMTP_HOSTNAME, drainMs: Number(env.MAILGRID_DRAIN_MS), adminToken: env.MAILGRID_HTTP_ADMIN_TOKEN },
  };
  const given = Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('MAILGRID_')));
  assert.deepEqual(given, roleEnv(role, spec), `${where}: not the ${role} settings of ${node.id} (packages/cli/src/local-cluster/topology.ts)`);
  for (const [variable, value] of Object.entries(given)) assert.equal(String(setting(config, variable)), value, `${where}: ${variable} loads as given`);
  const listeners = ROLE_PORTS[role].map((p) => port(config, p));
  assert.equal(new Set(listeners).size, listeners.length, `${where}: a port of its own for each listener (${listeners})`);
}
const rolePorts = (role: NodeRole, config: Config) => ROLE_PORTS[role].map((p) => port(config, p)).sort((a, b) => a - b);

/** Node counts per role and group of the launcher's cluster. */
function roster(nodes: { role: NodeRole; group?: string }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of nodes) {
    const k = n.role === 'backend' ? `backend ${n.group}` : n.role;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** "60s", "1min", "45" (seconds), 45 (seconds) as milliseconds. */
function duration(spec: string | number): number {
  const m = /^(\d+)\s*(ms|s|min)?$/.exec(String(spec).trim());
  assert.ok(m, `a duration: ${spec}`);
  return Number(m[1]) * ({ ms: 1, s: 1000, min: 60_000 } as Record<string, number>)[m[2] ?? 's'];
}

/** `make()` once, at the first call: a failure fails each test that asks, with its message. */
function once<T>(make: () => T): () => T {
  let made: { value: T } | undefined;
  return () => (made ??= { value: make() }).value;
}

/** The config text from `global` on: the comment above it is each file's own. */
const body = (cfg: string) => cfg.slice(cfg.indexOf('\nglobal\n') + 1);

describe('deploy files', () => {
  it('name only real config settings', () => {
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) (e.isDirectory() ? walk : (p: string) => files.push(p))(join(dir, e.name));
    };
    walk(deploy);
    assert.ok(files.length > 10, 'deploy/ is there');
    for (const file of files) {
      const named = readFileSync(file, 'utf8').match(/MAILGRID_[A-Z0-9_]*[A-Z0-9]/g) ?? [];
      assert.deepEqual([...new Set(named.filter((v) => !byEnv.has(v)))], [], `${file}: variables that are no config setting`);
    }
  });

  describe('container image', () => {
    const text = read('Dockerfile').replace(/\\\n/g, ' ');
    const lines = text.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
    // Each stage's instructions, and the stage it is built FROM.
    const stages = new Map<string, { from: string; lines: string[] }>();
    let current: { from: string; lines: string[] } | undefined;
    for (const line of lines) {
      const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
      if (from) stages.set(from[2] ?? from[1], (current = { from: from[1], lines: [] }));
      else current?.lines.push(line.trim());
    }
    const chain = (stage: string): string[] => {
      const s = stages.get(stage);
      return s ? [...chain(s.from), ...s.lines] : [];
    };
    const one = (stage: string, instruction: string) => chain(stage).filter((l) => l.startsWith(`${instruction} `)).pop();

    for (const role of ['frontend', 'backend'] as const) {
      it(`has a ${role} target that runs the role's entry point as a non-root user and stops on SIGTERM`, () => {
        const cmd = JSON.parse(one(role, 'CMD')!.slice(4)) as string[];
        assert.deepEqual(cmd, ['node', 'packages/cli/bin/mailgrid.js', role]);
        assert.ok(existsSync(join(repoRoot, cmd[1])), `${cmd[1]} is built`);
        assert.equal(one(role, 'USER'), 'USER node');
        assert.equal(one(role, 'STOPSIGNAL'), 'STOPSIGNAL SIGTERM');
        const expose = one(role, 'EXPOSE')!.split(/\s+/).slice(1).map(Number).sort((a, b) => a - b);
        assert.deepEqual(expose, rolePorts(role, loadConfig({ env: {} })), 'EXPOSE: the role\'s ports at their defaults');
      });
    }

    it('installs production dependencies only and ships what protocol reads at run time', () => {
      assert.match(text, /npm (prune|ci) --omit=dev/);
      for (const file of ['proto', 'packages/protocol/loader-options.json']) {
        assert.ok(existsSync(join(repoRoot, file)), file);
        assert.ok(text.includes(file.split('/').pop()!), `the image has ${file}`);
      }
      const ignore = readFileSync(join(repoRoot, '.dockerignore'), 'utf8').split('\n');
      for (const entry of ['**/node_modules', '**/dist', '.git', 'test/dist', 'bench-results']) assert.ok(ignore.includes(entry), `.dockerignore: ${entry}`);
    });

    describe('HEALTHCHECK', () => {
      let health: HealthServer;
      before(async () => {
        // A real port: 0 turns the HTTP listener off.
        health = new HealthServer({ host: '127.0.0.1', port: await freePort(), log: createLogger({ level: 'silent' }), services: () => [] });
        await health.start();
      });
      after(() => health.stop());

      it('asks the node on MAILGRID_HTTP_PORT and fails when nothing answers', async () => {
        const check = one('runtime', 'HEALTHCHECK')!;
        const cmd = JSON.parse(check.slice(check.indexOf('CMD') + 3)) as string[];
        assert.equal(cmd[0], 'node');
        assert.ok(cmd.join(' ').includes('/healthz'), 'the liveness path');
        // Not spawnSync: the health server answers from this process's event loop.
        const run = (env: Record<string, string>) =>
          new Promise<number | null>((resolve) => {
            const child = spawn(process.execPath, cmd.slice(1), { env: { PATH: process.env.PATH, ...env }, stdio: 'ignore', timeout: 10_000 });
            child.once('exit', (code) => resolve(code));
          });
        assert.equal(await run({ [PORT_ENV.http]: String(health.port) }), 0, 'healthy');
        assert.equal(await run({ [PORT_ENV.http]: '1' }), 1, 'nothing listens');
      });
    });
  });

  describe('compose', () => {
    const compose = parse(read('compose.yaml'), { merge: true }) as {
      services: Record<string, Record<string, any>>;
      networks: Record<string, any>;
      volumes: Record<string, unknown>;
    };
    // Compose's ${VAR:-default}: the default, as an unset .env gives.
    const interpolate = (v: unknown) => String(v).replace(/\$\{[A-Z0-9_]+(?::?-([^}]*))?\}/g, (_, dflt: string | undefined) => dflt ?? '');
    const nodes = once(() =>
      Object.entries(compose.services)
        .filter(([, s]) => s.build)
        .map(([name, s]) => {
          const role = s.build.target as NodeRole;
          const env = Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, interpolate(v)]));
          return { name, role, service: s, env, config: checkNode(`compose ${name}`, env) };
        }),
    );

    it('gives every node the settings of its role, and they load', () => {
      const topology = clusterNodes(SHAPE);
      for (const { name, role, env, config } of nodes()) {
        const node = topology.find((n) => n.id === name);
        assert.ok(node, `compose ${name}: a node of the launcher's cluster`);
        // HAProxy sends the PROXY header to the frontends.
        assertRoleSettings(`compose ${name}`, role, env, config, { id: name, group: node.group, proxy: true });
      }
    });

    it('is the launcher\'s cluster: the same node names, roles and groups', () => {
      const expected = clusterNodes(SHAPE).map((n) => `${n.id} ${n.role} ${n.group ?? ''}`).sort();
      assert.deepEqual(nodes().map((n) => `${n.name} ${n.role} ${n.role === 'backend' ? n.config.backend.group : ''}`).sort(), expected);
      for (const n of nodes()) {
        assert.equal(n.config.nodeId, n.name);
        assert.ok(existsSync(join(deploy, n.service.build.context, n.service.build.dockerfile)), `${n.name}: its Dockerfile`);
      }
    });

    it('binds every listener in the container and advertises the service name', () => {
      for (const { name, role, config } of nodes()) {
        assert.equal(config.grpc.host, '0.0.0.0', name);
        assert.equal(config.http.host, '0.0.0.0', name);
        if (role === 'frontend') assert.equal(config.listen.host, '0.0.0.0', name);
        assert.equal(config.grpc.advertise, `${name}:${config.grpc.port}`, name);
        assert.deepEqual(compose.services[name].expose.map(Number).sort((a: number, b: number) => a - b), rolePorts(role, config), `${name}: expose`);
      }
    });

    it('keeps each node\'s data on a named volume of its own', () => {
      const seen = new Set<string>();
      for (const { name, service, config } of nodes()) {
        const mounts = (service.volumes as string[]).map((v) => v.split(':'));
        const data = mounts.find(([, path]) => path === config.dataDir);
        assert.ok(data, `${name}: a volume on ${config.dataDir}`);
        assert.ok(data[0] in compose.volumes, `${name}: ${data[0]} is a named volume`);
        assert.ok(!seen.has(data[0]), `${name}: ${data[0]} is its own`);
        seen.add(data[0]);
      }
    });

    it('gives every node more time to stop than its drain, after etcd is up', () => {
      for (const { name, service, config } of nodes()) {
        assert.ok(duration(service.stop_grace_period) >= config.drainMs + AFTER_DRAIN_MS, `${name}: stop_grace_period above MAILGRID_DRAIN_MS`);
        assert.equal(service.depends_on?.etcd?.condition, 'service_healthy', name);
        const etcd = new URL(config.etcd);
        assert.ok(compose.services[etcd.hostname], `${name}: ${config.etcd} is a service`);
        assert.ok(compose.services[etcd.hostname].command.includes(`--advertise-client-urls=${config.etcd}`), `${name}: etcd's address`);
      }
    });

    it('puts HAProxy in front of the frontends with the PROXY protocol from its own network only', () => {
      const haproxy = compose.services.haproxy;
      const frontends = nodes().filter((n) => n.role === 'frontend');
      const edge = haproxy.networks as string[];
      assert.equal(edge.length, 1);
      const subnet = compose.networks[edge[0]].ipam.config[0].subnet;
      const onEdge = Object.entries(compose.services).filter(([, s]) => (s.networks ?? []).includes(edge[0])).map(([n]) => n).sort();
      assert.deepEqual(onEdge, ['haproxy', ...frontends.map((f) => f.name)].sort(), 'only HAProxy and the frontends share the PROXY network');
      for (const f of frontends) {
        assert.equal(f.config.listen.proxyProtocol, true, f.name);
        assert.equal(f.config.listen.proxyFrom, subnet, `${f.name}: PROXY only from ${subnet}`);
      }
      const published = (haproxy.ports as string[]).map((p) => Number(p.split(':').pop())).sort((a, b) => a - b);
      assert.deepEqual(published, Object.values(ACCESS_PORTS).sort((a, b) => a - b));
      const mount = (haproxy.volumes as string[]).map((v) => v.split(':')).find(([, path]) => path === '/usr/local/etc/haproxy/haproxy.cfg');
      assert.ok(mount, 'HAProxy gets its config');
      const binds = Object.fromEntries(ACCESS_SERVICES.map((s) => [s, `0.0.0.0:${ACCESS_PORTS[s]}`])) as Record<AccessListenerName, string>;
      const servers: HaproxyFrontend[] = frontends.map((f) => ({
        id: f.name,
        host: f.name,
        ports: Object.fromEntries(ACCESS_SERVICES.map((s) => [s, port(f.config, s)])) as Record<AccessListenerName, number>,
        httpPort: f.config.http.port,
      }));
      assert.equal(body(read(mount[0])), body(haproxyConfig(binds, servers, { dns: '127.0.0.11:53' })), `${mount[0]} is haproxyConfig()'s`);
    });
  });

  const haproxy = spawnSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' }).stdout.trim();
  it('has HAProxy configs HAProxy accepts', { skip: !haproxy && 'haproxy is not installed' }, () => {
    for (const cfg of ['haproxy.cfg', 'compose-haproxy.cfg']) {
      const r = spawnSync(haproxy, ['-c', '-f', join(deploy, cfg)], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 0, `${cfg}: ${r.stdout}${r.stderr}`);
    }
  });

  describe('kubernetes', () => {
    type Obj = { kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: any; data?: Record<string, string>; stringData?: Record<string, string> };
    const dir = join(deploy, 'kubernetes');
    const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
    const kustomization = parse(read('kubernetes', 'kustomization.yaml')) as { namespace: string; resources: string[] };
    const objects: Obj[] = files
      .filter((f) => f !== 'kustomization.yaml')
      .flatMap((f) => parseAllDocuments(read('kubernetes', f)).map((d) => d.toJS() as Obj))
      .filter(Boolean);
    const ns = kustomization.namespace;
    const of = (kind: string) => objects.filter((o) => o.kind === kind);
    const named = (kind: string, name: string) => of(kind).find((o) => o.metadata.name === name);
    const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);
    const sets = of('StatefulSet').filter((s) => s.metadata.labels?.['app.kubernetes.io/name'] === 'mailgrid');

    /** A pod's environment as the kubelet makes it: envFrom, then env in order, $(VAR) expanded. */
    function podEnv(container: any, pod: string): Record<string, string> {
      const env: Record<string, string> = {};
      for (const from of container.envFrom ?? []) {
        const ref = from.configMapRef ?? from.secretRef;
        const source = named(from.configMapRef ? 'ConfigMap' : 'Secret', ref.name);
        assert.ok(source, `${pod}: ${ref.name} exists`);
        Object.assign(env, source.data, source.stringData);
      }
      for (const e of container.env ?? []) {
        if ('value' in e) env[e.name] = String(e.value).replace(/\$\(([A-Za-z0-9_]+)\)/g, (m, v: string) => env[v] ?? m);
        else if (e.valueFrom.fieldRef) env[e.name] = ({ 'metadata.name': pod, 'metadata.namespace': ns } as Record<string, string>)[e.valueFrom.fieldRef.fieldPath];
        else {
          const ref = e.valueFrom.secretKeyRef ?? e.valueFrom.configMapKeyRef;
          const source = named(e.valueFrom.secretKeyRef ? 'Secret' : 'ConfigMap', ref.name);
          const value = source?.stringData?.[ref.key] ?? source?.data?.[ref.key];
          assert.ok(value !== undefined, `${pod}: ${e.name} from ${ref.name}/${ref.key}, which exists`);
          env[e.name] = value;
        }
      }
      return env;
    }

    const pods = once(() =>
      sets.flatMap((set) => {
        const role = set.metadata.labels!['app.kubernetes.io/component'] as NodeRole;
        const container = set.spec.template.spec.containers[0];
        return Array.from({ length: set.spec.replicas }, (_, i) => {
          const name = `${set.metadata.name}-${i}`;
          const env = podEnv(container, name);
          return { name, role, set, container, env, config: checkNode(`kubernetes ${name}`, env) };
        });
      }),
    );

    it('gives every pod the settings of its role, and they load', () => {
      for (const { name, role, set, env, config } of pods()) {
        // A backend's group is its StatefulSet's; the LoadBalancer keeps the client address, so no PROXY header.
        assertRoleSettings(`kubernetes ${name}`, role, env, config, { id: name, group: role === 'backend' ? set.metadata.labels!['mailgrid/group'] : undefined, proxy: false });
      }
    });

    it('lists every manifest in kustomization.yaml, all in one namespace', () => {
      assert.deepEqual([...kustomization.resources].sort(), files.filter((f) => f !== 'kustomization.yaml'));
      for (const o of objects) if (o.kind !== 'Namespace') assert.equal(o.metadata.namespace, ns, `${o.kind} ${o.metadata.name}`);
    });

    it('is the launcher\'s cluster: 2 frontends, and a StatefulSet of a primary and a replica per group', () => {
      assert.deepEqual(roster(pods().map((p) => ({ role: p.role, group: p.config.backend.group }))), roster(clusterNodes(SHAPE)));
      for (const set of sets.filter((s) => s.metadata.labels!['app.kubernetes.io/component'] === 'backend')) {
        const groups = new Set(pods().filter((p) => p.set === set).map((p) => p.config.backend.group));
        assert.deepEqual([...groups], [set.metadata.labels!['mailgrid/group']], `${set.metadata.name}: one group, its label's`);
        assert.equal(set.spec.podManagementPolicy, 'Parallel', `${set.metadata.name}: a replica waiting for sync must not hold back the other pod`);
      }
    });

    it('names each node after its pod and advertises its stable DNS name', () => {
      for (const { name, set, config, role } of pods()) {
        assert.equal(config.nodeId, name);
        const svc = named('Service', set.spec.serviceName);
        assert.ok(svc, `${name}: its headless Service`);
        assert.equal(svc.spec.clusterIP, 'None');
        assert.equal(svc.spec.publishNotReadyAddresses, true, 'a replica catching up is dialled by name too');
        assert.ok(matches(svc.spec.selector, set.spec.template.metadata.labels), `${name}: selected by ${svc.metadata.name}`);
        assert.equal(config.grpc.advertise, `${name}.${svc.metadata.name}.${ns}.svc:${config.grpc.port}`);
        assert.equal(config.grpc.host, '0.0.0.0', name);
        assert.equal(config.http.host, '0.0.0.0', name);
        if (role === 'frontend') assert.equal(config.listen.host, '0.0.0.0', name);
      }
    });

    it('declares the role\'s ports and probes /healthz and /readyz on the HTTP port', () => {
      for (const { name, role, container, config } of pods()) {
        const ports = container.ports as { name: string; containerPort: number }[];
        assert.deepEqual(ports.map((p) => p.containerPort).sort((a, b) => a - b), rolePorts(role, config), `${name}: containerPort`);
        for (const p of ports) assert.equal(p.containerPort, port(config, p.name as PortName), `${name}: port ${p.name}`);
        const probePort = (probe: any) => (typeof probe.httpGet.port === 'number' ? probe.httpGet.port : ports.find((p) => p.name === probe.httpGet.port)?.containerPort);
        for (const [probe, path] of [['livenessProbe', '/healthz'], ['startupProbe', '/healthz'], ['readinessProbe', '/readyz']]) {
          assert.equal(container[probe]?.httpGet.path, path, `${name}: ${probe}`);
          assert.equal(probePort(container[probe]), config.http.port, `${name}: ${probe} on MAILGRID_HTTP_PORT`);
        }
      }
    });

    it('keeps the data on a volume claim and gives the pods more time to stop than their drain', () => {
      for (const { name, set, container, config } of pods()) {
        const mount = container.volumeMounts.find((m: { mountPath: string }) => m.mountPath === config.dataDir);
        assert.ok(mount, `${name}: ${config.dataDir} mounted`);
        assert.ok(set.spec.volumeClaimTemplates.some((t: Obj) => t.metadata.name === mount.name), `${name}: ${mount.name} is a volume claim`);
        const preStop = container.lifecycle?.preStop?.exec?.command;
        const pause = preStop ? duration(preStop[preStop.length - 1]) : 0;
        const grace = duration(set.spec.template.spec.terminationGracePeriodSeconds);
        assert.ok(grace >= pause + config.drainMs + AFTER_DRAIN_MS, `${name}: terminationGracePeriodSeconds above preStop + MAILGRID_DRAIN_MS`);
      }
    });

    it('has a disruption budget per group that keeps one member, and one for the frontends', () => {
      const budgets = of('PodDisruptionBudget');
      for (const set of sets) {
        const labels = set.spec.template.metadata.labels;
        const mine = budgets.filter((b) => matches(b.spec.selector.matchLabels, labels));
        assert.equal(mine.length, 1, `${set.metadata.name}: one budget`);
        assert.equal(mine[0].spec.minAvailable, set.spec.replicas - 1, `${set.metadata.name}: never below ${set.spec.replicas - 1} ready (in sync)`);
        for (const other of sets.filter((s) => s !== set))
          assert.ok(!matches(mine[0].spec.selector.matchLabels, other.spec.template.metadata.labels), `${mine[0].metadata.name} counts ${other.metadata.name}'s pods`);
      }
    });

    it('serves the access ports on a LoadBalancer that keeps the client address, so no PROXY header', () => {
      const lbs = of('Service').filter((s) => s.spec.type === 'LoadBalancer');
      assert.equal(lbs.length, 1);
      const lb = lbs[0];
      assert.equal(lb.spec.externalTrafficPolicy, 'Local');
      const frontends = pods().filter((p) => p.role === 'frontend');
      for (const p of pods()) assert.equal(matches(lb.spec.selector, p.set.spec.template.metadata.labels), p.role === 'frontend', `${p.name}: behind the balancer`);
      assert.deepEqual(Object.fromEntries(lb.spec.ports.map((p: { name: string; port: number }) => [p.name, p.port])), ACCESS_PORTS);
      for (const f of frontends) {
        assert.equal(f.config.listen.proxyProtocol, false, `${f.name}: the client address comes with the connection`);
        for (const p of lb.spec.ports) {
          const target = f.container.ports.find((c: { name: string }) => c.name === p.targetPort)?.containerPort ?? p.targetPort;
          assert.equal(target, port(f.config, p.name), `${f.name}: ${p.name}`);
        }
      }
    });

    it('reaches etcd and the admin token Secret by the names it gives', () => {
      for (const { name, container, config } of pods()) {
        const etcd = new URL(config.etcd.split(',')[0]);
        const svc = named('Service', etcd.hostname);
        assert.ok(svc, `${name}: ${etcd.hostname} is a Service`);
        assert.ok(svc.spec.ports.some((p: { port: number }) => p.port === Number(etcd.port)), `${name}: etcd's port`);
        const token = container.env.find((e: { name: string }) => e.name === 'MAILGRID_HTTP_ADMIN_TOKEN');
        assert.ok(token?.valueFrom?.secretKeyRef, `${name}: the admin token from a Secret`);
      }
    });
  });

  describe('systemd', () => {
    const dir = join(deploy, 'systemd');
    type Unit = { file: string; keys: Map<string, string[]> };
    const units: Unit[] = readdirSync(dir)
      .filter((f) => f.endsWith('.service'))
      .map((file) => {
        const keys = new Map<string, string[]>();
        for (const line of read('systemd', file).split('\n')) {
          const m = /^([A-Za-z]+)=(.*)$/.exec(line);
          if (m) keys.set(m[1], [...(keys.get(m[1]) ?? []), m[2]]);
        }
        return { file, keys };
      });
    const key = (u: Unit, k: string) => u.keys.get(k)?.at(-1);
    const envFile = (text: string) =>
      Object.fromEntries(
        text
          .split('\n')
          .filter((l) => /^[A-Z0-9_]+=/.test(l))
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
    // Each example env file with the unit that reads it (the instance from its name).
    const nodes = once(() =>
      readdirSync(dir)
      .filter((f) => f.endsWith('.env'))
      .map((file) => {
        const found = units.flatMap((u) => {
          const pattern = key(u, 'EnvironmentFile')!;
          const m = new RegExp(`^${pattern.replace(/[.]/g, '\\.').replace('%i', '(.+)')}$`).exec(`/etc/mailgrid/${file}`);
          return m ? [{ unit: u, instance: m[1] }] : [];
        });
        assert.equal(found.length, 1, `${file}: read by one unit`);
        const { unit, instance } = found[0];
        const role = /packages\/cli\/bin\/mailgrid\.js (frontend|backend)$/.exec(key(unit, 'ExecStart')!)![1] as NodeRole;
        const own = envFile(read('systemd', file));
        const fromUnit = envFile((unit.keys.get('Environment') ?? []).map((e) => e.replaceAll('%i', instance ?? '')).join('\n'));
        assert.deepEqual(Object.keys(own).filter((k) => k in fromUnit), [], `${file}: sets nothing the unit sets`);
        const env = { ...fromUnit, ...own };
        return { file, unit, instance, role, env, config: checkNode(`systemd ${file}`, env) };
      }),
    );

    it('gives every example the settings of its role, and they load', () => {
      for (const { file, role, instance, env, config } of nodes()) {
        // Each example is the first node of its role (and group, the unit's instance) in the launcher's cluster; the frontend is behind deploy/haproxy.cfg, which sends the PROXY header.
        const first = clusterNodes(SHAPE).find((n) => n.role === role && (role === 'frontend' || n.group === instance));
        assert.ok(first, `systemd ${file}: a ${role}${instance ? ` of group ${instance}` : ''} in the launcher's cluster`);
        assertRoleSettings(`systemd ${file}`, role, env, config, { id: first.id, group: first.group, proxy: role === 'frontend' });
      }
    });

    it('has an example settings file for every unit', () => {
      assert.deepEqual([...new Set(nodes().map((n) => n.unit.file))].sort(), units.map((u) => u.file).sort());
    });

    it('runs each role as mailgrid, restarts it on failure, and stops it with SIGTERM after its drain', () => {
      for (const { file, unit, instance, config } of nodes()) {
        const where = `${unit.file} (${file})`;
        assert.equal(key(unit, 'User'), 'mailgrid', where);
        assert.equal(key(unit, 'Restart'), 'on-failure', where);
        assert.equal(key(unit, 'KillSignal'), 'SIGTERM', where);
        assert.ok(['exec', 'notify'].includes(key(unit, 'Type')!), where);
        assert.ok(duration(key(unit, 'TimeoutStopSec')!) >= config.drainMs + AFTER_DRAIN_MS, `${where}: TimeoutStopSec above MAILGRID_DRAIN_MS`);
        assert.equal(key(unit, 'NoNewPrivileges'), 'yes', where);
        assert.equal(key(unit, 'ProtectSystem'), 'strict', where);
        // The first of the writable places under ProtectSystem=strict is the data dir.
        assert.equal(`/var/lib/${key(unit, 'StateDirectory')!.split(/\s+/)[0].replaceAll('%i', instance ?? '')}`, config.dataDir, where);
        assert.match(key(unit, 'ExecStart')!, /^\/usr\/bin\/node \/opt\/mailgrid\/packages\/cli\/bin\/mailgrid\.js (frontend|backend)$/);
      }
    });

    it('is what deploy/haproxy.cfg balances over', () => {
      const cfg = read('haproxy.cfg');
      const frontends = nodes().filter((n) => n.role === 'frontend');
      assert.equal(frontends.length, 1, 'frontend.env is fe-1');
      const fe = frontends[0].config;
      // Every frontend runs with the same settings as fe-1, on its own address.
      const hosts = [...new Set([...cfg.matchAll(/^\s*server (\S+) ([^:\s]+):/gm)].map((m) => `${m[1]} ${m[2]}`))];
      assert.ok(hosts.includes(`${fe.nodeId} ${fe.listen.host}`), `fe-1 at ${fe.listen.host}`);
      const servers = hosts.map((h) => {
        const [id, host] = h.split(' ');
        return { id, host, ports: Object.fromEntries(ACCESS_SERVICES.map((s) => [s, port(fe, s)])) as Record<AccessListenerName, number>, httpPort: fe.http.port };
      });
      const binds = Object.fromEntries(ACCESS_SERVICES.map((s) => [s, `0.0.0.0:${ACCESS_PORTS[s]}`])) as Record<AccessListenerName, string>;
      assert.equal(body(cfg), body(haproxyConfig(binds, servers)), 'deploy/haproxy.cfg is haproxyConfig()\'s');
    });

    const analyze = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).stdout.trim();
    it('passes systemd-analyze verify', { skip: !analyze && 'systemd-analyze is not installed' }, () => {
      // The units as installed, but pointing at this checkout, so verify finds what they run.
      const tmp = mkdtempSync(join(tmpdir(), 'mailgrid-units-'));
      try {
        const paths = units.map((u) => {
          writeFileSync(
            join(tmp, u.file),
            read('systemd', u.file).replaceAll('/usr/bin/node', process.execPath).replaceAll('/opt/mailgrid/', `${repoRoot.replace(/\/$/, '')}/`),
          );
          const instance = nodes().find((n) => n.unit === u)?.instance;
          return join(tmp, u.file.replace('@.', `@${instance}.`));
        });
        const r = spawnSync(analyze, ['verify', '--man=no', ...paths], { encoding: 'utf8', timeout: 60_000 });
        const ours = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.includes('mailgrid'));
        assert.deepEqual(ours, [], 'no warning about the units');
        assert.equal(r.status, 0, r.stderr);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    });
  });
});
