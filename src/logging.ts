import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * One logger per process, named after its role. JSON lines on stdout; pipe to pino-pretty to read them. Written
 * synchronously: pino's asynchronous destination flushes at exit by retrying a broken pipe forever, so a process
 * whose stdout reader died (a killed `sdflow dev`) would never finish exiting.
 */
export function createLogger(name: string, level = 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid, name } }, pino.destination({ dest: 1, sync: true }));
}
