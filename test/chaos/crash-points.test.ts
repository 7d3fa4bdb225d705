/**
 * Crash recovery at named steps: a node kills itself with SIGKILL at one
 * step (before or after a claim push, right after its container started,
 * before a heartbeat push, before the push that records a batch result) and
 * is started again with the same id and work folder. Afterwards every task
 * ends in its expected state, no two containers of one task ever ran at
 * once (Docker's own events), no container runs without a current claim,
 * and the clones hold no git lock file or unfinished merge or rebase.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { batchTask, Fleet, FAST, serviceTask } from '../support/fleet';

jest.setTimeout(240_000);

const POINTS = [
  'claim:before-push',
  'claim:after-push',
  'start:after-start',
  'heartbeat:before-push',
  'finish:before-push',
];

function leftoverGitState(workdir: string): string[] {
  const gitDir = path.join(workdir, 'clone', '.git');
  const found: string[] = [];
  for (const name of ['index.lock', 'HEAD.lock', 'MERGE_HEAD', 'rebase-merge', 'rebase-apply']) {
    if (fs.existsSync(path.join(gitDir, name))) found.push(name);
  }
  return found;
}

describe.each(POINTS)('SIGKILL at %s', (point) => {
  const fleet = new Fleet('crash');
  const victimId = fleet.nodeId('victim');
  const peerId = fleet.nodeId('peer');

  beforeAll(async () => {
    await fleet.initRepo({
      tasks: [serviceTask('svc'), batchTask('job', 'sleep 2; echo job done', { max_retries: 2 })],
    });
  });

  afterAll(async () => {
    await fleet.cleanup();
  });

  test('recovers with one run per task', async () => {
    const monitor = await fleet.monitor(200);
    const marker = path.join(fleet.dir, 'crashed');
    const victim = fleet.startNode(victimId, [], { env: { GITFLEET_CRASH_AT: point, GITFLEET_CRASH_MARKER: marker } });

    const crashed = await victim.waitExit(90_000);
    expect(crashed.signal).toBe('SIGKILL');
    expect(fs.readFileSync(marker, 'utf8').trim()).toBe(point);

    // The restarted process finds the marker and runs on; a peer can take over.
    fleet.startNode(victimId, [], { workdir: victim.workdir, env: { GITFLEET_CRASH_AT: point, GITFLEET_CRASH_MARKER: marker } });
    fleet.startNode(peerId);

    const settleMs = FAST.taskExpiryS * 1000 + 90_000;
    await fleet.waitFor(
      async () => {
        const assignments = await fleet.assignments();
        const running = await fleet.containers({ taskId: 'svc', runningOnly: true });
        return (
          assignments.svc?.status === 'running' &&
          running.length === 1 &&
          running[0].nodeId === assignments.svc.node_id &&
          running[0].epoch === assignments.svc.epoch &&
          assignments.job?.status === 'succeeded'
        );
      },
      settleMs,
      `svc running once and job succeeded after a crash at ${point}`,
    );

    const assignments = await fleet.assignments();
    expect(assignments.job?.exit_code).toBe(0);
    for (const container of await fleet.containers({ runningOnly: true })) {
      const claim = assignments[container.taskId];
      expect([container.taskId, claim?.node_id, claim?.epoch]).toEqual([container.taskId, container.nodeId, container.epoch]);
    }
    expect(monitor.overlappingRuns('svc')).toEqual([]);
    expect(monitor.overlappingRuns('job')).toEqual([]);
    for (const node of fleet.nodes) expect(leftoverGitState(node.workdir)).toEqual([]);
  });
});
