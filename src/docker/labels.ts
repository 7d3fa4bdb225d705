import { createHash } from 'node:crypto';

/** Docker label keys that mark the containers gitfleet owns. */
export const LABEL_MANAGED = 'io.gitfleet.managed';
export const LABEL_NODE = 'io.gitfleet.node';
export const LABEL_TASK = 'io.gitfleet.task';
export const LABEL_EPOCH = 'io.gitfleet.epoch';
export const LABEL_CLAIM = 'io.gitfleet.claim';

/** Value of `LABEL_MANAGED` on every container gitfleet creates. */
export const MANAGED_VALUE = 'true';

// The engine accepts container names matching /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/.
const NAME_MAX_LENGTH = 128;
const INVALID_NAME_CHARS = /[^a-zA-Z0-9_.-]/g;
const HASH_LENGTH = 8;

/** Labels for a task container owned by `nodeId` under claim `epoch`. */
export function taskLabels(
  nodeId: string,
  taskId: string,
  epoch: number,
  claimToken: string,
): Record<string, string> {
  return {
    [LABEL_MANAGED]: MANAGED_VALUE,
    [LABEL_NODE]: nodeId,
    [LABEL_TASK]: taskId,
    [LABEL_EPOCH]: String(epoch),
    [LABEL_CLAIM]: claimToken,
  };
}

/**
 * Builds the deterministic container name `gitfleet-<task>-<epoch>-<node>`.
 *
 * Characters Docker rejects become `_`. When that or the length limit changed the name, a short
 * hash of the unsanitized name is appended, so two ids that sanitize alike still get distinct names.
 */
export function containerName(nodeId: string, taskId: string, epoch: number): string {
  const raw = `gitfleet-${taskId}-${epoch}-${nodeId}`;
  const sanitized = raw.replace(INVALID_NAME_CHARS, '_');
  if (sanitized === raw && raw.length <= NAME_MAX_LENGTH) {
    return raw;
  }

  const hash = createHash('sha256').update(raw).digest('hex').slice(0, HASH_LENGTH);
  const base = sanitized.slice(0, NAME_MAX_LENGTH - HASH_LENGTH - 1);
  return `${base}-${hash}`;
}
