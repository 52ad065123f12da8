// fetch for the bench's calls to the broker's HTTP API. fetch rejects with a bare "fetch failed";
// the reason (ECONNREFUSED, a reset, a time-out) is in its cause, so it goes into the message.
export async function request(url: string, init: RequestInit & { timeoutMs: number }): Promise<Response> {
  const { timeoutMs, ...rest } = init
  try {
    return await fetch(url, { ...rest, signal: AbortSignal.timeout(timeoutMs) })
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause
    const why = cause?.code ?? cause?.message ?? (err as Error).message
    throw new Error(`${rest.method ?? 'GET'} ${url} failed: ${why}`)
  }
}
