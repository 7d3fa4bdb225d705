import * as path from 'node:path';
import { simpleGit, SimpleGit } from 'simple-git';

const PASSED_ENV = ['PATH', 'HOME', 'USER', 'LOGNAME', 'TMPDIR', 'SSH_AUTH_SOCK', 'XDG_CONFIG_HOME'];

export interface GitAuthor {
  name: string;
  email: string;
}

/**
 * A simple-git client that never prompts for credentials and kills a git
 * process that prints nothing for `timeoutMs`. Ambient GIT_* variables are
 * dropped, so every git call runs with the same settings.
 */
export function gitClient(baseDir: string, author: GitAuthor, timeoutMs = 20_000): SimpleGit {
  const ours: Record<string, string> = {
    GIT_TERMINAL_PROMPT: '0',
    GIT_SSH_COMMAND: process.env.GITFLEET_SSH_COMMAND ?? 'ssh -o BatchMode=yes -o ConnectTimeout=10',
    GIT_AUTHOR_NAME: author.name,
    GIT_AUTHOR_EMAIL: author.email,
    GIT_COMMITTER_NAME: author.name,
    GIT_COMMITTER_EMAIL: author.email,
  };
  // Only these variables pass through: simple-git rejects editor, pager and
  // askpass variables, and git needs nothing else from the caller.
  const env: Record<string, string> = {};
  for (const key of PASSED_ENV) {
    const value = process.env[key];
    if (value !== undefined) env[key] = value;
  }
  return simpleGit({
    baseDir,
    timeout: { block: timeoutMs },
    allowEnvironment: Object.keys(ours),
  }).env({ ...env, ...ours, LC_ALL: 'C' });
}

/** Return whether `remote` is a local path rather than a URL or an scp-like `host:path` address. */
export function isLocalRemote(remote: string): boolean {
  return !/^[a-z][a-z0-9+.-]*:\/\//i.test(remote) && !/^[^/]*:/.test(remote);
}

/**
 * Make a local remote path absolute, so it means the same folder whether git
 * runs in the caller's directory or inside a clone.
 */
export function normalizeRemote(remote: string): string {
  return isLocalRemote(remote) ? path.resolve(remote) : remote;
}
