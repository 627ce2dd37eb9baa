// Types of scripts/tools/launch.mjs, for the TypeScript end-to-end tests (the bench imports it as plain ESM).
import type { Miniflare } from 'miniflare'

/** The repository root. */
export declare const ROOT: string

/** A port of 127.0.0.1 that was free a moment ago. */
export declare function freePort(): Promise<number>
/** `count` distinct ports that were free a moment ago (held open together while the OS names them). */
export declare function freePorts(count: number): Promise<number[]>

/** The process groups of the `wrangler dev`s this process started and has not stopped. */
export declare function processGroups(): ReadonlySet<number>

/**
 * Sets the CPU priority (nice value) of the scheduling group of `pid`, a process started in a session
 * of its own: Linux autogroup scheduling. False where it cannot.
 */
export declare function setGroupPriority(pid: number, nice: number): boolean
/** setGroupPriority, asked again for up to `ms` (5 s) while the kernel answers EAGAIN (one change per 100 ms without CAP_SYS_ADMIN). */
export declare function setGroupPriorityPatiently(pid: number, nice: number, ms?: number): Promise<boolean>

export interface LaunchOptions {
  /** The model repository to serve (the ASSETS binding); model-assets/ by default. Indexed by the [build] command. */
  assetsDir?: string
  /**
   * The Workers to run in one `wrangler dev` (`-c <config> -c <config>…`, paths from the repository
   * root); wrangler.toml alone by default. The first is the primary: it serves HTTP and takes
   * `assetsDir` and `vars`; the others are reached only through service bindings (startWranglerDev only).
   */
  configs?: string[]
  /** `[vars]` on top of wrangler.toml's (wrangler dev: `--var KEY:VALUE`). */
  vars?: Record<string, string>
  /** The longest wait for the server to be ready, start included; 120 000 by default. */
  readyTimeoutMs?: number
  /**
   * `'live'` (default): ready once `GET /v2/health/live` answers 200.
   * `'listening'`: ready once the port accepts connections, with no request sent, so the first request is a cold one.
   */
  ready?: 'live' | 'listening'
  /** The CPU priority (nice value) of its process group, set with setGroupPriority (startWranglerDev only). */
  nice?: number
}

export interface Launched {
  /** `http://127.0.0.1:<port>`, without a trailing slash. */
  url: string
  port: number
  /** From the start to ready, in ms. */
  startupMs: number
  /** What the server printed so far (the Worker's log lines among it), in order; offsets into it stay valid. */
  logs(): string
  /** Ends the server and removes its scratch folders; waits (bounded) for it to go. Safe to call twice. */
  stop(): Promise<void>
}

export interface WranglerDev extends Launched {
  /** wrangler's process group: wrangler and the workerd processes it started. */
  pgid: number | undefined
  /** The port of wrangler's inspector proxy (the Worker's isolate over the DevTools protocol). */
  inspectorPort: number
}

/** Starts `wrangler dev` on 127.0.0.1, as `npm run dev` does, with its own state folder. */
export declare function startWranglerDev(options?: LaunchOptions): Promise<WranglerDev>

export interface Bundle {
  /** The folder `wrangler deploy --dry-run --outdir` wrote. */
  dir: string
  /** The bundle's modules, as Miniflare takes them. */
  modules: { type: 'ESModule' | 'CompiledWasm'; path: string }[]
  /** wrangler's output (its "Total Upload" line among it). */
  output: string
}

/** Builds the deploy bundle (`wrangler deploy --dry-run --outdir`); `outDir` defaults to a scratch folder removed at exit. */
export declare function buildBundle(options?: {
  assetsDir?: string
  outDir?: string
  /** The CPU priority (nice value) of the build, set with setGroupPriority. */
  nice?: number
  /** Another Worker's wrangler config (a path from the repository root); wrangler.toml by default. */
  config?: string
  /** Called with the build's process id once it is started. */
  onSpawn?: (pid: number) => void
}): Promise<Bundle>
/** A deploy bundle already built into `dir`; throws if there is none. */
export declare function bundleAt(dir: string): Bundle
export declare const CHECKED_BUNDLE: string
export declare function checkedBundle(dir?: string, root?: string): Bundle | undefined

export interface BundleOptions extends LaunchOptions {
  /** A bundle built beforehand, to share between instances; built (and removed on stop) otherwise. */
  bundle?: Bundle
  /** Local state (R2 and the rest); instances given the same folder share a bucket. A scratch folder by default. */
  persistDir?: string
  /** The port on 127.0.0.1; a free one by default. */
  port?: number
  /** Another Worker's wrangler config (a path from the repository root), for its bindings; wrangler.toml by default. */
  config?: string
  /** The Worker's isolate over the DevTools protocol, through Miniflare's inspector proxy on a free port (`inspectorPort`). */
  inspector?: boolean
  /**
   * Another Worker's wrangler config (a path from the repository root; its main a plain ES module) to
   * put in front: it serves HTTP and reaches the bundle's Worker through its service bindings.
   */
  front?: string
}

export interface BundleServer extends Launched {
  /** Runs the Worker's scheduled handler once, as the cron would (wrangler.toml's first cron unless given); its outcome. */
  scheduled(cron?: string): Promise<string>
  /** wrangler.toml's cron schedules (`[triggers] crons`). */
  crons: string[]
  /** The Miniflare instance, for its bindings (`getR2Bucket('MODELS')`: the first Worker's, so without `front`). */
  miniflare: Miniflare
  /** The port of Miniflare's inspector proxy (the Worker's isolate over the DevTools protocol), with `inspector`. */
  inspectorPort?: number
}

/** Serves the deploy bundle with workerd through Miniflare, with wrangler.toml's bindings, on 127.0.0.1. */
export declare function startBundle(options?: BundleOptions): Promise<BundleServer>
