import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/**
 * The one root logger of a process. Components take `log.child({ component })`, SMTP
 * sessions `child({ session })`; event names go in `event` so they can be searched.
 */
export function createLogger(options: { level: string; name?: string }, destination?: pino.DestinationStream): Logger {
  const config: LoggerOptions = {
    level: options.level,
    base: { pid: process.pid, ...(options.name ? { node: options.name } : {}) },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return destination ? pino(config, destination) : pino(config, pino.destination({ sync: false }));
}
