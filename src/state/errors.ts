/**
 * A control repo file that could not be read, parsed or validated. Nodes never
 * rewrite a file that raised this error.
 */
export class ControlFileError extends Error {
  override readonly name = 'ControlFileError';

  constructor(
    readonly file: string,
    readonly location: string,
    readonly problem: string,
    readonly fix: string,
  ) {
    super(`${file}${location ? ` ${location}` : ''}: ${problem}; ${fix}`);
  }
}

/** One task entry of schedule.json that is skipped while the others run. */
export interface TaskProblem {
  file: string;
  index: number;
  taskId?: string;
  location: string;
  problem: string;
  fix: string;
}

export function formatTaskProblem(p: TaskProblem): string {
  const where = p.location ? ` ${p.location}` : '';
  const id = p.taskId !== undefined ? ` (task ${JSON.stringify(p.taskId)})` : '';
  return `${p.file}${where}${id}: ${p.problem}; ${p.fix}`;
}
