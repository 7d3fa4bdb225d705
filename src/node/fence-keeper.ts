import pino from 'pino';
import { ContainerRuntime } from '../docker/runtime';
import { monotonicMs } from '../core/observer';
import { readLease } from './lease';

/**
 * Fence keeper: a small process that outlives its node process. It stops and
 * removes the node's containers once the lease runs out, so a node that was
 * killed, hung or cut off from the remote never keeps running a task that
 * another node may take over. It exits when the node process is gone and no
 * container of the node is left.
 */
export async function runFenceKeeper(leaseFile: string, nodeId: string, nodePid: number, pollMs = 500): Promise<void> {
  const logger = pino({ name: 'gitfleet-fence-keeper', base: { nodeId } }, pino.destination({ dest: 1, sync: true }));
  const runtime = new ContainerRuntime({ logger, callTimeoutMs: 5_000 });
  let lastSeq = -1;
  let deadline = monotonicMs() + 5_000;
  let fenced = false;
  logger.info({ leaseFile, pid: process.pid }, 'fence keeper started');

  for (;;) {
    const lease = readLease(leaseFile);
    if (lease && lease.seq !== lastSeq) {
      lastSeq = lease.seq;
      deadline = monotonicMs() + lease.validForMs;
      fenced = false;
    }
    const nodeAlive = processAlive(lease?.nodePid ?? nodePid);
    const expired = monotonicMs() >= deadline || lease?.stopped === true;

    if (expired && !fenced) {
      const removed = await stopAll(runtime, nodeId, logger);
      fenced = removed >= 0;
      if (removed > 0) logger.warn({ removed }, 'lease ran out; stopped and removed the node\'s containers');
    }
    if ((!nodeAlive || lease?.stopped) && fenced) {
      const left = await runtime.listManaged({ nodeId }).catch(() => undefined);
      if (left && left.length === 0) {
        logger.info('node process is gone and no container is left; fence keeper exits');
        return;
      }
      fenced = false;
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

async function stopAll(runtime: ContainerRuntime, nodeId: string, logger: pino.Logger): Promise<number> {
  try {
    const containers = await runtime.listManaged({ nodeId });
    await Promise.all(containers.map((c) => runtime.stopAndRemove(c.id, { stopTimeoutS: 1 })));
    return containers.length;
  } catch (err) {
    logger.error({ err: (err as Error).message }, 'fence keeper could not stop containers; retrying');
    return -1;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
