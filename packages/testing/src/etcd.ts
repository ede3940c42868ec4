import { singleEtcdArgs } from '@mailgrid/cluster';
import { freePort } from '@mailgrid/core';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface EtcdHandle {
  /** `http://127.0.0.1:<port>`, for connectEtcd. */
  endpoint: string;
  /** The temporary directory: etcd's data in `data/`, its output in `etcd.log`. */
  dataDir: string;
  /** SIGTERM, wait, and remove the directory. */
  stop(): Promise<void>;
  /** SIGKILL and wait; the directory stays until stop(). */
  kill(): Promise<void>;
}

/**
 * A real one-member etcd (the `etcd` binary on PATH) on free loopback ports in a temporary
 * directory, answering when this resolves. No auto-compaction: tests compact themselves.
 * `args` go after the usual flags (a bench's larger limits).
 */
export async function startEtcd(options: { args?: string[] } = {}): Promise<EtcdHandle> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mailgrid-etcd-'));
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const out = openSync(join(dataDir, 'etcd.log'), 'a');
  const child = spawn('etcd', [...singleEtcdArgs('test', join(dataDir, 'data'), clientPort, peerPort), ...(options.args ?? [])], { stdio: ['ignore', out, out] });
  closeSync(out);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));
  // A test process that dies must not leave etcd behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const running = () => child.exitCode === null && child.signalCode === null;
  const end = async (signal: NodeJS.Signals) => {
    if (running()) child.kill(signal);
    await exited;
    process.off('exit', killOnExit);
  };
  const handle: EtcdHandle = {
    endpoint,
    dataDir,
    stop: async () => {
      await end('SIGTERM');
      rmSync(dataDir, { recursive: true, force: true });
    },
    kill: () => end('SIGKILL'),
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (spawnError || !running()) {
      await handle.stop().catch(() => undefined);
      throw new Error(`etcd did not start: ${spawnError?.message ?? `exited with ${child.exitCode}`} (is etcd on PATH? Debian: etcd-server)`);
    }
    if (await healthy(endpoint)) return handle;
    if (Date.now() > deadline) {
      await handle.stop();
      throw new Error('etcd did not answer within 20 s');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function healthy(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
    return res.ok && ((await res.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}
