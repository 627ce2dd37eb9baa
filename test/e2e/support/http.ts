/** Small HTTP helpers and shared inputs for the end-to-end tests: every request is bounded in time. */

export interface Answer<T = unknown> {
  status: number
  headers: Headers
  /** The parsed JSON body, or `undefined` when the body is not JSON. */
  json: T
  text: string
}

const REQUEST_TIMEOUT_MS = 60_000

async function answer<T>(response: Response): Promise<Answer<T>> {
  const text = await response.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: response.status, headers: response.headers, json: json as T, text }
}

export async function get<T = unknown>(url: string, headers: Record<string, string> = {}): Promise<Answer<T>> {
  return answer<T>(await fetch(url, { headers, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }))
}

/** POSTs a body (objects as JSON) with `content-type: application/json` unless `headers` says otherwise. */
export async function post<T = unknown>(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Answer<T>> {
  return answer<T>(
    await fetch(url, {
      method: 'POST',
      body: typeof body === 'string' ? body : JSON.stringify(body),
      headers: { 'content-type': 'application/json', ...headers },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    }),
  )
}

/** What `curl -d '<body>'` sends: a form content type (the body itself is JSON). */
export const CURL_D_HEADERS = {
  'content-type': 'application/x-www-form-urlencoded',
  accept: '*/*',
  'user-agent': 'curl/8',
}

export const argmax = (row: readonly number[]): number => row.reduce((best, v, i) => (v > row[best]! ? i : best), 0)

export const sum = (row: readonly number[]): number => row.reduce((a, b) => a + b, 0)

/** The admin API's header for a token. */
export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** An iris setosa (sepal length, sepal width, petal length, petal width): class 0. */
export const SETOSA = [5.1, 3.5, 1.4, 0.2]

/** One family's samples on `/metrics` at `base` whose labels include `labels`, summed (label values here hold no quotes or commas). */
export async function metricSum(base: string, name: string, labels: Record<string, string>): Promise<number> {
  let total = 0
  for (const line of (await get(`${base}/metrics`)).text.split('\n')) {
    const match = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!match || match[1] !== name) continue
    const has = Object.fromEntries(
      (match[2] ?? '')
        .split(',')
        .filter(Boolean)
        .map((pair) => pair.split('=') as [string, string]),
    )
    if (Object.entries(labels).every(([k, v]) => has[k] === JSON.stringify(v))) total += Number(match[3])
  }
  return total
}
