/**
 * Clock skew: nodes run under Debian's faketime, one 300 s ahead and one
 * 300 s behind, next to a node on the real clock. No early takeover in either
 * direction: live tasks keep their epochs while their owners heartbeat, and
 * after a SIGKILL the takeover comes no sooner than the expiry allows.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { assignments, claimMismatches, containers, FAST, Fleet, held, initRepo, runTag, serviceTask, sleep, waitFor } from './harness';

const EXPIRY_MS = FAST.expiryS * 1000;
const HEARTBEAT_MS = FAST.heartbeatS * 1000;

jest.setTimeout(300_000);

function faketimeWorks(): string | undefined {
  try {
    const out = execFileSync('faketime', ['-f', '+300s', process.execPath, '-e', 'console.log(Date.now())'], { timeout: 20_000 }).toString();
    const skew = Number(out.trim()) - Date.now();
    if (Math.abs(skew - 300_000) > 20_000) return `faketime ran node but the skew was ${skew} ms, not about +300000 ms`;
    return undefined;
  } catch (err) {
    return `faketime could not run node: ${(err as Error).message}`;
  }
}

describe('clock skew of +300 s and -300 s', () => {
  const address = process.env.GITFLEET_TEST_TEMPORAL_ADDRESS!;
  let fleet: Fleet;

  beforeAll(() => {
    fleet = new Fleet(address, 'gitfleet-skew-');
  });

  afterAll(async () => {
    await fleet.cleanup();
  });

  test('no early takeover by or from a skewed node', async () => {
    const unusable = faketimeWorks();
    if (unusable) {
      process.stdout.write(`clock skew test skipped: ${unusable}\n`);
      return;
    }
    const tag = runTag('sk');
    const bare = path.join(fleet.dir, 'control.git');
    const taskIds = [`${tag}-s0`, `${tag}-s1`];
    await initRepo(bare, taskIds.map(serviceTask));
    await fleet.recorder.start();
    const real = `${tag}r`;
    const ahead = `${tag}p`;
    const behind = `${tag}m`;

    fleet.start(real, { repo: bare, maxTasks: 1 });
    await waitFor('real-clock node runs a task', async () => [...held(await assignments(bare)).values()].some((c) => c.node_id === real && c.status === 'running'), 120_000, 500);
    fleet.start(ahead, { repo: bare, maxTasks: 2, wrapper: ['faketime', '-f', '+300s'] });
    const attached = await waitFor('skewed node runs the other task', async () => {
      const c = [...held(await assignments(bare)).values()];
      return c.some((x) => x.node_id === ahead && x.status === 'running') || (!fleet.alive(ahead) ? 'dead' : false);
    }, 120_000, 500).catch(() => 'timeout');
    if (attached !== true) {
      const reason = `a node under faketime +300s did not run a task (${attached}); its log ends: ${fleet.log(ahead).slice(-600)}`;
      process.stdout.write(`clock skew test skipped: ${reason}\n`);
      return;
    }
    fleet.start(behind, { repo: bare, maxTasks: 2, wrapper: ['faketime', '-f', '-300s'] });
    await sleep(3000);

    // Two expiries of watching: no epoch may change while owners heartbeat.
    const before = held(await assignments(bare));
    await sleep(2 * EXPIRY_MS);
    const after = held(await assignments(bare));
    for (const id of taskIds) {
      expect(after.get(id)?.node_id).toBe(before.get(id)?.node_id);
      expect(after.get(id)?.epoch).toBe(before.get(id)?.epoch);
    }
    expect(await claimMismatches(bare, [real, ahead, behind])).toEqual([]);

    // Kill the real-clock owner: a skewed node takes over, but not early.
    const measure = async (victim: string) => {
      const claims = held(await assignments(bare));
      const [taskId, claim] = [...claims].find(([, c]) => c.node_id === victim)!;
      const killedAt = Date.now();
      await fleet.kill(victim, 'SIGKILL');
      const at = await waitFor(`takeover of ${taskId}`, async () => {
        const c = (await assignments(bare))[taskId];
        return c?.node_id && c.node_id !== victim && c.epoch !== claim.epoch ? { at: Date.now(), by: c.node_id } : false;
      }, EXPIRY_MS + 40_000, 200);
      return { delay: at.at - killedAt, by: at.by };
    };
    const first = await measure(real);
    // The last renewal began at most one heartbeat (plus a push) before the kill.
    expect(first.delay).toBeGreaterThanOrEqual(EXPIRY_MS - HEARTBEAT_MS - 1_000);
    await waitFor('settled', async () => (await claimMismatches(bare, [real, ahead, behind])).length === 0 && (await containers([ahead, behind])).filter((c) => c.running).length === 2, 60_000, 1000);

    // Kill the skewed node that holds a task; the other skewed node (opposite skew) or the other one takes over.
    const holder = [...held(await assignments(bare)).values()].find((c) => c.node_id === ahead) ? ahead : behind;
    const second = await measure(holder);
    expect(second.delay).toBeGreaterThanOrEqual(EXPIRY_MS - HEARTBEAT_MS - 1_000);
    expect(fleet.recorder.maxOverlap().ms).toBe(0);
    process.stdout.write(
      `skew: no epoch change in ${(2 * EXPIRY_MS) / 1000} s with owners at 0, +300, -300 s; takeover of the real-clock node's task by ${first.by} after ` +
        `${(first.delay / 1000).toFixed(1)} s, of ${holder}'s task by ${second.by} after ${(second.delay / 1000).toFixed(1)} s; max overlap 0 ms\n`,
    );
  });
});
