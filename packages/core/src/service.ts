import type { Logger } from 'pino';
import { exitSoon } from './logger.js';

export type ServiceState = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

/** Everything long-running: start, stop (draining up to a deadline), an explicit state. */
export interface Service {
  readonly name: string;
  readonly state: ServiceState;
  start(): Promise<void>;
  /** Stops accepting work, finishes what is under way until `drainMs`, then closes. */
  stop(drainMs?: number): Promise<void>;
}

/**
 * Runs services until SIGTERM or SIGINT: starts them in order, stops them in reverse.
 * A second signal exits at once.
 */
export async function runUntilSignal(services: Service[], log: Logger, drainMs: number): Promise<void> {
  const started: Service[] = [];
  for (const s of services) {
    try {
      await s.start();
      started.push(s);
    } catch (err) {
      log.fatal({ event: 'start.failed', service: s.name, err }, 'start failed');
      await stopAll(started, log, drainMs);
      throw new StartError(s.name, err);
    }
  }
  log.info({ event: 'node.ready', services: services.map((s) => s.name) }, 'ready');
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  log.info({ event: 'node.draining', signal, drainMs }, 'draining');
  const again = () => {
    log.warn({ event: 'node.forced-exit' }, 'second signal, exiting now');
    exitSoon(1);
  };
  process.once('SIGTERM', again);
  process.once('SIGINT', again);
  await stopAll(started, log, drainMs);
  log.info({ event: 'node.stopped' }, 'stopped');
}

/**
 * Stops services in reverse order within one drain deadline for the whole node: each gets
 * what is left of `drainMs`, so the node is done within the engine's stop timeout however
 * many parts drain (0 left: each closes at once, which ends what is under way with 421).
 */
export async function stopAll(services: Service[], log: Logger, drainMs: number): Promise<void> {
  const deadline = Date.now() + drainMs;
  for (const s of [...services].reverse()) {
    try {
      await s.stop(Math.max(0, deadline - Date.now()));
    } catch (err) {
      log.error({ event: 'stop.failed', service: s.name, err }, 'stop failed');
    }
  }
}

/** A resource that only needs releasing when the node stops (a client, a store). */
export function closer(name: string, close: () => Promise<void> | void): Service {
  let state: ServiceState = 'new';
  return {
    name,
    get state() {
      return state;
    },
    async start() {
      state = 'running';
    },
    async stop() {
      if (state !== 'running') return;
      state = 'stopping';
      await close();
      state = 'stopped';
    },
  };
}

/** A service that could not start, said plainly (a port in use is the usual reason). */
export class StartError extends Error {
  override readonly name = 'StartError';
  constructor(service: string, cause: unknown) {
    const e = cause as NodeJS.ErrnoException & { address?: string; port?: number };
    const inUse = /EADDRINUSE/.test(String(e?.code ?? e?.message));
    const where = /(\d+\.\d+\.\d+\.\d+:\d+|\[[^\]]+\]:\d+)/.exec(String(e?.message))?.[1] ?? (e?.port ? `port ${e.port}` : 'its port');
    super(
      inUse
        ? `${service} could not start: ${where} is already in use (another mailgrid running? change the port with a flag or MAILGRID_* setting)`
        : `${service} could not start: ${e?.message ?? cause}`,
      { cause },
    );
  }
}

/**
 * Periodic upkeep (a store's passes) that runs every `everyMs`, one pass at a time; `pass`
 * gets whether the node is still running (a long pass yields between batches and ends early
 * on stop). A failed pass is logged and done again next time. Stop waits for a pass under way.
 */
export function upkeep(name: string, everyMs: number, pass: (running: () => boolean) => Promise<void>, log: Logger): Service {
  let state: ServiceState = 'new';
  let timer: NodeJS.Timeout | undefined;
  let under: Promise<void> | undefined;
  return {
    name,
    get state() {
      return state;
    },
    async start() {
      state = 'running';
      timer = setInterval(() => {
        under ??= pass(() => state === 'running')
          .catch((err) => log.warn({ event: 'upkeep.failed', upkeep: name, err }, 'upkeep failed; next time'))
          .finally(() => (under = undefined));
      }, everyMs);
      timer.unref();
    },
    async stop() {
      state = 'stopped';
      clearInterval(timer);
      await under;
    },
  };
}
