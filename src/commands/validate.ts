import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ASSIGNMENTS_FILE,
  FLEET_FILE,
  parseAssignments,
  parseRoster,
  parseSchedule,
  parseSettings,
  ROSTER_FILE,
  SCHEDULE_FILE,
} from '../state/control-files';
import { formatTaskProblem } from '../state/errors';

/** Problems in a schedule file, or in every control file of a folder. */
export function validatePath(target: string): string[] {
  if (!fs.existsSync(target)) return [`${target}: not found; pass a schedule.json file or a control repo folder`];
  const read = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file) : undefined);
  const problems: string[] = [];
  if (fs.statSync(target).isFile()) {
    // A control file other than the schedule is checked by its name.
    const byName: Record<string, (bytes: Buffer | undefined) => { ok: boolean; error?: { message: string } }> = {
      [ROSTER_FILE]: parseRoster,
      [ASSIGNMENTS_FILE]: parseAssignments,
      [FLEET_FILE]: parseSettings,
    };
    const parser = byName[path.basename(target)];
    if (parser) {
      const parsed = parser(read(target));
      return parsed.ok ? [] : [parsed.error!.message];
    }
    const schedule = parseSchedule(read(target));
    if (!schedule.ok) return [schedule.error.message];
    return schedule.value.problems.map(formatTaskProblem);
  }
  const schedule = parseSchedule(read(path.join(target, SCHEDULE_FILE)));
  if (!schedule.ok) problems.push(schedule.error.message);
  else problems.push(...schedule.value.problems.map(formatTaskProblem));
  for (const parsed of [
    parseRoster(read(path.join(target, ROSTER_FILE))),
    parseAssignments(read(path.join(target, ASSIGNMENTS_FILE))),
    parseSettings(read(path.join(target, FLEET_FILE))),
  ]) {
    if (!parsed.ok) problems.push(parsed.error.message);
  }
  return problems;
}
