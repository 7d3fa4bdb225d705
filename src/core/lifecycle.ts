/**
 * Node lifecycle states and the one table of allowed transitions. This module
 * has no Node.js imports, so workflow code and unit tests both load it.
 */
export const NODE_STATES = ['IDLE', 'ATTEMPT_CLAIM', 'ACTIVE', 'DRAINING', 'STOPPED'] as const;
export type NodeState = (typeof NODE_STATES)[number];

export const TRANSITIONS: Readonly<Record<NodeState, readonly NodeState[]>> = {
  // IDLE: holds no task and looks for one.
  IDLE: ['ATTEMPT_CLAIM', 'DRAINING'],
  // ATTEMPT_CLAIM: racing other nodes for one task.
  ATTEMPT_CLAIM: ['ACTIVE', 'IDLE', 'DRAINING'],
  // ACTIVE: runs one or more claimed tasks and may claim more while below capacity.
  ACTIVE: ['ATTEMPT_CLAIM', 'IDLE', 'DRAINING'],
  // DRAINING: claims nothing, stops its containers and releases its tasks.
  DRAINING: ['STOPPED'],
  STOPPED: [],
};

export class InvalidTransitionError extends Error {
  override readonly name = 'InvalidTransitionError';

  constructor(
    readonly from: NodeState,
    readonly to: NodeState,
  ) {
    super(`invalid node transition ${from} -> ${to}; allowed from ${from}: ${TRANSITIONS[from].join(', ') || 'none'}`);
  }
}

export interface Transition {
  from: NodeState;
  to: NodeState;
  reason: string;
  taskId?: string;
  /** Workflow time of the transition, in ms since the epoch. */
  at: number;
}

/** Check a transition against the table; staying in the same state is always allowed and not recorded. */
export function assertTransition(from: NodeState, to: NodeState): void {
  if (from === to) return;
  if (!TRANSITIONS[from].includes(to)) throw new InvalidTransitionError(from, to);
}
