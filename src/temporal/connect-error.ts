/** Build the error for a failed Temporal connection, naming the address and the flag to check. */
export function temporalConnectError(address: string, err: unknown): Error {
  const reason = (err instanceof Error ? err.message : String(err)).split('\n')[0];
  return new Error(
    `cannot connect to Temporal at ${address}: ${reason}; check --temporal-address and that the server is running`,
  );
}
