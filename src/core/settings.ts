import type { Settings } from '../state/schemas';

/** Settings a node uses, in milliseconds, after node overrides are applied to fleet.json. */
export interface EffectiveSettings {
  rosterHeartbeatMs: number;
  taskHeartbeatMs: number;
  taskExpiryMs: number;
  idlePollMs: number;
  claimJitterMs: number;
  pushRetries: number;
  selfFenceMs: number;
  rescheduleLimit: number;
  defaultMemoryMb?: number;
  defaultCpus?: number;
}

/** Per-node overrides, in seconds as on the command line. */
export interface SettingsOverrides {
  roster_heartbeat_s?: number;
  task_heartbeat_s?: number;
  task_expiry_s?: number;
  idle_poll_s?: number;
  claim_jitter_s?: number;
  push_retries?: number;
  self_fence_ratio?: number;
}

export function effectiveSettings(fleet: Settings, overrides: SettingsOverrides = {}): EffectiveSettings {
  const merged = { ...fleet, ...stripUndefined(overrides) };
  const expiryMs = merged.task_expiry_s * 1000;
  return {
    rosterHeartbeatMs: merged.roster_heartbeat_s * 1000,
    taskHeartbeatMs: merged.task_heartbeat_s * 1000,
    taskExpiryMs: expiryMs,
    idlePollMs: merged.idle_poll_s * 1000,
    claimJitterMs: merged.claim_jitter_s * 1000,
    pushRetries: merged.push_retries,
    selfFenceMs: Math.floor(expiryMs * merged.self_fence_ratio),
    rescheduleLimit: merged.reschedule_limit,
    defaultMemoryMb: merged.default_memory_mb,
    defaultCpus: merged.default_cpus,
  };
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Combine fleet settings with node overrides. When the combination breaks the
 * fencing rules, return `fallback` instead, with the reasons.
 */
export function resolveSettings(
  fleet: Settings,
  overrides: SettingsOverrides,
  fallback: EffectiveSettings,
): { settings: EffectiveSettings; problems: string[] } {
  const candidate = effectiveSettings(fleet, overrides);
  const problems = settingsProblems(candidate);
  return { settings: problems.length > 0 ? fallback : candidate, problems };
}

/** Reasons a combination of settings cannot keep the at-most-one guarantee. */
export function settingsProblems(s: EffectiveSettings): string[] {
  const problems: string[] = [];
  if (s.taskExpiryMs < 3 * s.taskHeartbeatMs) {
    problems.push(
      `task_expiry_s (${s.taskExpiryMs / 1000}) must be at least 3 x task_heartbeat_s (${s.taskHeartbeatMs / 1000})`,
    );
  }
  if (s.selfFenceMs <= s.taskHeartbeatMs) {
    problems.push(
      `self-fence time (${s.selfFenceMs / 1000} s = self_fence_ratio x task_expiry_s) must exceed task_heartbeat_s (${s.taskHeartbeatMs / 1000})`,
    );
  }
  return problems;
}
