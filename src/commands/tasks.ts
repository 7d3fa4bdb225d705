import type { ControlRepo } from '../git/control-repo';
import { SCHEDULE_FILE, viewSchedule } from '../state/control-files';
import { formatTaskProblem } from '../state/errors';
import { ScheduleSchema } from '../state/schemas';

/** Add a task entry to schedule.json through the push loop; the id must be new. */
export async function addTask(repo: ControlRepo, entry: Record<string, unknown>): Promise<void> {
  await repo.edit(`task add ${String(entry.id)}`, (snapshot) => {
    if (!snapshot.schedule.ok) throw snapshot.schedule.error;
    const file = snapshot.schedule.value.file;
    const ids = file.tasks.map((t) => (t as { id?: unknown })?.id);
    if (ids.includes(entry.id)) {
      throw new Error(`${SCHEDULE_FILE}: task "${String(entry.id)}" already exists; remove it first or pick another id`);
    }
    const next = { ...file, tasks: [...file.tasks, entry] };
    const view = viewSchedule(ScheduleSchema.parse(next));
    const problem = view.problems.find((p) => p.taskId === entry.id || p.index === next.tasks.length - 1);
    if (problem) throw new Error(`task not added: ${formatTaskProblem(problem)}`);
    return { result: undefined, writes: { [SCHEDULE_FILE]: next } };
  });
}

/** Remove a task entry from schedule.json; nodes running it stop it at their next heartbeat. */
export async function removeTask(repo: ControlRepo, id: string): Promise<void> {
  await repo.edit(`task remove ${id}`, (snapshot) => {
    if (!snapshot.schedule.ok) throw snapshot.schedule.error;
    const file = snapshot.schedule.value.file;
    const tasks = file.tasks.filter((t) => (t as { id?: unknown })?.id !== id);
    if (tasks.length === file.tasks.length) {
      throw new Error(`${SCHEDULE_FILE}: no task with id "${id}"; see \`gitfleet status\` for the ids`);
    }
    return { result: undefined, writes: { [SCHEDULE_FILE]: { ...file, tasks } } };
  });
}
