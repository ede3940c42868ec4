import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ACCESS_LISTENERS, leaves, type AccessListenerName } from '@mailgrid/core';
import { freePort } from './ports.js';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const cliPath = join(repoRoot, 'packages', 'cli', 'bin', 'mailgrid.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `mailgrid ARGS` with the given environment (and `input` on standard input); never throws for a non-zero exit. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string, input?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [cliPath, ...args], { cwd, env: { ...process.env, ...env }, encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout: stdout.toString('latin1'), stderr: stderr.toString() });
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

export interface NodeHandle {
  dataDir: string;
  smtpPort: number;
  grpcPort: number;
  /** Every access listener of the registry by its name (`smtp`, `submission`, `pop3s`, ...), and the HTTP port. */
  ports: Record<AccessListenerName | 'http', number>;
  env: NodeJS.ProcessEnv;
  process: ChildProcess;
  /** Every log line the node printed, parsed. */
  logs: Record<string, unknown>[];
  cli(...args: string[]): Promise<CliResult>;
  /** `mailgrid ARGS` with `input` on standard input (`account passwd` reads the password there). */
  cliInput(input: string, ...args: string[]): Promise<CliResult>;
  /** SIGTERM and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
}

/**
 * Starts `mailgrid start` as a real process on free loopback ports and waits until it
 * is ready (/readyz). Pass the same dataDir again to restart a node on its data.
 */
export async function startNode(
  options: {
    dataDir?: string;
    env?: NodeJS.ProcessEnv;
    smtpPort?: number;
    grpcPort?: number;
    httpPort?: number;
    /** Write the node's log to this file instead of collecting it (benchmarks: parsing costs CPU). */
    logFile?: string;
  } = {},
): Promise<NodeHandle> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'mailgrid-node-'));
  const smtpPort = options.smtpPort ?? (await freePort());
  const grpcPort = options.grpcPort ?? (await freePort());
  // A free port for every listener of the registry: a protocol added there is served here too.
  const ports = { http: options.httpPort ?? (await freePort()) } as NodeHandle['ports'];
  for (const l of ACCESS_LISTENERS) ports[l.name] = l.name === 'smtp' ? smtpPort : await freePort();
  const env: NodeJS.ProcessEnv = {
    MAILGRID_DATA_DIR: dataDir,
    MAILGRID_GRPC_PORT: String(grpcPort),
    MAILGRID_NODE_ID: 'test-node',
    MAILGRID_HTTP_PORT: String(ports.http),
    ...Object.fromEntries(ACCESS_LISTENERS.map((l) => [envOf(`${l.protocol}.${l.portKey}`), String(ports[l.name])])),
    ...options.env,
  };
  const out = options.logFile ? openSync(options.logFile, 'a') : 'pipe';
  const child = spawn(process.execPath, [cliPath, 'start'], { env: { ...process.env, ...env }, stdio: ['ignore', out, 'pipe'] });
  if (typeof out === 'number') closeSync(out);
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let buf = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        logs.push(JSON.parse(line));
      } catch {
        // not a log line
      }
    }
  });
  // Ready means what a balancer sees: /readyz answers 200 (every service runs).
  let exitedEarly: Error | undefined;
  exited.then((code) => (exitedEarly = new Error(`node exited with ${code} before ready: ${stderr}`)));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exitedEarly) throw exitedEarly;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`node did not become ready in 20 s: ${stderr}`);
    }
    if (await ready(Number(env.MAILGRID_HTTP_PORT))) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    dataDir,
    smtpPort,
    grpcPort,
    ports,
    env,
    process: child,
    logs,
    cli: (...args) => runCli(args, env),
    cliInput: (input, ...args) => runCli(args, env, undefined, input),
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
    kill: async () => {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

const envOf = (key: string) => leaves().find((l) => l.key === key)!.env;

async function ready(httpPort: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`, { signal: AbortSignal.timeout(2_000) });
    return res.status === 200;
  } catch {
    return false;
  }
}

/** The JSON lines of a cluster member's log (`<dir>/<id>.log`, as `cluster up` writes it); other lines are skipped. */
export function nodeLog(dir: string, id: string): Record<string, unknown>[] {
  return readFileSync(join(dir, `${id}.log`), 'utf8')
    .split('\n')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}
