import type { Readable } from 'node:stream';
import { DockerTimeoutError, DockerUnavailableError } from './errors';

// Socket errors that mean the engine cannot be reached at all, as opposed to a failed request.
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'EPERM']);

/** HTTP status code of a failed dockerode call, if the engine sent a response. */
export function statusCodeOf(error: unknown): number | undefined {
  if (typeof error === 'object' && error !== null && 'statusCode' in error) {
    const code = (error as { statusCode: unknown }).statusCode;
    return typeof code === 'number' ? code : undefined;
  }
  return undefined;
}

/** Engine message of a failed dockerode call (`json.message`), else the error's own message. */
export function engineMessageOf(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const json = (error as { json?: unknown }).json;
    if (typeof json === 'object' && json !== null && 'message' in json) {
      return String((json as { message: unknown }).message).trim();
    }
    if (error instanceof Error) {
      return error.message.trim();
    }
  }
  return String(error);
}

/**
 * Runs one engine call with a time limit. When the limit passes, the request is aborted through
 * `signal` and the call rejects with DockerTimeoutError, whatever the engine does later.
 */
export async function callEngine<T>(
  operation: string,
  target: string,
  timeoutMs: number,
  call: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(new DockerTimeoutError(operation, target, timeoutMs));
    }, timeoutMs);
  });

  // Deferred by a microtask so that a synchronous throw in `call` still clears the timer below.
  const pending = Promise.resolve().then(() => call(controller.signal));
  // After a timeout no caller awaits `pending`, and its abort error must not surface as unhandled.
  pending.catch(() => undefined);

  try {
    return await Promise.race([pending, expired]);
  } catch (error) {
    throw translateEngineError(error, operation);
  } finally {
    clearTimeout(timer);
  }
}

function translateEngineError(error: unknown, operation: string): unknown {
  if (error instanceof DockerTimeoutError) {
    return error;
  }
  const code = (error as { code?: unknown } | null)?.code;
  const syscall = (error as { syscall?: unknown } | null)?.syscall;
  // ENOENT means an unreachable engine only while connecting. Elsewhere it is an ordinary failure.
  const isConnectError = syscall === 'connect' || code !== 'ENOENT';
  if (typeof code === 'string' && UNAVAILABLE_CODES.has(code) && isConnectError) {
    return new DockerUnavailableError(operation, code, engineMessageOf(error));
  }
  return error;
}

/**
 * Reads a stream of newline-separated JSON messages (image pull and build progress) to its end.
 * Lines that are not JSON are kept as `{ stream: line }`. Aborting `signal` destroys the stream.
 */
export function readJsonMessages(
  stream: NodeJS.ReadableStream,
  signal: AbortSignal,
): Promise<Array<Record<string, unknown>>> {
  const readable = stream as Readable;
  const messages: Array<Record<string, unknown>> = [];
  let buffered = '';

  const takeLine = (line: string): void => {
    const text = line.trim();
    if (text.length === 0) {
      return;
    }
    try {
      const parsed: unknown = JSON.parse(text);
      const isObject = typeof parsed === 'object' && parsed !== null;
      messages.push(isObject ? (parsed as Record<string, unknown>) : { stream: text });
    } catch {
      messages.push({ stream: text });
    }
  };

  return new Promise((resolve, reject) => {
    let ended = false;
    const onAbort = (): void => {
      readable.destroy();
    };
    signal.addEventListener('abort', onAbort, { once: true });

    readable.on('data', (chunk: Buffer | string) => {
      buffered += chunk.toString();
      let newline = buffered.indexOf('\n');
      while (newline >= 0) {
        takeLine(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
        newline = buffered.indexOf('\n');
      }
    });
    readable.on('end', () => {
      ended = true;
      takeLine(buffered);
      signal.removeEventListener('abort', onAbort);
      resolve(messages);
    });
    readable.on('error', (error) => {
      signal.removeEventListener('abort', onAbort);
      reject(error);
    });
    readable.on('close', () => {
      signal.removeEventListener('abort', onAbort);
      if (!ended) {
        reject(new Error('the engine closed the progress stream before it ended'));
      }
    });
  });
}
