import type { Assignment, AssignmentsFile } from '../state/schemas';

/**
 * Tracks, by this process's monotonic clock, how long each task's heartbeat
 * value has stayed unchanged. Expiry is judged from these durations and never
 * from timestamps written by other machines, so a skewed wall clock elsewhere
 * cannot make a claim look expired early. A new process has seen nothing yet,
 * so it waits a full expiry before it treats any claim as orphaned.
 */
export class HeartbeatObserver {
  private readonly seen = new Map<string, { key: string; since: number }>();

  constructor(private readonly now: () => number = monotonicMs) {}

  observe(file: AssignmentsFile): void {
    const current = new Set<string>();
    for (const [taskId, entry] of Object.entries(file.assignments)) {
      current.add(taskId);
      const key = heartbeatKey(entry);
      const previous = this.seen.get(taskId);
      if (!previous || previous.key !== key) this.seen.set(taskId, { key, since: this.now() });
    }
    for (const taskId of [...this.seen.keys()]) if (!current.has(taskId)) this.seen.delete(taskId);
  }

  /** Milliseconds since this process first saw the task's current heartbeat value. */
  unchangedForMs(taskId: string): number {
    const entry = this.seen.get(taskId);
    return entry ? this.now() - entry.since : 0;
  }
}

export function heartbeatKey(entry: Assignment): string {
  return JSON.stringify([
    entry.node_id ?? null,
    entry.epoch ?? null,
    entry.claim_token ?? null,
    entry.task_heartbeat ?? null,
    entry.heartbeat_seq ?? null,
    entry.status ?? null,
  ]);
}

export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}
