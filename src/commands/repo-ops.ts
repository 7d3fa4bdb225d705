import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { ControlRepo } from '../git/control-repo';
import { gitClient, isLocalRemote, normalizeRemote } from '../git/client';
import { ASSIGNMENTS_FILE, FLEET_FILE, ROSTER_FILE, SCHEDULE_FILE, serialize } from '../state/control-files';
import { redactUrl } from '../util/redact';

/** Create a control repo clone in a fresh temporary folder, removed by `dispose`. */
export function temporaryRepo(remote: string, branch: string, logger: Logger): ControlRepo & { dispose(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gitfleet-cli-'));
  // A person's edit competes with every node's heartbeats and claims, and on a busy
  // fleet 8 tries often all lose the race. So rejected pushes are retried 30 times
  // (about 2 minutes), while an unreachable remote is reported after two quick retries.
  const repo = new ControlRepo({
    remote,
    branch,
    dir: path.join(dir, 'clone'),
    logger,
    pushRetries: 30,
    networkRetries: 2,
  });
  return Object.assign(repo, { dispose: () => fs.rmSync(dir, { recursive: true, force: true }) });
}


export const EMPTY_FILES: Record<string, unknown> = {
  [SCHEDULE_FILE]: { tasks: [] },
  [ROSTER_FILE]: { nodes: [] },
  [ASSIGNMENTS_FILE]: { assignments: {} },
  [FLEET_FILE]: { settings: {} },
};

/**
 * Create the control files that are missing on the branch, creating a bare
 * repository first when `remote` is a local path that does not exist. Files
 * already present are left untouched. Returns the names of created files.
 */
export async function initControlRepo(
  remote: string,
  branch: string,
  logger: Logger,
  seed: Record<string, unknown> = {},
): Promise<string[]> {
  remote = normalizeRemote(remote);
  if (isLocalRemote(remote) && !fs.existsSync(remote)) {
    fs.mkdirSync(remote, { recursive: true });
    await gitClient(remote, { name: 'gitfleet init', email: 'init@gitfleet.invalid' }).raw(['init', '--bare', '--quiet', `--initial-branch=${branch}`]);
    logger.info({ remote }, 'created bare control repo');
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'gitfleet-init-'));
  try {
    const git = gitClient(work, { name: 'gitfleet init', email: 'init@gitfleet.invalid' });
    await git.raw(['init', '--quiet']);
    await git.raw(['remote', 'add', 'origin', remote]);
    let exists = true;
    try {
      await git.raw(['fetch', '--quiet', 'origin', `+refs/heads/${branch}:refs/remotes/origin/${branch}`]);
    } catch (err) {
      const text = String((err as Error).message);
      if (!/couldn't find remote ref/i.test(text)) {
        throw new Error(`cannot reach control repo ${redactUrl(remote)}: ${redactUrl(text.trim())}`);
      }
      exists = false;
    }
    if (exists) await git.raw(['checkout', '--quiet', '-B', branch, `refs/remotes/origin/${branch}`]);
    else await git.raw(['checkout', '--quiet', '--orphan', branch]);

    const created: string[] = [];
    for (const [name, empty] of Object.entries(EMPTY_FILES)) {
      const file = path.join(work, name);
      if (fs.existsSync(file)) continue;
      fs.writeFileSync(file, serialize(seed[name] ?? empty));
      created.push(name);
    }
    if (created.length === 0) return [];
    await git.raw(['add', '--', ...created]);
    await git.raw(['commit', '--quiet', '-m', `gitfleet init: create ${created.join(', ')}`]);
    await git.raw(['push', '--quiet', 'origin', `HEAD:refs/heads/${branch}`]);
    return created;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
