/**
 * Checks the test infrastructure itself: the Temporal dev server started by
 * global setup, and startDevServer's error reporting and shutdown.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { resolveTemporalCli, startDevServer } from '../../src/temporal/dev-server';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('shared test Temporal server', () => {
  const address = process.env.GITFLEET_TEST_TEMPORAL_ADDRESS;
  let connection: Connection | undefined;

  beforeAll(async () => {
    if (!address) {
      throw new Error('GITFLEET_TEST_TEMPORAL_ADDRESS is not set: jest global setup did not run');
    }
    connection = await Connection.connect({ address, connectTimeout: 5_000 });
  });

  afterAll(async () => {
    await connection?.close();
  });

  test('address is on loopback', () => {
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  test('default namespace exists', async () => {
    const response = await connection!.workflowService.describeNamespace({ namespace: 'default' });
    expect(response.namespaceInfo?.name).toBe('default');
  });

  test('lists a started workflow', async () => {
    const client = new Client({ connection: connection!, namespace: 'default' });
    const workflowId = `infra-probe-${randomUUID()}`;
    // No worker polls this task queue, so the workflow stays running until it is terminated below.
    const handle = await client.workflow.start('infraProbe', {
      taskQueue: `infra-probe-${randomUUID()}`,
      workflowId,
      workflowExecutionTimeout: '1 minute',
    });
    try {
      // Visibility records are written asynchronously, so the list is polled.
      let listed: string[] = [];
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        listed = [];
        for await (const execution of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
          listed.push(execution.workflowId);
        }
        if (listed.length > 0) {
          break;
        }
        await sleep(200);
      }
      expect(listed).toEqual([workflowId]);
    } finally {
      await handle.terminate('test cleanup');
    }
  });
});

describe('startDevServer', () => {
  const savedTemporalCli = process.env.TEMPORAL_CLI;
  let tempDir: string;

  beforeEach(() => {
    tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gitfleet-dev-server-test-'));
  });

  afterEach(() => {
    if (savedTemporalCli === undefined) {
      delete process.env.TEMPORAL_CLI;
    } else {
      process.env.TEMPORAL_CLI = savedTemporalCli;
    }
    fs.rmSync(tempDir, { recursive: true, force: true });
  });

  test('rejects a TEMPORAL_CLI that does not exist', async () => {
    process.env.TEMPORAL_CLI = path.join(tempDir, 'no-such-temporal');
    await expect(startDevServer({ dataDir: tempDir })).rejects.toThrow(/not an executable file.*make setup/);
  });

  test('reports a missing CLI with the setup command', () => {
    delete process.env.TEMPORAL_CLI;
    const savedPath = process.env.PATH;
    process.env.PATH = '';
    try {
      // tempDir has no .tools folder, so no candidate exists.
      expect(() => resolveTemporalCli(tempDir)).toThrow(/Temporal CLI not found.*make setup/);
    } finally {
      process.env.PATH = savedPath;
    }
  });

  test('reports early exit with log lines', async () => {
    const fakeCli = path.join(tempDir, 'fake-temporal');
    fs.writeFileSync(fakeCli, '#!/bin/sh\necho "fake temporal: unknown flag" >&2\nexit 3\n', { mode: 0o755 });
    process.env.TEMPORAL_CLI = fakeCli;

    const started = startDevServer({ dataDir: tempDir, startTimeoutMs: 10_000 });

    await expect(started).rejects.toThrow(/exited with code 3/);
    await expect(started).rejects.toThrow(/fake temporal: unknown flag/);
  });

  test('times out a server that never responds', async () => {
    const fakeCli = path.join(tempDir, 'silent-temporal');
    fs.writeFileSync(fakeCli, '#!/bin/sh\necho "fake temporal: starting"\nexec sleep 60\n', { mode: 0o755 });
    process.env.TEMPORAL_CLI = fakeCli;

    const started = startDevServer({ dataDir: tempDir, startTimeoutMs: 1_500 });

    await expect(started).rejects.toThrow(/timed out: no response on 127\.0\.0\.1:\d+/);
    await expect(started).rejects.toThrow(/fake temporal: starting/);
  });

  test('serves the UI and stops', async () => {
    const server = await startDevServer({ dataDir: tempDir, ui: true });
    try {
      expect(server.address).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(server.uiUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(isRunning(server.pid)).toBe(true);

      // The UI server may start a moment after the frontend.
      let status = 0;
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        status = await fetch(server.uiUrl!).then(
          (response) => response.status,
          () => 0,
        );
        if (status === 200) {
          break;
        }
        await sleep(250);
      }
      expect(status).toBe(200);
    } finally {
      await server.stop();
    }
    expect(isRunning(server.pid)).toBe(false);
    expect(fs.existsSync(path.join(tempDir, 'temporal.db'))).toBe(true);
  });
});
