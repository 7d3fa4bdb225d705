import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { SimpleGit } from 'simple-git';
import { gitClient, normalizeRemote } from './client';
import writeFileAtomic from 'write-file-atomic';
import type { Logger } from 'pino';
import { CloneLock } from './clone-lock';
import { classifyGitFailure, GitCommandError, PushFailedError } from './errors';
import {
  ASSIGNMENTS_FILE,
  FLEET_FILE,
  parseAssignments,
  parseRoster,
  parseSchedule,
  parseSettings,
  Parsed,
  ROSTER_FILE,
  SCHEDULE_FILE,
  ScheduleView,
  serialize,
} from '../state/control-files';
import type { AssignmentsFile, RosterFile, Settings } from '../state/schemas';
import { fullJitterDelay, sleep } from '../util/backoff';
import { redactUrl } from '../util/redact';
import { crashPoint } from '../util/fault';

export interface ControlRepoOptions {
  remote: string;
  branch?: string;
  /** Folder of this clone; nothing in it is kept across syncs. */
  dir: string;
  author?: { name: string; email: string };
  /** Time limit for one git command without output, in ms. */
  gitTimeoutMs?: number;
  /** How often a rejected or failed push is retried. */
  pushRetries?: number;
  /** How often a network, timeout or git lock error is retried; defaults to pushRetries. */
  networkRetries?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  lockTimeoutMs?: number;
  logger: Logger;
}

/** The control files as read from one commit of the remote branch. */
export interface ControlSnapshot {
  commit: string;
  schedule: Parsed<ScheduleView>;
  roster: Parsed<RosterFile>;
  assignments: Parsed<AssignmentsFile>;
  settings: Parsed<Settings>;
  raw: Record<string, Buffer | undefined>;
}

/** New contents for control files; a file left undefined is not written. */
export interface FileWrites {
  [SCHEDULE_FILE]?: unknown;
  [ROSTER_FILE]?: unknown;
  [ASSIGNMENTS_FILE]?: unknown;
  [FLEET_FILE]?: unknown;
}

export interface EditPlan<R> {
  result: R;
  writes?: FileWrites;
}

export interface EditOutcome<R> {
  result: R;
  commit?: string;
  /** Number of pushes the remote rejected because another writer was first. */
  rejections: number;
}

const CONTROL_FILES = [SCHEDULE_FILE, ROSTER_FILE, ASSIGNMENTS_FILE, FLEET_FILE];

/**
 * A clone of the control repo. Every read and edit starts from a fresh copy
 * of the remote branch; local edits are never kept. The push is the commit
 * point of every change.
 */
export class ControlRepo {
  readonly remote: string;
  readonly branch: string;
  readonly dir: string;
  private readonly lock: CloneLock;
  private readonly log: Logger;

  constructor(private readonly options: ControlRepoOptions) {
    this.remote = normalizeRemote(options.remote);
    this.branch = options.branch ?? 'main';
    this.dir = path.resolve(options.dir);
    this.lock = new CloneLock(this.dir, options.lockTimeoutMs ?? 60_000);
    this.log = options.logger;
  }

  private git(): SimpleGit {
    const author = this.options.author ?? { name: 'gitfleet', email: 'gitfleet@localhost' };
    return gitClient(this.dir, author, this.options.gitTimeoutMs ?? 20_000);
  }

  private async run(args: string[]): Promise<string> {
    try {
      return await this.git().raw(args);
    } catch (err) {
      const text = String((err as Error).message ?? err);
      throw new GitCommandError(classifyGitFailure(text), args[0], text);
    }
  }

  /** Remove what a killed git process or an interrupted rebase or merge left behind. */
  private async repair(): Promise<void> {
    const gitDir = path.join(this.dir, '.git');
    const lockFiles = [
      'index.lock',
      'HEAD.lock',
      'packed-refs.lock',
      'shallow.lock',
      'config.lock',
      `refs/heads/${this.branch}.lock`,
      `refs/remotes/origin/${this.branch}.lock`,
    ];
    for (const name of lockFiles) {
      const file = path.join(gitDir, name);
      // Every git command on this clone runs under the clone lock, which we hold,
      // so a git lock file found now belongs to a git process that died.
      if (await exists(file)) {
        this.log.warn({ file }, 'removing stale git lock file');
        await fs.rm(file, { force: true });
      }
    }
    for (const name of ['rebase-merge', 'rebase-apply']) {
      if (await exists(path.join(gitDir, name))) {
        this.log.warn({ dir: this.dir, state: name }, 'aborting interrupted rebase in clone');
        await this.run(['rebase', '--abort']).catch(() => undefined);
        await fs.rm(path.join(gitDir, name), { recursive: true, force: true });
      }
    }
    for (const name of ['MERGE_HEAD', 'CHERRY_PICK_HEAD', 'REVERT_HEAD']) {
      if (await exists(path.join(gitDir, name))) {
        this.log.warn({ dir: this.dir, state: name }, 'clearing interrupted merge in clone');
        await fs.rm(path.join(gitDir, name), { force: true });
      }
    }
  }

  private async ensureClone(): Promise<void> {
    const gitDir = path.join(this.dir, '.git');
    if (await exists(path.join(gitDir, 'HEAD'))) {
      await this.repair();
      // The folder may have been used with another --repo before.
      await this.run(['remote', 'set-url', 'origin', this.remote]);
      return;
    }
    await fs.rm(this.dir, { recursive: true, force: true });
    await fs.mkdir(this.dir, { recursive: true });
    await this.run(['init', '--quiet']);
    await this.run(['remote', 'add', 'origin', this.remote]);
  }

  /** Fetch the remote branch and make the working tree an exact copy of it. */
  private async syncLocked(): Promise<string> {
    await this.ensureClone();
    try {
      await this.run([
        'fetch',
        '--quiet',
        '--no-tags',
        'origin',
        `+refs/heads/${this.branch}:refs/remotes/origin/${this.branch}`,
      ]);
    } catch (err) {
      if (err instanceof GitCommandError && err.kind === 'other' && /not a git repository|corrupt|bad object/i.test(err.message)) {
        this.log.warn({ dir: this.dir, err: err.message }, 'clone is damaged; cloning again');
        await fs.rm(this.dir, { recursive: true, force: true });
        await this.ensureClone();
        return this.syncLocked();
      }
      throw this.explain(err);
    }
    await this.run(['checkout', '--quiet', '--force', '-B', this.branch, `refs/remotes/origin/${this.branch}`]);
    await this.run(['reset', '--quiet', '--hard', `refs/remotes/origin/${this.branch}`]);
    await this.run(['clean', '-ffdxq']);
    return (await this.run(['rev-parse', 'HEAD'])).trim();
  }

  /** Add the remote and branch to a git error, so the message says what to fix. */
  private explain(err: unknown): unknown {
    if (!(err instanceof GitCommandError)) return err;
    const remote = redactUrl(this.remote);
    switch (err.kind) {
      case 'missing-branch':
        return new GitCommandError(err.kind, err.command, `branch "${this.branch}" not found on remote ${remote}; create it with \`gitfleet init --repo ${remote}\` or pass --branch`);
      case 'missing-remote':
        return new GitCommandError(err.kind, err.command, `remote ${remote} does not exist or is not a git repository; check --repo`);
      case 'network':
        return new GitCommandError(err.kind, err.command, `remote ${remote} could not be reached (${err.message.replace(/^git \S+ failed \([^)]*\): /, '')}); check the URL in --repo and that the git server is up`);
      case 'auth':
        return new GitCommandError(err.kind, err.command, `remote ${remote} rejected the credentials; check the URL's user and token or the ssh key`);
      default:
        return err;
    }
  }

  private async readFiles(commit: string): Promise<ControlSnapshot> {
    const raw: Record<string, Buffer | undefined> = {};
    for (const name of CONTROL_FILES) {
      raw[name] = await fs.readFile(path.join(this.dir, name)).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      });
    }
    return {
      commit,
      raw,
      schedule: parseSchedule(raw[SCHEDULE_FILE]),
      roster: parseRoster(raw[ROSTER_FILE]),
      assignments: parseAssignments(raw[ASSIGNMENTS_FILE]),
      settings: parseSettings(raw[FLEET_FILE]),
    };
  }

  /** Read the control files at the tip of the remote branch. */
  async snapshot(): Promise<ControlSnapshot> {
    return this.withNetworkRetries('fetch', () =>
      this.lock.run(async () => this.readFiles(await this.syncLocked())),
    );
  }

  private async withNetworkRetries<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const retries = this.options.networkRetries ?? this.options.pushRetries ?? 8;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const retryable = err instanceof GitCommandError && ['network', 'timeout', 'lock'].includes(err.kind);
        if (!retryable || attempt >= retries) throw err;
        const delay = fullJitterDelay(attempt, this.options.backoffBaseMs ?? 200, this.options.backoffCapMs ?? 5000);
        this.log.warn({ attempt: attempt + 1, delayMs: delay, err: (err as Error).message }, `git ${what} failed; retrying`);
        await sleep(delay);
      }
    }
  }

  /**
   * Apply `plan` to a fresh copy of the remote branch, commit and push without
   * force. A rejected push fetches again and re-applies `plan` to the new
   * state, with exponential backoff and full jitter. `plan` must be a pure
   * function of the snapshot; it may throw to abort the edit.
   */
  async edit<R>(
    message: string,
    plan: (snapshot: ControlSnapshot) => EditPlan<R>,
    options: { crashTag?: string } = {},
  ): Promise<EditOutcome<R>> {
    const retries = this.options.pushRetries ?? 8;
    let rejections = 0;
    let failures = 0;
    for (let attempt = 0; ; attempt++) {
      const step = await this.lock
        .run(() => this.editOnce(message, plan, options.crashTag))
        .catch((err: unknown) => ({ error: err }));
      if ('outcome' in step) return { ...step.outcome, rejections };
      const err = 'error' in step ? step.error : undefined;
      const kind = err instanceof GitCommandError ? err.kind : step && 'rejected' in step ? 'rejected' : undefined;
      if (kind === undefined || !['rejected', 'network', 'timeout', 'lock'].includes(kind)) throw err;
      if (kind === 'rejected') rejections++;
      else failures++;
      const networkRetries = this.options.networkRetries ?? retries;
      if (attempt >= retries || failures > networkRetries) {
        throw new PushFailedError(
          `push to ${redactUrl(this.remote)} (${this.branch}) failed ${attempt + 1} times` +
            ` (${rejections} rejected by newer commits, ${failures} network or lock errors)` +
            (err ? `; last error: ${(err as Error).message}` : ''),
        );
      }
      const delay = fullJitterDelay(attempt, this.options.backoffBaseMs ?? 200, this.options.backoffCapMs ?? 5000);
      this.log[kind === 'rejected' ? 'debug' : 'warn'](
        { attempt: attempt + 1, kind, delayMs: delay, err: err ? (err as Error).message : undefined },
        'push did not land; retrying on a fresh copy',
      );
      await sleep(delay);
    }
  }

  private async editOnce<R>(
    message: string,
    plan: (snapshot: ControlSnapshot) => EditPlan<R>,
    crashTag?: string,
  ): Promise<{ outcome: Omit<EditOutcome<R>, 'rejections'> } | { rejected: true }> {
    const head = await this.syncLocked();
    const snapshot = await this.readFiles(head);
    const { result, writes } = plan(snapshot);

    const changed: string[] = [];
    for (const [name, value] of Object.entries(writes ?? {})) {
      if (value === undefined) continue;
      const text = serialize(value);
      if (snapshot.raw[name]?.toString('utf8') === text) continue;
      await writeFileAtomic(path.join(this.dir, name), text);
      changed.push(name);
    }
    if (changed.length === 0) return { outcome: { result } };

    await this.run(['add', '--', ...changed]);
    await this.run(['commit', '--quiet', '--no-verify', '-m', message]);
    const commit = (await this.run(['rev-parse', 'HEAD'])).trim();
    if (crashTag) crashPoint(`${crashTag}:before-push`);
    try {
      await this.run(['push', '--quiet', '--porcelain', 'origin', `HEAD:refs/heads/${this.branch}`]);
    } catch (err) {
      if (err instanceof GitCommandError && err.kind === 'rejected') return { rejected: true };
      // The push may have landed before the connection broke; check the remote.
      if (err instanceof GitCommandError && (err.kind === 'network' || err.kind === 'timeout')) {
        if (await this.landed(commit).catch(() => false)) return { outcome: { result, commit } };
      }
      throw this.explain(err);
    }
    if (crashTag) crashPoint(`${crashTag}:after-push`);
    // A zero exit code alone is not proof: confirm the commit is on the remote branch.
    if (!(await this.landed(commit))) return { rejected: true };
    return { outcome: { result, commit } };
  }

  private async landed(commit: string): Promise<boolean> {
    await this.run([
      'fetch',
      '--quiet',
      '--no-tags',
      'origin',
      `+refs/heads/${this.branch}:refs/remotes/origin/${this.branch}`,
    ]);
    // merge-base prints the commit itself exactly when it is an ancestor of the remote tip.
    const base = await this.run(['merge-base', commit, `refs/remotes/origin/${this.branch}`]).catch(() => '');
    return base.trim() === commit;
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}
