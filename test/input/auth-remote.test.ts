/**
 * A remote that rejects authentication: a local HTTP server on 127.0.0.1
 * answers every git request with 401. gitfleet reports the remote, says the
 * credentials were rejected and what to check, exits 1, and never prints a
 * password that was part of the URL.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { runCli } from '../support/fleet';

jest.setTimeout(60_000);

let server: http.Server;
let port: number;
let requests = 0;

beforeAll(async () => {
  server = http.createServer((_req, res) => {
    requests++;
    res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="fleet"', 'Content-Type': 'text/plain' });
    res.end('authentication required\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

test('status without credentials', async () => {
  const before = requests;
  const result = await runCli(['status', '--repo', `http://127.0.0.1:${port}/fleet.git`]);
  expect(result.code).toBe(1);
  expect(requests).toBeGreaterThan(before);
  expect(result.stderr).toContain(`remote http://127.0.0.1:${port}/fleet.git rejected the credentials`);
  expect(result.stderr).toContain('check the URL');
});

test('status with a wrong password', async () => {
  const result = await runCli(['status', '--repo', `http://robot:hunter2-secret@127.0.0.1:${port}/fleet.git`]);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain('rejected the credentials');
  expect(result.stderr).toContain(`http://***@127.0.0.1:${port}/fleet.git`);
  expect(result.stderr).not.toContain('hunter2-secret');
  expect(result.stdout).not.toContain('hunter2-secret');
});
