/**
 * A git daemon on 127.0.0.1 and a TCP proxy in front of it whose link can be
 * cut: `refuse` closes every connection and the listening socket (connects
 * are refused), `blackhole` accepts and never answers.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { freePort, sleep, waitFor } from './harness';

export class GitDaemon {
  child?: ChildProcess;
  port = 0;

  constructor(readonly baseDir: string) {}

  async start(): Promise<void> {
    this.port = await freePort();
    const log = fs.openSync(`${this.baseDir}/git-daemon.log`, 'a');
    this.child = spawn(
      'git',
      ['daemon', '--export-all', `--base-path=${this.baseDir}`, '--listen=127.0.0.1', `--port=${this.port}`, '--enable=receive-pack', '--reuseaddr', this.baseDir],
      // Own process group: `git daemon` runs git-daemon as a child, and stop() ends both.
      { stdio: ['ignore', log, log], detached: true },
    );
    fs.closeSync(log);
    await waitFor('git daemon listening', () => canConnect(this.port), 15_000, 200);
  }

  url(port = this.port): string {
    return `git://127.0.0.1:${port}/control.git`;
  }

  stop(): void {
    if (!this.child?.pid) return;
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export type LinkMode = 'pass' | 'refuse' | 'blackhole';

export class CuttableProxy {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  mode: LinkMode = 'pass';
  port = 0;

  constructor(private readonly targetPort: number) {}

  async start(port?: number): Promise<void> {
    this.port = port ?? (await freePort());
    const server = net.createServer((client) => this.onClient(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
  }

  private onClient(client: net.Socket): void {
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => undefined);
    if (this.mode === 'blackhole') return; // accepted, never answered
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    this.sockets.add(upstream);
    upstream.on('close', () => {
      this.sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.on('data', (d) => {
      if (this.mode === 'pass') upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (this.mode === 'pass') client.write(d);
    });
  }

  /** Cut the link: drop every open connection; refuse or swallow new ones. */
  async cut(mode: 'refuse' | 'blackhole'): Promise<void> {
    this.mode = mode;
    if (mode === 'refuse') {
      for (const s of this.sockets) s.destroy();
      await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
      this.server = undefined;
    } else {
      // Open connections go silent: nothing is forwarded any more either way.
    }
  }

  /** Bring the link back on the same port. */
  async restore(): Promise<void> {
    const wasRefusing = this.server === undefined;
    this.mode = 'pass';
    for (const s of this.sockets) s.destroy();
    if (wasRefusing) {
      for (let i = 0; i < 20; i++) {
        try {
          await this.start(this.port);
          return;
        } catch {
          await sleep(250);
        }
      }
      throw new Error(`could not listen again on 127.0.0.1:${this.port}`);
    }
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
