// Writes deploy/haproxy.cfg and deploy/compose-haproxy.cfg anew from haproxyConfig() and the
// deploy files' frontends (their comments above `global` are kept); test/deploy.test.ts
// checks they agree. Run after a change to the registry or to haproxyConfig (npm run build first).
import { readFileSync, writeFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ACCESS_LISTENERS, leaves, loadConfig } from '@mailgrid/core';
import { ACCESS_PORTS, haproxyConfig, PORT_ENV } from '@mailgrid/cli';

const byEnv = new Map(leaves().map((l) => [l.env, l]));
const port = (config, name) => byEnv.get(PORT_ENV[name]).path.reduce((o, k) => o[k], config);
const binds = Object.fromEntries(ACCESS_LISTENERS.map((l) => [l.name, `0.0.0.0:${ACCESS_PORTS[l.name]}`]));
const serversOf = (config, id, host) => ({ id, host, ports: Object.fromEntries(ACCESS_LISTENERS.map((l) => [l.name, port(config, l.name)])), httpPort: config.http.port });
const rewrite = (file, body) => {
  const old = readFileSync(file, 'utf8');
  writeFileSync(file, old.slice(0, old.indexOf('\nglobal\n') + 1) + body.slice(body.indexOf('global\n')));
};

// Compose: every frontend service, found by its name through Docker's DNS.
const compose = parse(readFileSync('deploy/compose.yaml', 'utf8'), { merge: true });
const frontends = Object.entries(compose.services).filter(([, s]) => (s.command ?? '').toString().includes('frontend') || s.build?.target === 'frontend');
rewrite('deploy/compose-haproxy.cfg', haproxyConfig(binds, frontends.map(([name, s]) => serversOf(loadConfig({ env: Object.fromEntries(Object.entries(s.environment).map(([k, v]) => [k, String(v)])) }), name, name)), { dns: '127.0.0.11:53' }));

// A balancer of its own: the servers it names now, each with fe-1's settings (systemd/frontend.env).
const env = Object.fromEntries(readFileSync('deploy/systemd/frontend.env', 'utf8').split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
const fe = loadConfig({ env });
const cfg = readFileSync('deploy/haproxy.cfg', 'utf8');
const hosts = [...new Set([...cfg.matchAll(/^\s*server (\S+) ([^:\s]+):/gm)].map((m) => `${m[1]} ${m[2]}`))];
rewrite('deploy/haproxy.cfg', haproxyConfig(binds, hosts.map((h) => serversOf(fe, ...h.split(' ')))));
