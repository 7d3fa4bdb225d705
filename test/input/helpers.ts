/**
 * Helpers for the input and security tests: bare control repos with chosen file contents, the
 * built CLI as a child process, and the tip commit of a remote branch.
 */
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { ControlRepo } from '../../src/git/control-repo';

export const CLI = path.resolve(__dirname, '..', '..', 'dist', 'src', 'cli.js');
export const silentLogger = pino({ level: 'silent' });

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'test',
  GIT_AUTHOR_EMAIL: 'test@localhost',
  GIT_COMMITTER_NAME: 'test',
  GIT_COMMITTER_EMAIL: 'test@localhost',
};

export function tempDir(prefix: string): string {
  return fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
}

export function git(cwd: string, args: string[]): string {
  return execFileSync('git', args, { cwd, env: GIT_ENV, encoding: 'utf8' });
}

/** Contents of control files: a Buffer or string is written as is, anything else as JSON. */
export type FileContents = Record<string, Buffer | string | unknown>;

export const GOOD_FILES: FileContents = {
  'schedule.json': { tasks: [{ id: 'web', type: 'default', priority: 1, image: 'gitfleet/busybox:local' }] },
  'roster.json': { nodes: [] },
  'assignments.json': { assignments: {} },
};

function encode(value: unknown): Buffer | string {
  if (Buffer.isBuffer(value) || typeof value === 'string') return value;
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** Create a bare repo whose `main` branch holds `files`, and return its path. */
export function makeBareRepo(root: string, files: FileContents, name = 'control.git'): string {
  const bare = path.join(root, name);
  git(root, ['init', '--quiet', '--bare', '--initial-branch=main', bare]);
  const work = fs.mkdtempSync(path.join(root, 'seed-'));
  git(work, ['init', '--quiet', '--initial-branch=main']);
  for (const [file, value] of Object.entries(files)) fs.writeFileSync(path.join(work, file), encode(value));
  git(work, ['add', '-A']);
  git(work, ['commit', '--quiet', '--allow-empty', '-m', 'seed']);
  git(work, ['push', '--quiet', bare, 'HEAD:refs/heads/main']);
  fs.rmSync(work, { recursive: true, force: true });
  return bare;
}

/** Commit id at the tip of `branch` in a bare repo. */
export function remoteHead(bare: string, branch = 'main'): string {
  return git(bare, ['rev-parse', `refs/heads/${branch}`]).trim();
}

/** Contents of `file` at the tip of `branch` in a bare repo. */
export function remoteFile(bare: string, file: string, branch = 'main'): string {
  return git(bare, ['show', `${branch}:${file}`]);
}

export function controlRepo(remote: string, root: string, extra: Partial<ConstructorParameters<typeof ControlRepo>[0]> = {}): ControlRepo {
  return new ControlRepo({
    remote,
    dir: fs.mkdtempSync(path.join(root, 'clone-')),
    logger: silentLogger,
    pushRetries: 2,
    backoffBaseMs: 10,
    backoffCapMs: 50,
    ...extra,
  });
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the built CLI and collect its output; never rejects. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<CliResult> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv.GITFLEET_REPO;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: childEnv, timeout: timeoutMs, encoding: 'utf8' },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
