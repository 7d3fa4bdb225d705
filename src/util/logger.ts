import pino from 'pino';

/** The process logger: JSON lines on stderr, level from GITFLEET_LOG_LEVEL (default info). */
export function createLogger(name: string, bindings: Record<string, unknown> = {}): pino.Logger {
  return pino(
    { name, level: process.env.GITFLEET_LOG_LEVEL ?? 'info', base: { pid: process.pid, ...bindings } },
    pino.destination(2),
  );
}
