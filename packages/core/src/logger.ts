import { pino, type Logger, type LoggerOptions } from 'pino';
import { createRequire } from 'node:module';
import type { SonicBoom as SonicBoomClass } from 'sonic-boom';

// sonic-boom is CommonJS; its class is the module itself.
const SonicBoom = createRequire(import.meta.url)('sonic-boom') as typeof SonicBoomClass;

export type { Logger } from 'pino';

/**
 * The one root logger of a process. Components take `log.child({ component })`, SMTP
 * sessions `child({ session })`; event names go in `event` so they can be searched.
 */
export function createLogger(options: { level: string; name?: string }, destination?: pino.DestinationStream): Logger {
  const components = new Set<WeakRef<Logger>>();
  const config: LoggerOptions = {
    level: options.level,
    // pino children copy their level when made; remember the per-component ones so a
    // level changed at run time reaches them (session loggers are made from those).
    // A session's child is not one, and is made per connection: told apart by pino's own
    // serialized bindings, without parsing them.
    onChild: (child) => {
      const own = (child as unknown as Record<symbol, string>)[pino.symbols.chindingsSym];
      if (own.includes('"component":') && !own.includes('"session":')) components.add(new WeakRef(child));
    },
    base: { pid: process.pid, ...(options.name ? { node: options.name } : {}) },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  const root = destination ? pino(config, destination) : pino(config, nonBlocking());
  levelSetters.set(root, (level) => {
    root.level = level;
    for (const ref of components) {
      const child = ref.deref();
      if (child) child.level = level;
      else components.delete(ref);
    }
  });
  return root;
}

const levelSetters = new WeakMap<Logger, (level: string) => void>();

/** Changes the level of a root logger and of every component logger made from it. */
export function setLogLevel(root: Logger, level: string): void {
  const set = levelSetters.get(root);
  if (set) set(level);
  else root.level = level;
}

/**
 * stdout for the log, never in the way of the mail: written asynchronously, in batches of
 * 8 KB or every 250 ms, whichever comes first (a write per line was a syscall and a
 * thread-pool job per message on each thread), and flushed synchronously when the process
 * or thread exits, a crash included. When a write fails (the log's disk is full) the lines
 * wait in memory up to 16 MB, past that they are dropped and counted, and the count is
 * logged once writing works again. Made here rather than with `pino.destination`, which
 * re-throws a write error as an uncaught exception and registers an exit hook whose
 * synchronous flush retries a full disk for ever.
 */
function nonBlocking(): pino.DestinationStream {
  const dest = new SonicBoom({ fd: 1, sync: false, minLength: 8 * 1024, periodicFlush: 250, maxLength: 16 * 1024 * 1024 });
  let failing = false;
  let dropped = 0;
  dest.on('error', (err: NodeJS.ErrnoException) => {
    // A reader that went away (EPIPE) will not come back: stop writing.
    if (err.code === 'EPIPE') dest.write = () => true;
    failing = true;
  });
  dest.on('drop', () => {
    dropped++;
  });
  dest.on('write', () => {
    if (!failing) return;
    failing = false;
    if (dropped) dest.write(JSON.stringify({ level: 'warn', time: new Date().toISOString(), pid: process.pid, event: 'log.dropped', lines: dropped, msg: 'log lines dropped while they could not be written' }) + '\n');
    dropped = 0;
  });
  process.on('exit', () => {
    try {
      // One attempt: a full disk must not hold a dying process.
      if (!failing) dest.flushSync();
    } catch {
      // nothing more to be done
    }
  });
  return dest;
}

/**
 * Ends the process with `code` a moment after a last log line: long enough for the line to
 * be written, not so long that a log that cannot be written keeps a dying process alive.
 */
export function exitSoon(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 200);
}
