// Hugging Face's truncation of one sequence, for the text tests' expectations in Node and in workerd.

/** Ids with the template applied, cut to `maxLength` keeping the special tokens (`around`: how many the template puts before and after a text). */
export function truncatedIds(ids: number[], around: [number, number], maxLength: number): number[] {
  if (ids.length <= maxLength) return ids
  const [before, after] = around
  return [...ids.slice(0, before), ...ids.slice(before, maxLength - after), ...ids.slice(ids.length - after)]
}
