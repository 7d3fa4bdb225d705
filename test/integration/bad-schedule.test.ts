/**
 * A schedule.json that someone breaks while a node runs a service: the node
 * keeps the service running, never rewrites the broken file, shows the
 * problem in `gitfleet status`, and logs it once per change, not once per
 * poll. Fixing the file is logged once as well.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Fleet, git, remoteText, serviceTask, sleep } from '../support/fleet';

jest.setTimeout(180_000);

describe('broken schedule.json', () => {
  const fleet = new Fleet('badsched');
  const nodeId = fleet.nodeId('steady');

  beforeAll(async () => {
    await fleet.initRepo({ tasks: [serviceTask('svc')] });
  });

  afterAll(async () => {
    await fleet.cleanup();
  });

  async function pushSchedule(text: string, message: string): Promise<void> {
    const work = fs.mkdtempSync(path.join(fleet.dir, 'edit-'));
    await git(['clone', '--quiet', fleet.repo, work]);
    fs.writeFileSync(path.join(work, 'schedule.json'), text);
    await git(['commit', '--quiet', '-am', message], work);
    await git(['push', '--quiet', 'origin', 'HEAD:refs/heads/main'], work);
  }

  function logCount(node: { logPath: string }, message: string): number {
    return fs
      .readFileSync(node.logPath, 'utf8')
      .split('\n')
      .filter((line) => line.includes(`"msg":"${message}"`)).length;
  }

  test('keeps running and reports once', async () => {
    const node = fleet.startNode(nodeId);
    await fleet.waitFor(
      async () => (await fleet.assignments()).svc?.status === 'running',
      90_000,
      'svc running',
    );
    const [before] = await fleet.containers({ taskId: 'svc', runningOnly: true });
    expect(before).toBeDefined();
    const good = await remoteText(fleet.repo, 'schedule.json');

    const broken = good.replace('"tasks": [', '"tasks": [,');
    await pushSchedule(broken, 'break the schedule');
    // Several heartbeats and claim polls pass (task heartbeat 2 s, idle poll 1 s).
    await sleep(12_000);

    expect(await remoteText(fleet.repo, 'schedule.json')).toBe(broken);
    const running = await fleet.containers({ taskId: 'svc', runningOnly: true });
    expect(running.map((c) => c.id)).toEqual([before.id]);
    const status = await fleet.status();
    expect(status.problems.join('\n')).toMatch(/schedule\.json line \d+ column \d+: invalid JSON/);
    expect(logCount(node, 'control repo file problem')).toBe(1);

    await pushSchedule(good, 'fix the schedule');
    await fleet.waitFor(() => logCount(node, 'control repo files are valid again') === 1, 30_000, 'valid-again log line');
    await sleep(4_000);
    expect(logCount(node, 'control repo file problem')).toBe(1);
    expect((await fleet.containers({ taskId: 'svc', runningOnly: true })).map((c) => c.id)).toEqual([before.id]);
    expect((await fleet.assignments()).svc?.epoch).toBe(1);
  });
});
