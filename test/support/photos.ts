/** The fixture photographs (test/fixtures/models/_images/), read from the Worker's test assets. */
import { env } from 'cloudflare:workers'
import { expect } from 'vitest'

/** A fixture photo's bytes. */
export async function photo(name: string): Promise<Uint8Array> {
  const response = await env.ASSETS.fetch(`https://assets.invalid/_images/${name}`)
  expect(response.status, name).toBe(200)
  return new Uint8Array(await response.arrayBuffer())
}

/** Bytes as base64, as a JSON `{"b64": …}` carries them. */
export function base64(bytes: Uint8Array): string {
  let text = ''
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(text)
}
