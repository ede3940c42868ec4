import { pino, type Logger, type LoggerOptions } from 'pino';

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
    onChild: (child) => {
      const b = child.bindings();
      if (b.component && !b.session) components.add(new WeakRef(child));
    },
    base: { pid: process.pid, ...(options.name ? { node: options.name } : {}) },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  const root = destination ? pino(config, destination) : pino(config, pino.destination({ sync: false }));
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
