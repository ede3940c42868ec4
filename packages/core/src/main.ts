import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { ConfigError, configWarnings, leaves, loadConfig, renamedLeaves, type Config } from './config.js';
import { createLogger, exitSoon, type Logger } from './logger.js';
import { runUntilSignal, StartError, type Service } from './service.js';

/**
 * Config from a role's own command line: `--smtp-port 2525`, `--config file.json`,
 * `--print-config`, over the MAILGRID_* environment. Unknown flags are errors.
 */
export function configFromArgv(argv: string[], env: NodeJS.ProcessEnv = process.env): { config: Config; printConfig: boolean } {
  const options: Record<string, { type: 'string' | 'boolean' }> = { config: { type: 'string' }, 'print-config': { type: 'boolean' } };
  for (const leaf of [...leaves(), ...renamedLeaves()]) options[leaf.flag] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options, strict: true }).values as Record<string, string | boolean | undefined>;
  } catch (err) {
    throw new ConfigError([(err as Error).message]);
  }
  const overrides: Record<string, string> = {};
  for (const leaf of [...leaves(), ...renamedLeaves()]) {
    const v = values[leaf.flag];
    if (typeof v === 'string') overrides[leaf.key] = v;
  }
  return { config: loadConfig({ file: values.config as string | undefined, env, overrides }), printConfig: Boolean(values['print-config']) };
}

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

/** For a package's `main.js`: parse argv, run, report config errors plainly. */
export function mainFor(build: (config: Config, log: Logger) => Service[]): void {
  let parsed: ReturnType<typeof configFromArgv>;
  try {
    parsed = configFromArgv(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  runRole(build, parsed.config, parsed.printConfig).catch((err) => {
    process.stderr.write(err instanceof StartError ? `${err.message}\n` : `fatal: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  });
}
