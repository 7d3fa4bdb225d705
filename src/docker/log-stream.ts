// Docker multiplexes stdout and stderr of a container without a TTY into frames: one byte stream
// type (0 stdin, 1 stdout, 2 stderr), three zero bytes, a big-endian uint32 payload length, then
// the payload (Docker Engine API, "Attach to a container", stream format).
const HEADER_LENGTH = 8;

/**
 * Concatenates the payloads of a multiplexed log buffer. A buffer that does not start with a
 * valid frame header (a container created with a TTY) is returned unchanged.
 */
export function demultiplexLogs(buffer: Buffer): Buffer {
  if (!looksMultiplexed(buffer)) {
    return buffer;
  }

  const payloads: Buffer[] = [];
  let offset = 0;
  while (offset + HEADER_LENGTH <= buffer.length) {
    const length = buffer.readUInt32BE(offset + 4);
    const start = offset + HEADER_LENGTH;
    const end = Math.min(start + length, buffer.length);
    payloads.push(buffer.subarray(start, end));
    offset = end;
  }
  return Buffer.concat(payloads);
}

/** Splits log text into lines, dropping the empty string after a final newline. */
export function splitLogLines(text: string): string[] {
  if (text.length === 0) {
    return [];
  }
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') {
    lines.pop();
  }
  return lines;
}

function looksMultiplexed(buffer: Buffer): boolean {
  if (buffer.length < HEADER_LENGTH) {
    return false;
  }
  const streamType = buffer[0];
  return streamType <= 2 && buffer[1] === 0 && buffer[2] === 0 && buffer[3] === 0;
}
