/**
 * Scripts that print a URL to try print the server actually configured: wrangler.toml's [dev]
 * address, as wrangler itself reads it, or the port given with --port — never a constant.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { devAddress, devUrl } from '../../scripts/tools/dev-address.mjs'
import { ROOT } from '../../scripts/tools/launch.mjs'
// @ts-expect-error: a plain .mjs script without type declarations
import { main } from '../../scripts/tools/publish-model.mjs'

const run = promisify(execFile)
const dirs: string[] = []
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })))

describe('the local server address', () => {
  it("is wrangler.toml's [dev] ip and port, as wrangler reads them", async () => {
    const { unstable_readConfig } = await import('wrangler')
    const { dev } = unstable_readConfig({ config: join(ROOT, 'wrangler.toml') })
    expect(devAddress()).toEqual({ ip: dev.ip, port: dev.port })
  })

  it('reads the [dev] table only, falls back to wrangler dev’s defaults, and lets --port win', () => {
    const toml = 'name = "x"\nport = 1\n[dev]\nip = "0.0.0.0"\nport = 9911\n\n[triggers]\nport = 2\n'
    expect(devAddress(toml)).toEqual({ ip: '0.0.0.0', port: 9911 })
    expect(devAddress('name = "x"\n[triggers]\ncrons = []\n')).toEqual({ ip: 'localhost', port: 8787 })
    expect(devUrl([], toml)).toBe('http://0.0.0.0:9911')
    expect(devUrl(['--port', '4321'], toml)).toBe('http://0.0.0.0:4321')
    expect(() => devUrl(['--port', 'x'], toml)).toThrow('--port x is not a port number')
  })
})

describe('npm run publish-model', () => {
  /** The arguments that publish the bundled iris model into a bucket of its own. */
  function args(...extra: string[]): string[] {
    const persist = mkdtempSync(join(tmpdir(), 'hints-'))
    dirs.push(persist)
    return ['model-assets/iris/1', 'iris', '7', '--persist-to', persist, ...extra]
  }

  /** Publishes as a user does, a Node process of its own; answers what the script printed. */
  async function publishProcess(...extra: string[]): Promise<string> {
    const script = join(ROOT, 'scripts/tools/publish-model.mjs')
    return (await run(process.execPath, [script, ...args(...extra)], { cwd: ROOT })).stdout
  }

  /**
   * The same command line in this process (the script's `main`, which its entry point calls): a second
   * process would start Node and import miniflare again, about 1.5 s of a core.
   */
  async function publish(...extra: string[]): Promise<string> {
    let out = ''
    await main(args(...extra), { log: (line: string) => (out += `${line}\n`) })
    return out
  }

  it("prints the cron's URL on wrangler.toml's [dev] port, or on the one given with --port", async () => {
    const { ip, port } = devAddress()
    // Two publishes into buckets of their own: side by side, each starting a workerd.
    const [plain, ported] = await Promise.all([publish(), publishProcess('--port', '4321')])
    expect(plain).toContain(`fire the cron with: curl http://${ip}:${port}/cdn-cgi/local/scheduled\n`)
    expect(ported).toContain(`fire the cron with: curl http://${ip}:4321/cdn-cgi/local/scheduled\n`)
  })
})
