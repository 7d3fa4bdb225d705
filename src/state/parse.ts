import { z } from 'zod';
import { ControlFileError } from './errors';

/** Largest control file a node reads, in bytes. */
export const MAX_FILE_BYTES = 8 * 1024 * 1024;

/** Decode UTF-8 strictly, naming the byte offset of the first invalid sequence. */
function decodeUtf8(file: string, bytes: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    let low = 0;
    let high = bytes.length;
    // Binary search for the shortest prefix that fails to decode.
    while (low < high) {
      const mid = (low + high) >> 1;
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, mid + 1), { stream: true });
        low = mid + 1;
      } catch {
        high = mid;
      }
    }
    const { line, column } = lineColumn(bytes.subarray(0, low).toString('utf8'), Infinity);
    throw new ControlFileError(
      file,
      `line ${line} column ${column} (byte ${low})`,
      'invalid UTF-8',
      'save the file as UTF-8 and push again',
    );
  }
}

function lineColumn(text: string, position: number): { line: number; column: number } {
  const end = Math.min(position, text.length);
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: end - lineStart + 1 };
}

/** Parse JSON text, turning a syntax error into a ControlFileError with line and column. */
export function parseJsonText(file: string, bytes: Buffer, example: string): unknown {
  if (bytes.length > MAX_FILE_BYTES) {
    throw new ControlFileError(
      file,
      '',
      `file is ${(bytes.length / 1048576).toFixed(1)} MiB, larger than the ${MAX_FILE_BYTES / 1048576} MiB limit`,
      'shrink the file (remove old entries) and push again',
    );
  }
  const text = decodeUtf8(file, bytes);
  if (text.trim() === '') {
    throw new ControlFileError(file, '', 'file is empty', `write at least ${example} and push again`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const match = /position (\d+)/.exec(message);
    const position = match ? Number(match[1]) : text.length;
    const { line, column } = lineColumn(text, position);
    const reason = message.replace(/^JSON\.parse: /, '').replace(/ in JSON at position \d+.*$/, '');
    throw new ControlFileError(
      file,
      `line ${line} column ${column}`,
      `invalid JSON: ${reason}`,
      'fix the syntax and push again (check with `gitfleet validate`)',
    );
  }
}

/** Render a JSON path such as `tasks[3].priority`. */
export function jsonPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(String(key))) out += out ? `.${String(key)}` : String(key);
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out || '(top level)';
}

export function valueAt(root: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let current: unknown = root;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

export function describeValue(value: unknown): string {
  if (value === undefined) return 'missing';
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Validate a parsed value, turning the first zod issue into a ControlFileError. */
export function validate<T>(
  file: string,
  schema: z.ZodType<T>,
  value: unknown,
  pathPrefix: PropertyKey[] = [],
): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = [...pathPrefix, ...issue.path];
  const found = valueAt(value, issue.path);
  throw new ControlFileError(
    file,
    `at ${jsonPath(path)}`,
    `${issue.message} (found ${describeValue(found)})`,
    'correct the value and push again (check with `gitfleet validate`)',
  );
}
