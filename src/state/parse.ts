import { z } from 'zod';
import { ControlFileError } from './errors';

/** Deepest nesting of arrays and objects a node reads; deeper files would overflow the stack of recursive checks. */
export const MAX_NESTING = 64;

/** Deepest bracket nesting in JSON text, ignoring brackets inside strings. */
export function maxNesting(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) {
      inString = true;
    } else if (c === 123 || c === 91) {
      depth++;
      if (depth > deepest) deepest = depth;
    } else if (c === 125 || c === 93) {
      depth--;
    }
  }
  return deepest;
}

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
      `file is ${bytes.length} bytes, larger than the ${MAX_FILE_BYTES / 1048576} MiB (${MAX_FILE_BYTES} bytes) limit`,
      'shrink the file (remove old entries) and push again',
    );
  }
  const text = decodeUtf8(file, bytes);
  if (text.trim() === '') {
    throw new ControlFileError(file, '', 'file is empty', `write at least ${example} and push again`);
  }
  const depth = maxNesting(text);
  if (depth > MAX_NESTING) {
    throw new ControlFileError(
      file,
      '',
      `JSON is nested ${depth} levels deep, more than the ${MAX_NESTING} levels gitfleet reads`,
      'flatten the nested values and push again',
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    // Node 20 names the position for some syntax errors only, so the offset comes from a scan.
    const position = syntaxErrorOffset(text);
    const { line, column } = lineColumn(text, position);
    const reason = message
      .replace(/^JSON\.parse: /, '')
      .replace(/ in JSON at position \d+.*$/, '')
      .replace(/ at position \d+.*$/, '')
      .replace(/, "[\s\S]*" is not valid JSON$/, '');
    throw new ControlFileError(
      file,
      `line ${line} column ${column}`,
      `invalid JSON: ${reason} (near ${JSON.stringify(snippetAt(text, position))})`,
      'fix the syntax and push again (check with `gitfleet validate`)',
    );
  }
  const protoPath = findProtoKey(value, []);
  if (protoPath !== undefined) {
    throw new ControlFileError(
      file,
      `at ${jsonPath(protoPath)}`,
      'the key "__proto__" is not allowed, because JavaScript objects cannot keep it as data',
      'rename or remove the key and push again',
    );
  }
  return value;
}

/**
 * Returns the offset of the first JSON syntax error in `text` (RFC 8259 grammar), or the text's
 * length when the error is that the text ends too early.
 */
export function syntaxErrorOffset(text: string): number {
  let i = 0;
  const fail = (at: number): never => {
    throw at;
  };
  const skipSpace = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const literal = (word: string) => {
    for (let k = 0; k < word.length; k++, i++) if (text[i] !== word[k]) fail(i);
  };
  const digits = () => {
    const start = i;
    while (i < text.length && text[i] >= '0' && text[i] <= '9') i++;
    if (i === start) fail(i);
  };
  const number = () => {
    if (text[i] === '-') i++;
    if (text[i] === '0') i++;
    else digits();
    if (text[i] === '.') {
      i++;
      digits();
    }
    if (text[i] === 'e' || text[i] === 'E') {
      i++;
      if (text[i] === '+' || text[i] === '-') i++;
      digits();
    }
  };
  const string = () => {
    i++;
    for (;;) {
      if (i >= text.length) fail(i);
      const ch = text[i];
      if (ch === '"') {
        i++;
        return;
      }
      if (ch.charCodeAt(0) < 0x20) fail(i);
      if (ch === '\\') {
        i++;
        if (text[i] === 'u') {
          for (let k = 1; k <= 4; k++) if (!/[0-9a-fA-F]/.test(text[i + k] ?? '')) fail(i + k);
          i += 5;
        } else if (text[i] !== undefined && '"\\/bfnrt'.includes(text[i])) i++;
        else fail(i);
      } else i++;
    }
  };
  const value = (): void => {
    skipSpace();
    const ch = text[i];
    if (ch === '{') {
      i++;
      skipSpace();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        skipSpace();
        if (text[i] !== '"') fail(i);
        string();
        skipSpace();
        if (text[i] !== ':') fail(i);
        i++;
        value();
        skipSpace();
        if (text[i] === ',') i++;
        else if (text[i] === '}') {
          i++;
          return;
        } else fail(i);
      }
    } else if (ch === '[') {
      i++;
      skipSpace();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value();
        skipSpace();
        if (text[i] === ',') i++;
        else if (text[i] === ']') {
          i++;
          return;
        } else fail(i);
      }
    } else if (ch === '"') string();
    else if (ch === 't') literal('true');
    else if (ch === 'f') literal('false');
    else if (ch === 'n') literal('null');
    else if (ch === '-' || (ch !== undefined && ch >= '0' && ch <= '9')) number();
    else fail(i);
  };
  try {
    value();
    skipSpace();
    return i < text.length ? i : text.length;
  } catch (at) {
    return Math.min(at as number, text.length);
  }
}

/** Up to 20 characters of `text` from `position`, so an error shows what the parser met. */
function snippetAt(text: string, position: number): string {
  if (position >= text.length) return '(end of file)';
  return text.slice(position, position + 20);
}

/**
 * Finds the path of the first object key named `__proto__`. JSON.parse keeps such a key as an own
 * property, but spreading and validating the object turn it into a prototype change, so the field
 * would be lost on the next rewrite.
 */
function findProtoKey(value: unknown, at: PropertyKey[]): PropertyKey[] | undefined {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findProtoKey(value[i], [...at, i]);
      if (found) return found;
    }
    return undefined;
  }
  if (value === null || typeof value !== 'object') return undefined;
  for (const key of Object.keys(value)) {
    if (key === '__proto__') return [...at, key];
    const found = findProtoKey((value as Record<string, unknown>)[key], [...at, key]);
    if (found) return found;
  }
  return undefined;
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

/** Word a zod issue for people: a missing field is named as such, otherwise the value found is shown. */
export function describeIssue(message: string, path: ReadonlyArray<PropertyKey>, found: unknown): string {
  const field = path.length > 0 ? String(path[path.length - 1]) : undefined;
  if (found === undefined && field !== undefined && typeof path[path.length - 1] === 'string') {
    return `required field "${field}" is missing`;
  }
  return `${message} (found ${describeValue(found)})`;
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
    describeIssue(issue.message, issue.path, found),
    'correct the value and push again (check with `gitfleet validate`)',
  );
}
