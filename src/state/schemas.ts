import { z } from 'zod';

// Every object schema is loose: unknown keys pass through validation and are
// written back unchanged, so files written by other tools keep their fields.

const envName = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const PortSchema = z.looseObject({
  container: z.number().int().min(1).max(65535),
  host: z.number().int().min(0).max(65535).optional(),
  protocol: z.enum(['tcp', 'udp']).optional(),
});

export const MountSchema = z.looseObject({
  source: z.string().min(1),
  target: z.string().startsWith('/'),
  read_only: z.boolean().optional(),
});

export const HealthCheckSchema = z.discriminatedUnion('type', [
  z.looseObject({
    type: z.literal('http'),
    port: z.number().int().min(1).max(65535),
    path: z.string().startsWith('/').default('/'),
    interval_s: z.number().positive().default(5),
    timeout_s: z.number().positive().default(2),
    retries: z.number().int().min(1).default(3),
    start_period_s: z.number().min(0).default(5),
  }),
  z.looseObject({ type: z.literal('image') }),
]);

export const RestartPolicySchema = z.looseObject({
  // How a service whose container exits is handled on the same node.
  policy: z.enum(['always', 'on-failure', 'never']).default('always'),
  max_restarts: z.number().int().min(0).default(5),
  backoff_s: z.number().min(0).default(2),
  max_backoff_s: z.number().min(0).default(60),
});

export const BuildSchema = z.looseObject({
  context: z.string().min(1),
  dockerfile: z.string().min(1).optional(),
});

export const ResourcesSchema = z.looseObject({
  memory_mb: z.number().positive().optional(),
  cpus: z.number().positive().optional(),
});

/** Fields that describe how a task runs as a container. */
export const containerSpecShape = {
  image: z.string().min(1).optional(),
  build: BuildSchema.optional(),
  command: z.array(z.string()).optional(),
  entrypoint: z.array(z.string()).optional(),
  env: z.record(z.string().regex(envName, 'environment variable names are letters, digits and _'), z.string()).optional(),
  secrets: z.array(z.string().regex(envName, 'secret names are letters, digits and _')).optional(),
  ports: z.array(PortSchema).optional(),
  mounts: z.array(MountSchema).optional(),
  health_check: HealthCheckSchema.optional(),
  restart_policy: RestartPolicySchema.optional(),
  kind: z.enum(['service', 'batch']).optional(),
  resources: ResourcesSchema.optional(),
  // Batch tasks: how many failed runs are retried before the task is given up.
  max_retries: z.number().int().min(0).optional(),
  // Whole run time limit for a batch container, in seconds.
  timeout_s: z.number().positive().optional(),
  privileged: z.boolean().optional(),
  network_mode: z.string().optional(),
  cap_add: z.array(z.string()).optional(),
};

export const ContainerSpecSchema = z.looseObject(containerSpecShape);
export type ContainerSpec = z.infer<typeof ContainerSpecSchema>;

export const TASK_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export const TaskSchema = z.looseObject({
  id: z
    .string()
    .regex(TASK_ID_PATTERN, 'task ids are 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or digit'),
  type: z.string().min(1),
  priority: z.number().finite(),
  required_role: z.string().min(1).optional(),
  config: z.unknown().optional(),
  ...containerSpecShape,
});
export type Task = z.infer<typeof TaskSchema>;

export const ScheduleSchema = z.looseObject({
  tasks: z.array(z.unknown()),
  types: z.record(z.string(), ContainerSpecSchema).optional(),
});
export type ScheduleFile = z.infer<typeof ScheduleSchema>;

const timestamp = z.union([z.string(), z.number()]);

export const NodeEntrySchema = z.looseObject({
  id: z.string().min(1),
  started_at: timestamp.optional(),
  last_seen: timestamp.optional(),
  metrics: z
    .looseObject({
      cpu_load: z.number().optional(),
      memory_percent: z.number().optional(),
    })
    .optional(),
  roles: z.array(z.string()).optional(),
  state: z.string().optional(),
  version: z.string().optional(),
  // Counter bumped on every roster heartbeat, so observers see a change even
  // when two heartbeats carry the same wall-clock time.
  heartbeat_seq: z.number().int().optional(),
});
export type NodeEntry = z.infer<typeof NodeEntrySchema>;

export const RosterSchema = z.looseObject({
  nodes: z.array(NodeEntrySchema),
});
export type RosterFile = z.infer<typeof RosterSchema>;

export const ASSIGNMENT_STATUSES = [
  'claimed',
  'running',
  'released',
  'succeeded',
  'failed',
  'rejected',
] as const;

export const AssignmentSchema = z.looseObject({
  node_id: z.string().nullable().optional(),
  claimed_at: timestamp.nullable().optional(),
  task_heartbeat: timestamp.nullable().optional(),
  // Older control repos use free-form status strings, so any string is read.
  status: z.string().optional(),
  epoch: z.number().int().min(0).optional(),
  claim_token: z.string().optional(),
  heartbeat_seq: z.number().int().optional(),
  container_id: z.string().nullable().optional(),
  exit_code: z.number().int().nullable().optional(),
  finished_at: timestamp.nullable().optional(),
  last_error: z.string().nullable().optional(),
  last_log: z.array(z.string()).optional(),
  attempts: z.number().int().min(0).optional(),
  not_before: timestamp.nullable().optional(),
  // Hash of the task entry a failure or rejection was recorded for; a changed
  // entry is tried again.
  spec_hash: z.string().optional(),
  given_up: z.boolean().optional(),
  reschedules: z.number().int().min(0).optional(),
});
export type Assignment = z.infer<typeof AssignmentSchema>;

export const AssignmentsSchema = z.looseObject({
  assignments: z.record(z.string(), AssignmentSchema),
});
export type AssignmentsFile = z.infer<typeof AssignmentsSchema>;

/** Fleet-wide settings, every duration in seconds. */
export const SettingsSchema = z.looseObject({
  roster_heartbeat_s: z.number().positive().default(30),
  task_heartbeat_s: z.number().positive().default(10),
  task_expiry_s: z.number().positive().default(45),
  idle_poll_s: z.number().positive().default(5),
  claim_jitter_s: z.number().min(0).default(1),
  push_retries: z.number().int().min(0).default(8),
  // Share of the expiry after the last renewal at which an owner stops its
  // containers on its own.
  self_fence_ratio: z.number().gt(0).lt(1).default(0.6),
  default_memory_mb: z.number().positive().optional(),
  default_cpus: z.number().positive().optional(),
  reschedule_limit: z.number().int().min(0).default(5),
});
export type Settings = z.infer<typeof SettingsSchema>;

export const FleetFileSchema = z.looseObject({
  settings: SettingsSchema.optional(),
});
