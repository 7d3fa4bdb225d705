import { ControlFileError, TaskProblem } from './errors';
import { effectiveSettings, settingsProblems } from '../core/settings';
import { parseJsonText, validate, jsonPath, describeValue, describeIssue } from './parse';
import {
  Assignment,
  AssignmentsFile,
  AssignmentsSchema,
  ContainerSpec,
  FleetFileSchema,
  RosterFile,
  RosterSchema,
  ScheduleFile,
  ScheduleSchema,
  Settings,
  SettingsSchema,
  Task,
  TaskSchema,
} from './schemas';

export const SCHEDULE_FILE = 'schedule.json';
export const ROSTER_FILE = 'roster.json';
export const ASSIGNMENTS_FILE = 'assignments.json';
export const FLEET_FILE = 'fleet.json';

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: ControlFileError };

/** A task that passed validation, with its container spec resolved from its type. */
export interface ScheduledTask {
  task: Task;
  spec: ContainerSpec & { kind: 'service' | 'batch' };
  index: number;
}

export interface ScheduleView {
  file: ScheduleFile;
  tasks: ScheduledTask[];
  problems: TaskProblem[];
}

/** Image reference grammar: optional registry host, lowercase path, optional tag and digest. */
const IMAGE_REFERENCE =
  /^(?:(?:[a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+(?::[0-9]+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;

/**
 * Returns the assignment of `taskId`, or undefined. Only own keys count, so a task id such as
 * "constructor" never reads an inherited property of the object.
 */
export function assignmentOf(file: AssignmentsFile, taskId: string): Assignment | undefined {
  return Object.hasOwn(file.assignments, taskId) ? file.assignments[taskId] : undefined;
}

export function isValidImageReference(reference: string): boolean {
  return reference.length <= 255 && IMAGE_REFERENCE.test(reference);
}

function readBytes(file: string, bytes: Buffer | undefined, example: string): unknown {
  if (bytes === undefined) {
    throw new ControlFileError(
      file,
      '',
      'file is missing from the control repo',
      `create it with \`gitfleet init\` or push ${example}`,
    );
  }
  return parseJsonText(file, bytes, example);
}

function attempt<T>(fn: () => T): Parsed<T> {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    if (err instanceof ControlFileError) return { ok: false, error: err };
    throw err;
  }
}

export function parseRoster(bytes: Buffer | undefined): Parsed<RosterFile> {
  return attempt(() =>
    validate(ROSTER_FILE, RosterSchema, readBytes(ROSTER_FILE, bytes, '{"nodes": []}')),
  );
}

export function parseAssignments(bytes: Buffer | undefined): Parsed<AssignmentsFile> {
  return attempt(() =>
    validate(
      ASSIGNMENTS_FILE,
      AssignmentsSchema,
      readBytes(ASSIGNMENTS_FILE, bytes, '{"assignments": {}}'),
    ),
  );
}

/** Parse fleet.json; a missing file means every default applies. */
export function parseSettings(bytes: Buffer | undefined): Parsed<Settings> {
  return attempt(() => {
    if (bytes === undefined) return SettingsSchema.parse({});
    const raw = parseJsonText(FLEET_FILE, bytes, '{"settings": {}}');
    const fleet = validate(FLEET_FILE, FleetFileSchema, raw);
    const given = (fleet.settings ?? {}) as Record<string, unknown>;
    const known = Object.keys(SettingsSchema.shape);
    const unknown = Object.keys(given).filter((key) => !known.includes(key));
    if (unknown.length > 0) {
      throw new ControlFileError(
        FLEET_FILE,
        `at settings.${unknown[0]}`,
        `unknown setting "${unknown[0]}"`,
        `use one of ${known.join(', ')} and push again`,
      );
    }
    const settings = validate(FLEET_FILE, SettingsSchema, given, ['settings']);
    const problems = settingsProblems(effectiveSettings(settings));
    if (problems.length > 0) {
      throw new ControlFileError(
        FLEET_FILE,
        'at settings',
        `unsafe combination: ${problems.join('; ')}`,
        'change the values and push again; nodes keep their last valid settings meanwhile',
      );
    }
    return settings;
  });
}

function mergeSpec(base: ContainerSpec | undefined, task: Task): ContainerSpec {
  const merged: ContainerSpec = { ...(base ?? {}) };
  const keys = [
    'image',
    'build',
    'command',
    'entrypoint',
    'secrets',
    'ports',
    'mounts',
    'health_check',
    'restart_policy',
    'kind',
    'resources',
    'max_retries',
    'timeout_s',
    'privileged',
    'network_mode',
    'cap_add',
  ] as const;
  for (const key of keys) {
    if (task[key] !== undefined) (merged as Record<string, unknown>)[key] = task[key];
  }
  if (base?.env || task.env) merged.env = { ...(base?.env ?? {}), ...(task.env ?? {}) };
  return merged;
}

/**
 * Validate schedule.json. A file-level problem raises ControlFileError; a bad
 * task entry is listed in `problems` and left out, so the valid tasks still run.
 */
export function parseSchedule(bytes: Buffer | undefined): Parsed<ScheduleView> {
  return attempt(() => {
    const raw = readBytes(SCHEDULE_FILE, bytes, '{"tasks": []}');
    const view = viewSchedule(validate(SCHEDULE_FILE, ScheduleSchema, raw));
    // The view's `file` is the JSON as read, without the defaults that validation fills in under
    // "types", so rewriting schedule.json changes only what the edit changes.
    return { ...view, file: raw as ScheduleFile };
  });
}

export function viewSchedule(file: ScheduleFile): ScheduleView {
  const problems: TaskProblem[] = [];
  const candidates: ScheduledTask[] = [];
  const seen = new Map<string, number[]>();

  file.tasks.forEach((entry, index) => {
    const rawId = (entry as { id?: unknown } | null)?.id;
    const taskId = typeof rawId === 'string' ? rawId : undefined;
    const result = TaskSchema.safeParse(entry);
    if (!result.success) {
      // Every issue of the entry at once, so one push can fix them all.
      const [first, ...rest] = result.error.issues.map((issue) => {
        let found: unknown = entry;
        for (const key of issue.path) found = (found as Record<PropertyKey, unknown>)?.[key];
        return { path: issue.path, text: describeIssue(issue.message, issue.path, found) };
      });
      const others = rest.map((r) => `; at ${jsonPath(['tasks', index, ...r.path])}: ${r.text}`).join('');
      problems.push({
        file: SCHEDULE_FILE,
        index,
        taskId,
        location: `at ${jsonPath(['tasks', index, ...first.path])}`,
        problem: `${first.text}${others}`,
        fix: 'correct the task entry and push again; the other tasks keep running',
      });
      return;
    }
    const task = result.data;
    const base = file.types?.[task.type];
    const spec = mergeSpec(base, task);
    if (!spec.image && !spec.build) {
      problems.push({
        file: SCHEDULE_FILE,
        index,
        taskId: task.id,
        location: `at ${jsonPath(['tasks', index, 'type'])}`,
        problem: `unknown type "${task.type}": no entry in "types" and no "image" on the task`,
        fix: `add "types": {"${task.type}": {"image": ...}} or give the task an "image"`,
      });
      return;
    }
    if (spec.image && !isValidImageReference(spec.image)) {
      problems.push({
        file: SCHEDULE_FILE,
        index,
        taskId: task.id,
        location: `at ${jsonPath(['tasks', index, 'image'])}`,
        problem: `invalid image reference ${describeValue(spec.image)}`,
        fix: 'use a reference such as "name:tag" or "registry.example:5000/team/name:tag" in lowercase',
      });
      return;
    }
    seen.set(task.id, [...(seen.get(task.id) ?? []), index]);
    candidates.push({ task, spec: { ...spec, kind: spec.kind ?? 'service' }, index });
  });

  const duplicates = new Set<string>();
  for (const [id, indexes] of seen) {
    if (indexes.length < 2) continue;
    duplicates.add(id);
    problems.push({
      file: SCHEDULE_FILE,
      index: indexes[1],
      taskId: id,
      location: `at ${indexes.map((i) => `tasks[${i}]`).join(', ')}`,
      problem: `duplicate task id "${id}"; none of these entries runs`,
      fix: 'give each task a unique id and push again',
    });
  }
  const tasks = candidates.filter((c) => !duplicates.has(c.task.id));
  problems.sort((a, b) => a.index - b.index);
  return { file, tasks, problems };
}

/** Serialize a control file the way gitfleet writes every file: two-space JSON and a newline. */
export function serialize(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
