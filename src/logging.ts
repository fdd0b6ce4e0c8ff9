import pino, { type Logger } from 'pino';

export type { Logger };

/** One logger per process, named after its role. JSON lines on stdout; pipe to pino-pretty to read them. */
export function createLogger(name: string, level = 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid, name } });
}
