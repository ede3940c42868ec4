import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './node-process.js';

/** One process of a local cluster, as `.mailgrid/cluster.json` lists it. */
export interface ClusterProc {
  id: string;
  pid: number;
  role: string;
  group?: string;
  ports: Record<string, number>;
  dataDir?: string;
  log: string;
}

export interface ClusterStateFile {
  dir: string;
  etcd: string;
  prefix: string;
  smtp: string;
  processes: ClusterProc[];
}

/**
 * A fresh folder to run `mailgrid cluster up` and every other command in, as an operator
 * would: `cli` runs one, `ok` also asserts it succeeded, `state` reads the cluster's state
 * file (pids and ports change when a member is started again), `proc` finds one process.
 */
export function clusterFolder(name: string) {
  const cwd = mkdtempSync(join(tmpdir(), `mailgrid-${name}-`));
  const cli = (...args: string[]) => runCli(args, {}, cwd);
  const ok = async (...args: string[]) => {
    const r = await cli(...args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r;
  };
  const state = () => JSON.parse(readFileSync(join(cwd, '.mailgrid', 'cluster.json'), 'utf8')) as ClusterStateFile;
  const proc = (id: string) => {
    const p = state().processes.find((x) => x.id === id);
    if (!p) throw new Error(`no process ${id} in the cluster`);
    return p;
  };
  return { cwd, cli, ok, state, proc };
}
