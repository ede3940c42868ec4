import { setFlagsFromString } from 'node:v8';
import { configWarnings, type Config } from './config.js';
import { createLogger, exitSoon, type Logger } from './logger.js';
import { runUntilSignal, type Service } from './service.js';

/** A deployable role's whole main: config → build → start → wait for a signal → stop. */
export async function runRole(build: (config: Config, log: Logger) => Service[], config: Config, printConfig = false): Promise<void> {
  if (printConfig) {
    process.stdout.write(JSON.stringify(config, null, 2) + '\n');
    return;
  }
  // V8 lets the old generation grow to ~4x what survived the last full GC; under SMTP load
  // that was 40-70 MB of dead objects (and the Buffers they hold) per isolate. 1.5x keeps
  // peak RSS ~75 MB lower at no cost to the main thread (marking runs on V8's helpers).
  // Read at every GC, so it applies to worker isolates too. `node --heap-growing-percent=N`
  // overrides it (NODE_OPTIONS does not accept this flag).
  if (!process.execArgv.some((a) => a.startsWith('--heap-growing-percent'))) setFlagsFromString('--heap-growing-percent=50');
  const log = createLogger({ level: config.log.level, name: config.nodeId });
  installRejectionGuard(log);
  for (const warning of configWarnings(config)) log.warn({ event: 'config.deprecated' }, warning);
  await runUntilSignal(build(config, log), log, config.drainMs);
  log.flush();
}

/**
 * An unhandled rejection is a bug: logged, and the process (or the worker thread) ends for
 * its supervisor to restart it, as Node itself would, but with a log line saying why. A
 * full disk is not one: every storage write consumes what lmdb-js leaves rejected (`commit`).
 */
export function installRejectionGuard(log: Logger): void {
  process.on('unhandledRejection', (err) => {
    log.fatal({ event: 'process.unhandled-rejection', err }, 'unhandled rejection');
    exitSoon(1);
  });
}
