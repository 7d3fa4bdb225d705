import * as fs from 'node:fs/promises';
import * as lockfile from 'proper-lockfile';

/**
 * Serializes access to one clone: a promise chain within this process, and
 * proper-lockfile across processes. proper-lockfile refreshes the lock's
 * mtime while it is held, so a lock left by a killed process goes stale after
 * `staleMs` and is taken over.
 */
export class CloneLock {
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly path: string,
    private readonly timeoutMs = 60_000,
    private readonly staleMs = 10_000,
  ) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.tail;
    let done!: () => void;
    this.tail = new Promise((resolve) => (done = resolve));
    try {
      await previous;
      await fs.mkdir(this.path, { recursive: true });
      const release = await lockfile.lock(this.path, {
        lockfilePath: `${this.path}.lock`,
        stale: this.staleMs,
        update: Math.floor(this.staleMs / 4),
        retries: {
          retries: Math.ceil(this.timeoutMs / 200),
          minTimeout: 100,
          maxTimeout: 200,
          factor: 1,
        },
        realpath: false,
      });
      try {
        return await fn();
      } finally {
        await release().catch(() => undefined);
      }
    } finally {
      done();
    }
  }
}
