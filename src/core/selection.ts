import { assignmentOf, type ScheduledTask } from '../state/control-files';
import type { Assignment, AssignmentsFile } from '../state/schemas';

/** Statuses under which the named node is running (or starting) the task. */
export const HELD_STATUSES = new Set(['claimed', 'running', 'active', 'assigned']);

export type Availability =
  | { claimable: true; reason: 'free' | 'orphaned' | 'retry' | 'own-stale' }
  | { claimable: false; reason: string };

export interface SelectionInput {
  nodeId: string;
  roles: string[];
  tasks: ScheduledTask[];
  assignments: AssignmentsFile;
  /** Ms this node has seen the task's heartbeat value unchanged. */
  unchangedForMs: (taskId: string) => number;
  expiryMs: number;
  /** Tasks this node runs right now (its own claims that are live). */
  owned: ReadonlySet<string>;
  /** Wall-clock now, used only for retry delays (`not_before`). */
  nowMs: number;
  specHash: (task: ScheduledTask) => string;
}

export function timestampMs(value: string | number | null | undefined): number | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'number') return value > 1e12 ? value : value * 1000;
  const parsed = Date.parse(value);
  return Number.isNaN(parsed) ? undefined : parsed;
}

/** Decide whether this node may claim one task now. */
export function availability(input: SelectionInput, task: ScheduledTask): Availability {
  const id = task.task.id;
  if (input.owned.has(id)) return { claimable: false, reason: 'already running here' };
  const role = task.task.required_role;
  if (role !== undefined && !input.roles.includes(role)) {
    return { claimable: false, reason: `requires role "${role}"` };
  }
  const entry: Assignment | undefined = assignmentOf(input.assignments, id);
  if (!entry) return { claimable: true, reason: 'free' };

  const status = entry.status ?? 'claimed';
  const notBefore = timestampMs(entry.not_before);
  if (status === 'succeeded') return { claimable: false, reason: 'batch task succeeded' };
  if (status === 'failed' || status === 'rejected') {
    // A changed task entry gets a fresh start; an unchanged one waits for its retry time.
    if (entry.spec_hash !== undefined && entry.spec_hash !== input.specHash(task)) {
      return { claimable: true, reason: 'retry' };
    }
    if (entry.given_up === true || status === 'rejected') {
      return { claimable: false, reason: `${status}; change the task entry to run it again` };
    }
    if (notBefore !== undefined && input.nowMs < notBefore) {
      return { claimable: false, reason: 'waiting for retry delay' };
    }
    return { claimable: true, reason: 'retry' };
  }
  if (!HELD_STATUSES.has(status) || !entry.node_id) {
    if (notBefore !== undefined && input.nowMs < notBefore) {
      return { claimable: false, reason: 'waiting for reschedule delay' };
    }
    return { claimable: true, reason: 'free' };
  }
  if (input.unchangedForMs(id) >= input.expiryMs) {
    return { claimable: true, reason: entry.node_id === input.nodeId ? 'own-stale' : 'orphaned' };
  }
  return { claimable: false, reason: `held by ${entry.node_id}` };
}

/** Claimable tasks, best first: lowest priority number, then id. */
export function candidates(input: SelectionInput): ScheduledTask[] {
  return input.tasks
    .filter((task) => availability(input, task).claimable)
    .sort((a, b) => a.task.priority - b.task.priority || a.task.id.localeCompare(b.task.id));
}
