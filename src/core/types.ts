import type { ContainerSpec } from '../state/schemas';
import type { NodeState } from './lifecycle';
import type { EffectiveSettings, SettingsOverrides } from './settings';

/** A claim this node holds, as the workflow tracks it. */
export interface OwnedTask {
  taskId: string;
  epoch: number;
  claimToken: string;
  kind: 'service' | 'batch';
  spec: ContainerSpec;
  specHash: string;
  config?: unknown;
  containerId?: string;
  hostPorts?: Record<string, number>;
  /** Workflow time the current container started, in ms since the epoch. */
  startedAt?: number;
  restarts: number;
  attempts: number;
  reschedules: number;
}

export type ClaimResult =
  | { outcome: 'claimed'; task: OwnedTask }
  | { outcome: 'none'; reason: string }
  | { outcome: 'lost'; taskId: string; reason: string };

export interface HeartbeatInput {
  state: NodeState;
  owned: Array<Pick<OwnedTask, 'taskId' | 'epoch' | 'claimToken' | 'containerId'>>;
}

export interface HeartbeatResult {
  settings: EffectiveSettings;
  /** Whether every owned claim was renewed on the remote. */
  renewed: boolean;
  lost: Array<{ taskId: string; reason: string }>;
  problems: string[];
}

export interface StartResult {
  ok: boolean;
  containerId?: string;
  hostPorts?: Record<string, number>;
  /** Why the start failed; `permanent` failures (policy, bad spec) are not retried. */
  error?: string;
  permanent?: boolean;
  /** The node's lease ran out: the claim is neither failed nor released, it waits for a renewal. */
  fenced?: boolean;
}

export interface WatchItem {
  taskId: string;
  containerId: string;
  kind: 'service' | 'batch';
  spec: ContainerSpec;
  hostPorts?: Record<string, number>;
  startedAt: number;
}

export interface WatchEvent {
  taskId: string;
  containerId: string;
  reason: 'exited' | 'gone' | 'unhealthy' | 'timeout';
  exitCode?: number | null;
}

export interface StopResult {
  exitCode?: number | null;
  lastLog: string[];
}

export type FinishOutcome = 'released' | 'succeeded' | 'failed' | 'rejected';

export interface FinishInput {
  taskId: string;
  epoch: number;
  claimToken: string;
  outcome: FinishOutcome;
  exitCode?: number | null;
  lastLog?: string[];
  error?: string;
  specHash: string;
  /** Retry or reschedule delay, in ms; the task is not claimed again before it ends. */
  delayMs?: number;
  attempts?: number;
  reschedules?: number;
  givenUp?: boolean;
}

export interface NodeWorkflowInput {
  nodeId: string;
  maxTasks: number;
  overrides: SettingsOverrides;
  /** Continue-as-new once the history has this many events. */
  historyLimit?: number;
  /** Settings before the first heartbeat reads fleet.json. */
  initialSettings: EffectiveSettings;
  carried?: {
    state: NodeState;
    tasks: OwnedTask[];
    lastRenewalAt: number;
  };
}

export interface NodeStatus {
  nodeId: string;
  state: NodeState;
  tasks: Array<Pick<OwnedTask, 'taskId' | 'epoch' | 'kind' | 'containerId' | 'restarts'>>;
  transitions: Array<{ from: NodeState; to: NodeState; reason: string; taskId?: string; at: string }>;
  draining: boolean;
  lastRenewalAt?: string;
}

export function nodeWorkflowId(nodeId: string): string {
  return `gitfleet-node-${nodeId}`;
}

export function nodeTaskQueue(nodeId: string): string {
  return `gitfleet-node-${nodeId}`;
}
