import * as fs from 'node:fs';
import * as path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { monotonicMs } from '../core/observer';

/**
 * The lease file a node shares with its fence keeper process. Each renewal
 * bumps `seq` and records how long the claims stay safe from the moment the
 * keeper reads the new value. The keeper measures that time on its own
 * monotonic clock and stops the node's containers once it runs out.
 */
export interface LeaseRecord {
  nodeId: string;
  seq: number;
  validForMs: number;
  nodePid: number;
  /** Set on a clean shutdown: the keeper stops the node's containers and exits. */
  stopped?: boolean;
}

/** File that records the pid of the node's fence keeper. */
export function fenceKeeperPidPath(workdir: string): string {
  return path.join(workdir, 'fence-keeper.pid');
}

/**
 * Return the pid of a running fence keeper of this node, or undefined. The
 * command line is checked, so a pid reused by another process does not count.
 */
export function liveFenceKeeper(workdir: string, nodeId: string): number | undefined {
  const pidFile = fenceKeeperPidPath(workdir);
  const pid = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8')) : NaN;
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const cmdline = fs.existsSync(`/proc/${pid}/cmdline`) ? fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8') : '';
  return cmdline.includes('fence-keeper') && cmdline.includes(nodeId) ? pid : undefined;
}

export function leasePath(workdir: string): string {
  return path.join(workdir, 'lease.json');
}

export class LeaseWriter {
  private seq = 0;
  private renewedAt = 0;
  private validForMs = 0;

  constructor(
    private readonly file: string,
    private readonly nodeId: string,
  ) {
    const previous = readLease(file);
    if (previous) this.seq = previous.seq;
  }

  renew(validForMs: number): void {
    this.renewedAt = monotonicMs();
    this.validForMs = Math.max(0, validForMs);
    this.seq++;
    this.write({ nodeId: this.nodeId, seq: this.seq, validForMs: Math.max(0, Math.floor(validForMs)), nodePid: process.pid });
  }

  /**
   * Point the current lease at this process without changing its seq, so a
   * running keeper keeps its deadline and finds a live node again.
   */
  adoptCurrent(): boolean {
    const current = readLease(this.file);
    if (!current) return false;
    this.seq = current.seq;
    this.write({ ...current, nodePid: process.pid, stopped: false });
    return true;
  }

  /** Milliseconds until the keeper would stop this node's containers, by this process's clock. */
  remainingMs(): number {
    return this.renewedAt + this.validForMs - monotonicMs();
  }

  markStopped(): void {
    this.validForMs = 0;
    this.seq++;
    this.write({ nodeId: this.nodeId, seq: this.seq, validForMs: 0, nodePid: process.pid, stopped: true });
  }

  private write(record: LeaseRecord): void {
    writeFileAtomic.sync(this.file, `${JSON.stringify(record)}\n`);
  }
}

export function readLease(file: string): LeaseRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as LeaseRecord;
  } catch {
    return undefined;
  }
}
