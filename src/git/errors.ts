import { redactUrl } from '../util/redact';

export type GitFailureKind =
  | 'rejected' // someone else pushed first; fetch and re-apply
  | 'lock' // a git lock file is held (for example by a killed git process)
  | 'network' // the remote could not be reached or hung up
  | 'timeout' // a git command was killed after its time limit
  | 'auth' // the remote refused our credentials
  | 'missing-branch' // the remote has no such branch
  | 'missing-remote' // the remote repository does not exist
  | 'other';

/** A git command that failed, classified so callers can tell retryable cases apart. */
export class GitCommandError extends Error {
  override readonly name = 'GitCommandError';

  constructor(
    readonly kind: GitFailureKind,
    readonly command: string,
    detail: string,
  ) {
    super(redactUrl(`git ${command} failed (${kind}): ${detail.trim().split('\n').slice(-4).join(' | ')}`));
  }
}

/** The remote stayed unreachable or kept rejecting our push after every retry. */
export class PushFailedError extends Error {
  override readonly name = 'PushFailedError';
}

export function classifyGitFailure(text: string): GitFailureKind {
  const t = text.toLowerCase();
  if (t.includes('timed out') && t.includes('block')) return 'timeout';
  if (
    t.includes('non-fast-forward') ||
    t.includes('fetch first') ||
    t.includes('[rejected]') ||
    t.includes('updates were rejected') ||
    t.includes('cannot lock ref') ||
    t.includes('failed to update ref')
  ) {
    // "cannot lock ref" on push comes from the remote updating the same ref at once.
    return t.includes('[rejected]') || t.includes('non-fast-forward') || t.includes('fetch first')
      ? 'rejected'
      : t.includes('remote rejected')
        ? 'rejected'
        : 'lock';
  }
  if (t.includes('index.lock') || t.includes('.lock\': file exists') || t.includes('unable to create')) {
    return 'lock';
  }
  if (t.includes("couldn't find remote ref") || t.includes('remote branch') && t.includes('not found')) {
    return 'missing-branch';
  }
  if (
    t.includes('authentication failed') ||
    t.includes('permission denied') ||
    t.includes('could not read username') ||
    t.includes('403')
  ) {
    return 'auth';
  }
  if (t.includes('does not appear to be a git repository') || t.includes('repository not found') || (t.includes('not found') && t.includes('repository'))) {
    return 'missing-remote';
  }
  if (
    t.includes('could not read from remote') ||
    t.includes('unable to access') ||
    t.includes('connection refused') ||
    t.includes('connection reset') ||
    t.includes('could not resolve host') ||
    t.includes('hung up') ||
    t.includes('early eof') ||
    t.includes('network is unreachable') ||
    t.includes('no route to host') ||
    t.includes('timed out') ||
    t.includes('unable to connect')
  ) {
    return 'network';
  }
  if (t.includes('[remote rejected]')) return 'rejected';
  return 'other';
}
