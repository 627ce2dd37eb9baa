/** @module core/log — one JSON object per line, which Workers Logs indexes field by field. */

export type Level = 'debug' | 'info' | 'warn' | 'error'

/** Writes a structured log line: `{"level", "event", ...fields}`. */
export function log(level: Level, event: string, fields: Record<string, unknown> = {}): void {
  const line = JSON.stringify({ level, event, ...fields })
  if (level === 'error') console.error(line)
  else if (level === 'warn') console.warn(line)
  else console.log(line)
}
