/** Replace credentials in URLs (`https://user:token@host`) so they never reach logs or errors. */
export function redactUrl(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/@]+@/gi, '$1***@');
}

/** Secret values shorter than this are not replaced, because they would match ordinary text. */
export const MIN_REDACTED_LENGTH = 4;

/**
 * Replace every occurrence of each secret value in `text` with `***`. Values shorter than
 * MIN_REDACTED_LENGTH characters are left alone.
 */
export function redactValues(text: string, secrets: Iterable<string>): string {
  const values = [...secrets].filter((v) => v.length >= MIN_REDACTED_LENGTH).sort((a, b) => b.length - a.length);
  let out = text;
  for (const value of values) out = out.split(value).join('***');
  return out;
}
