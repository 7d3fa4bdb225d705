import { containerName, LABEL_EPOCH, taskLabels } from '../../src/docker/labels';
import { demultiplexLogs, splitLogLines } from '../../src/docker/log-stream';

const DOCKER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

describe('containerName', () => {
  it('keeps valid ids unchanged', () => {
    expect(containerName('node-1', 'web', 3)).toBe('gitfleet-web-3-node-1');
  });

  it('is deterministic', () => {
    expect(containerName('n', 't', 1)).toBe(containerName('n', 't', 1));
  });

  it('sanitizes invalid characters and appends a hash', () => {
    const name = containerName('host:1/a b', 'web', 2);

    expect(name).toMatch(DOCKER_NAME);
    expect(name.startsWith('gitfleet-web-2-host_1_a_b-')).toBe(true);
    expect(name).toMatch(/-[0-9a-f]{8}$/);
  });

  it('gives distinct names to ids that sanitize alike', () => {
    expect(containerName('a:b', 't', 1)).not.toBe(containerName('a/b', 't', 1));
  });

  it('caps the length at 128 characters', () => {
    const name = containerName('n'.repeat(300), 'task', 1);

    expect(name.length).toBeLessThanOrEqual(128);
    expect(name).toMatch(DOCKER_NAME);
    expect(name).not.toBe(containerName('n'.repeat(301), 'task', 1));
  });
});

describe('taskLabels', () => {
  it('stores the epoch as a string', () => {
    expect(taskLabels('n', 't', 7, 'tok')[LABEL_EPOCH]).toBe('7');
  });
});

function frame(stream: number, text: string): Buffer {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

describe('demultiplexLogs', () => {
  it('joins stdout and stderr payloads in order', () => {
    const buffer = Buffer.concat([frame(1, 'out 1\n'), frame(2, 'err 1\n'), frame(1, 'out 2\n')]);

    expect(demultiplexLogs(buffer).toString()).toBe('out 1\nerr 1\nout 2\n');
  });

  it('joins a line split across frames', () => {
    const buffer = Buffer.concat([frame(1, 'long li'), frame(1, 'ne\n')]);

    expect(demultiplexLogs(buffer).toString()).toBe('long line\n');
  });

  it('returns raw TTY output unchanged', () => {
    expect(demultiplexLogs(Buffer.from('plain text\n')).toString()).toBe('plain text\n');
  });
});

describe('splitLogLines', () => {
  it('drops the empty line after a final newline', () => {
    expect(splitLogLines('a\nb\n')).toEqual(['a', 'b']);
  });

  it('keeps a last line without newline', () => {
    expect(splitLogLines('a\nb')).toEqual(['a', 'b']);
  });

  it('returns no lines for empty text', () => {
    expect(splitLogLines('')).toEqual([]);
  });
});
