/**
 * @module traffic/traffic — traffic control per model, in one place every entry point goes through:
 * which version a request goes to, whether it runs now, waits or is refused, and the shadow run
 * after its response. One call per prediction goes through it: `TrafficControl.serve`, from
 * `predict` (predict.ts), whatever the transport — it routes the request once (the version it
 * resolves is the one leased), takes its slots, then has the transport read its body. All of it is
 * set in the model's config.json:
 *
 * - `traffic: {versions: {"1": 90, "2": 10}, sticky_header}` splits requests that name no version
 *   or label by weight; with the sticky header, a hash of its value picks, so a client keeps its
 *   version while the weights stay the same; without it, each request is drawn at random.
 * - `shadow: {version, fraction}`: that fraction of requests runs again on the shadow version after
 *   the response is ready (`waitUntil`), on the same input tensors; the outputs are compared into
 *   metrics and a `shadow.compared` log line, and never reach the client.
 * - `max_concurrent`, `max_queue`: a request holds a slot from the moment it is routed until its
 *   response is ready (body read included); past the slots and the queue, 429 with `Retry-After`.
 *   The vars MAX_CONCURRENT and MAX_QUEUE do the same for all models of the isolate together.
 *   A slot or queue place is given up whenever its request ends: its response is ready, it failed,
 *   its body read broke or ran past BODY_READ_TIMEOUT_MS, or its client left (`RouteRequest.signal`).
 */
import type { RequestRecord } from '../analytics/analytics'
import type { MemoryLedger } from '../cache/memory-ledger'
import { DEFAULTS, isolateLimits, readConfig } from '../core/config'
import { CLAIM_TIMEOUT_MS, Gate } from './gate'
import { RequestMemory, requestMemoryBytes } from './request-memory'
import type { Place } from './gate'
import { ApiError, ClientGoneError, configFault } from '../core/errors'
import { holding } from '../cache/lease'
import type { ModelLease, WaitUntil } from '../cache/lease'
import { log } from '../core/log'
import type { Metrics } from '../core/metrics'
import type { ModelConfig } from '../repository/model-config'
import type { Repository, ResolvedVersion, Selector } from '../repository/repository'
import { wrapRun } from '../runtime/servable'
import type { Servable } from '../runtime/servable'
import { tensorBytes, tf } from '../runtime/tf'

/** Seconds a 429 asks the client to wait: a slot frees as soon as one request in flight finishes. */
export const RETRY_AFTER_SECONDS = 1
/**
 * Shadow runs waiting or running in an isolate. They run one at a time, so shadowing never takes
 * more than one inference's worth of the CPU at once; a backlog past this skips (and counts) new
 * ones rather than grow without bound when the shadow cannot keep up.
 */
export const MAX_SHADOWS_PENDING = 32
/**
 * Share of the memory budget the copies waiting for shadow runs may hold together: the rest stays
 * for served runs, so a backlog of copies never leaves a served request waiting for room.
 */
export const SHADOW_BUDGET_SHARE = 0.25

/**
 * What traffic control needs of the isolate (isolate.ts is the one): its repository, a lease on a
 * routed version, its metrics. A narrow interface, so this module does not import the isolate.
 */
export interface TrafficHost {
  readonly metrics: Pick<Metrics, 'recordRouted' | 'recordRejection' | 'recordShadow' | 'recordRequest'>
  /** The memory budget's ledger, which holds a shadow run's copy of its request's tensors. */
  readonly cache: { readonly admission: { readonly ledger: MemoryLedger } }
  /** `wanted`: the model the request asks for, which the isolate may start loading while it reads the repository. */
  repository(env: Env, waitUntil?: WaitUntil, wanted?: { name: string; selector: Selector }): Promise<Repository>
  leaseVersion(env: Env, target: ResolvedVersion): Promise<ModelLease>
}

/** What a request brings besides the model and selector: its headers (for the sticky header), background work, its id for logs. */
export interface RouteRequest {
  header?: (name: string) => string | undefined
  waitUntil?: WaitUntil
  requestId?: string
  /** The request's analytics point (src/analytics/analytics.ts), when the dataset is bound: routing notes its version, rule, wait and shadow. */
  record?: RequestRecord
  /**
   * Aborts when the client is gone (an HTTP request's `signal`). Its slots and queue places are then
   * given up at once, in the abort event itself: once its client leaves, the runtime may never run
   * the request's code again, so a slot that waits for that code to free it would be lost for good.
   */
  signal?: AbortSignal
  /**
   * An HTTP body still to be read: its Content-Length and Content-Type, from which it reserves
   * REQUEST_MEMORY_BYTES (request-memory.ts). Absent for a caller whose body is already in memory (the
   * service binding's).
   */
  body?: { length: string | undefined; type: string | undefined }
}

/** How a request got its version: the path named it, the model's default, a random weighted draw, or the sticky header. */
export type Rule = 'named' | 'default' | 'weighted' | 'sticky'

/** 32-bit FNV-1a of the UTF-8 bytes of `text`: a stable, well-spread hash, the same in every isolate and deploy. */
export function fnv1a(text: string): number {
  let hash = 0x811c9dc5
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= byte
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash >>> 0
}

/**
 * The key whose share of the weights `u` (in [0, 1)) falls in, keys taken in the order given. Moving
 * weight from one key to the next moves only the clients at the boundary: a sticky client moves
 * at most once in a rollout that only grows the new version's weight.
 */
export function pickWeighted(weights: ReadonlyArray<readonly [string, number]>, u: number): string {
  const total = weights.reduce((sum, [, w]) => sum + w, 0)
  const point = u * total
  let cumulative = 0
  let last: string | undefined
  for (const [key, weight] of weights) {
    if (weight <= 0) continue
    cumulative += weight
    last = key
    if (point < cumulative) return key
  }
  return last! // u * total rounded up to the total itself
}

/** Resolves a traffic or shadow key (a version number or a label); one the repository does not serve is a config fault (503). */
function resolveKey(repository: Repository, name: string, key: string | number, where: string): ResolvedVersion {
  const selector: Selector = typeof key === 'number' || /^[0-9]+$/.test(key) ? { version: Number(key) } : { label: key }
  try {
    return repository.resolve(name, selector)
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error
    throw configFault(name, `${where} names '${key}', which is not served: ${error.message}`)
  }
}

/** The version a request goes to, and by which rule. Unknown models, versions and labels are 404 as before. */
export function route(
  repository: Repository,
  name: string,
  selector: Selector,
  header: RouteRequest['header'],
  random: () => number,
): { target: ResolvedVersion; rule: Rule } {
  const traffic = repository.config(name).traffic
  if (selector.version !== undefined || selector.label !== undefined) {
    const target = repository.resolve(name, selector)
    if (traffic && traffic.explicit !== 'any') checkListed(repository, name, traffic.versions, target, selector)
    return { target, rule: 'named' }
  }
  if (!traffic) return { target: repository.resolve(name), rule: 'default' }
  const value = traffic.sticky_header === undefined ? undefined : header?.(traffic.sticky_header)
  const u = value === undefined ? random() : fnv1a(value) / 2 ** 32
  const key = pickWeighted(Object.entries(traffic.versions), u)
  return {
    target: resolveKey(repository, name, key, 'traffic.versions'),
    rule: value === undefined ? 'weighted' : 'sticky',
  }
}

/**
 * Waits until `place` holds a slot, sweeping the gate meanwhile: this request's code is alive, so it
 * takes back slots handed to waiters that never took them up (src/traffic/gate.ts CLAIM_TIMEOUT_MS).
 */
async function waitInLine(gate: Gate, place: Place): Promise<void> {
  if (place.state === 'holding') return
  const sweeping = setInterval(() => gate.sweep(), CLAIM_TIMEOUT_MS / 2)
  try {
    await place.ready
  } finally {
    clearInterval(sweeping)
  }
}

/**
 * Refuses a named version the split leaves out, under `traffic.explicit: "listed"` (the default once a
 * split exists): 403, not 404 — the version exists (its status and metadata answer), but this model's
 * config.json does not serve it by name. The message says which versions are served.
 */
function checkListed(
  repository: Repository,
  name: string,
  versions: Record<string, number>,
  target: ResolvedVersion,
  selector: Selector,
): void {
  const listed = new Set<number>()
  for (const key of Object.keys(versions)) {
    try {
      listed.add(repository.resolve(name, /^[0-9]+$/.test(key) ? { version: Number(key) } : { label: key }).version)
    } catch {
      // A key the repository does not serve routes nobody; the split itself answers 503 for it.
    }
  }
  if (listed.has(target.version)) return
  const named =
    selector.label !== undefined ? `label '${selector.label}' (version ${target.version})` : `version ${target.version}`
  const served = [...listed].sort((a, b) => a - b).join(', ')
  throw new ApiError(
    403,
    `model '${name}' does not serve ${named} by name: its traffic split lists version${listed.size === 1 ? '' : 's'} ${served} (config.json traffic.versions; traffic.explicit "any" serves every version by name)`,
  )
}

/** What a shadow run found: the largest absolute difference over every output, and whether the top-1 class agreed in every row. */
export interface Comparison {
  maxAbsDiff: number | null
  rows: number
  top1Agreement: number | null
  disagreed: boolean
  mismatch?: string
}

/** The row-wise argmax over the last dimension of a `[…, classes]` output. */
function argmaxRows(values: ArrayLike<number>, classes: number): number[] {
  const rows: number[] = []
  for (let start = 0; start < values.length; start += classes) {
    let best = start
    for (let i = start + 1; i < start + classes; i++) if (values[i]! > values[best]!) best = i
    rows.push(best - start)
  }
  return rows
}

/** Compares the served version's outputs with the shadow's, output by output (the served version's names). */
export async function compareOutputs(
  served: Record<string, tf.Tensor>,
  shadow: Record<string, tf.Tensor>,
): Promise<Comparison> {
  let maxAbsDiff = 0
  let rows = 0
  let agreeing = 0
  for (const [name, tensor] of Object.entries(served)) {
    const other = shadow[name]
    if (!other)
      return {
        maxAbsDiff: null,
        rows: 0,
        top1Agreement: null,
        disagreed: true,
        mismatch: `the shadow has no output '${name}'`,
      }
    if (other.shape.join() !== tensor.shape.join()) {
      return {
        maxAbsDiff: null,
        rows: 0,
        top1Agreement: null,
        disagreed: true,
        mismatch: `output '${name}' is [${tensor.shape}] served, [${other.shape}] in the shadow`,
      }
    }
    const [a, b] = await Promise.all([tensor.data(), other.data()])
    for (let i = 0; i < a.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(Number(a[i]) - Number(b[i])))
    const classes = tensor.shape.at(-1) ?? 1
    if (tensor.rank >= 2 && classes > 1) {
      const [top, shadowTop] = [
        argmaxRows(a as ArrayLike<number>, classes),
        argmaxRows(b as ArrayLike<number>, classes),
      ]
      rows += top.length
      agreeing += top.filter((c, i) => c === shadowTop[i]).length
    }
  }
  const top1Agreement = rows === 0 ? null : agreeing / rows
  return { maxAbsDiff, rows, top1Agreement, disagreed: rows > agreeing }
}

/**
 * Tensors a shadowed request ran on and got, kept (cloned) for the shadow run after its response,
 * their bytes held in the cache's memory budget (`ticket`) until the shadow run is done.
 */
interface Captured {
  inputs: Record<string, tf.Tensor>
  outputs: Record<string, tf.Tensor>
  ticket: object
  bytes: number
}

const cloneAll = (tensors: Record<string, tf.Tensor>) =>
  Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, tf.clone(t)]))

/** One routed request: the version it goes to, and the slots it holds until `release`. */
export class TrafficSlot {
  private captured: Captured | undefined
  private released = false

  constructor(
    private readonly control: TrafficControl,
    private readonly env: Env,
    readonly target: ResolvedVersion,
    readonly rule: Rule,
    private readonly request: RouteRequest,
    private readonly leave: () => void,
    /** The shadow version to run after the response, when this request was drawn for it. */
    private readonly shadow: ResolvedVersion | string | number | undefined,
  ) {}

  /** Leases the version this request was routed to (loading it on a miss) for the length of `use`. */
  async use<T>(use: (held: ModelLease) => Promise<T>): Promise<T> {
    const held = await this.control.state.leaseVersion(this.env, this.target)
    if (this.shadow !== undefined) held.lease.wrapModel((model) => this.capturing(model))
    return holding(held, use)
  }

  /** The model as the route sees it, keeping a copy of the first run's inputs and outputs for the shadow, when there is room. */
  private capturing(model: Servable): Servable {
    let tried = false
    const run = async (inputs: Record<string, tf.Tensor>) => {
      const outputs = await model.run(inputs)
      if (!tried && !this.released) {
        tried = true
        this.captured = this.control.capture(this.target, this.shadow!, inputs, outputs, this.request)
      }
      return outputs
    }
    return wrapRun(model, run)
  }

  /** The response is ready: frees the slots (the next waiter goes), then starts the shadow run, if any. Idempotent. */
  release(): void {
    if (this.released) return
    this.released = true
    this.leave()
    const captured = this.captured
    this.captured = undefined
    if (captured && this.shadow !== undefined)
      this.control.startShadow(this.env, this.target, this.shadow, captured, this.request)
  }
}

/** The isolate's traffic control: a gate per model and one for the isolate, the random source, the shadow runs in flight. */
export class TrafficControl {
  private readonly gates = new Map<string, Gate>()
  readonly isolateGate = new Gate()
  /** The JavaScript memory the requests in flight may hold together (REQUEST_MEMORY_BYTES). */
  readonly memory = new RequestMemory(DEFAULTS.REQUEST_MEMORY_BYTES)
  // Shadow runs go one after another: the tail of that chain, and how many are on it.
  private shadowTail: Promise<void> = Promise.resolve()
  private shadowsPending = 0
  // Bytes the copies waiting for their shadow runs hold in the budget.
  private capturedBytes = 0
  /** Draws for the weighted split and the shadow fraction; tests may replace it. */
  random: () => number = Math.random

  constructor(readonly state: TrafficHost) {}

  /** Requests holding a slot and waiting for one, per model gate and for the isolate's: the `/metrics` gauge. */
  occupancy(): Array<{ scope: 'model' | 'isolate'; model: string; inFlight: number; queued: number }> {
    return [
      ...[...this.gates].map(([model, gate]) => ({
        scope: 'model' as const,
        model,
        inFlight: gate.inFlight,
        queued: gate.queued,
      })),
      { scope: 'isolate' as const, model: '', inFlight: this.isolateGate.inFlight, queued: this.isolateGate.queued },
    ]
  }

  /** The gate of one model, with the limits of its current config.json. */
  gate(name: string, config: ModelConfig = {}): Gate {
    let gate = this.gates.get(name)
    if (!gate) this.gates.set(name, (gate = new Gate()))
    gate.configure(config.max_concurrent ?? Infinity, config.max_queue ?? Infinity)
    return gate
  }

  /**
   * Serves one inference under traffic control: the function every entry point that runs a model
   * calls (TF Serving's `:predict` and `:classify`, v2's `infer`, the service-binding RPC). It routes
   * the request (`selector` empty: the split or the default version), takes its slots (waiting in
   * line, or 429), then `read`s the body, leases the routed version and runs `use`; the slots free
   * when `use` resolves, which must be when the response is ready. A shadowed request's run is
   * repeated on the shadow version after that, in `request.waitUntil`.
   */
  async serve<B, T>(
    env: Env,
    name: string,
    selector: Selector,
    request: RouteRequest,
    read: () => Promise<B>,
    use: (held: ModelLease, body: B) => Promise<T>,
  ): Promise<T> {
    const slot = await this.takeSlot(env, name, selector, request)
    let releaseMemory: (() => void) | undefined
    try {
      const reserved = this.reserveMemory(env, request)
      releaseMemory = typeof reserved === 'function' ? reserved : await reserved
      const body = await read()
      return await slot.use((held) => use(held, body))
    } finally {
      releaseMemory?.()
      slot.release()
    }
  }

  /**
   * Reserves the JavaScript memory the request's body may cost (request-memory.ts) before it is read,
   * waiting while requests in flight hold REQUEST_MEMORY_BYTES. A caller with no body to read (the
   * service binding hands over one already in memory) reserves nothing.
   */
  private reserveMemory(env: Env, request: RouteRequest): (() => void) | Promise<() => void> {
    const config = readConfig(env)
    this.memory.configure(config.REQUEST_MEMORY_BYTES)
    if (!request.body) return () => {}
    const { length, type } = request.body
    const bytes = requestMemoryBytes({
      declared: length === undefined ? undefined : Number(length),
      contentType: type,
      maxBodyBytes: config.MAX_BODY_BYTES,
    })
    // Room at once (a small request, nobody waiting): no promise, no timer.
    return this.memory.tryReserve(bytes, request.signal) ?? this.waitForMemory(bytes, request.signal)
  }

  private async waitForMemory(bytes: number, signal: AbortSignal | undefined): Promise<() => void> {
    // A timer while it waits: workerd cancels a request that waits only on other requests' code as
    // hung ("would never generate a response"), as it would one waiting in a gate's line (waitInLine).
    const alive = setInterval(() => {}, CLAIM_TIMEOUT_MS / 2)
    try {
      return await this.memory.reserve(bytes, signal)
    } catch (error) {
      if (signal?.aborted)
        throw new ClientGoneError('the client closed the connection while its request waited for memory')
      throw error
    } finally {
      clearInterval(alive)
    }
  }

  /**
   * Routes a request and takes its slots (for `serve`, which releases them); a client that leaves
   * (`request.signal`) gives up its places itself, waiting or holding.
   */
  private async takeSlot(env: Env, name: string, selector: Selector, request: RouteRequest = {}): Promise<TrafficSlot> {
    request.record?.note({ model: name })
    const repository = await this.state.repository(env, request.waitUntil, { name, selector })
    const { target, rule } = route(repository, name, selector, request.header, this.random)
    const limits = isolateLimits(env)
    this.isolateGate.configure(limits.maxConcurrent, limits.maxQueue)
    const gate = this.gate(name, target.config)
    const queued = Date.now()
    const { signal } = request
    const places: Place[] = []
    const leave = (reason?: unknown) => {
      signal?.removeEventListener('abort', gone)
      for (const place of places) place.leave(reason)
    }
    const gone = () =>
      leave(new ClientGoneError('the client closed the connection while its request waited for a slot'))
    if (signal?.aborted) throw new ClientGoneError()
    signal?.addEventListener('abort', gone)
    try {
      for (const [at, reason] of [
        [gate, 'model'],
        [this.isolateGate, 'isolate'],
      ] as const) {
        const place = this.enter(at, name, reason, request)
        place.onReclaimed = () => {
          leave()
          // Its code will not run again to answer: counted and logged here, as its response would be.
          this.state.metrics.recordRequest(name, undefined, 499)
          log('info', 'request.aborted', {
            requestId: request.requestId,
            status: 499,
            model: name,
            reason: 'its turn came after its client had left',
          })
        }
        places.push(place)
        await waitInLine(at, place)
        // Handed a slot, but resumed too late to take it up: only an isolate blocked for CLAIM_TIMEOUT_MS does that.
        if (!place.claim())
          throw new ApiError(
            503,
            `this server was too busy to serve model '${name}' in time; retry after ${RETRY_AFTER_SECONDS} s`,
            { 'Retry-After': String(RETRY_AFTER_SECONDS) },
          )
      }
    } catch (error) {
      leave()
      throw error
    }
    this.state.metrics.recordRouted(name, target.version, rule)
    const shadow = this.drawShadow(repository, target, request)
    request.record?.routed(target, rule, Date.now() - queued, shadow)
    return new TrafficSlot(this, env, target, rule, request, leave, shadow)
  }

  private enter(gate: Gate, name: string, reason: 'model' | 'isolate', request: RouteRequest): Place {
    const entered = gate.enter()
    if (entered !== false) return entered
    this.state.metrics.recordRejection(name, reason)
    request.record?.note({ error_code: `capacity_${reason}` })
    const { limit, queue } = gate.limits
    const where = reason === 'model' ? `model '${name}' is` : 'this server is'
    const keys = reason === 'model' ? 'max_concurrent and max_queue in its config.json' : 'MAX_CONCURRENT and MAX_QUEUE'
    throw new ApiError(
      429,
      `${where} at capacity: ${limit} requests in flight and ${queue} waiting (${keys}); retry after ${RETRY_AFTER_SECONDS} s`,
      { 'Retry-After': String(RETRY_AFTER_SECONDS) },
    )
  }

  /** Whether this request also runs on the shadow version: drawn by `shadow.fraction`; never a run against the version that answers. */
  private drawShadow(
    repository: Repository,
    target: ResolvedVersion,
    request: RouteRequest,
  ): ResolvedVersion | string | number | undefined {
    const shadow = target.config.shadow
    if (!shadow || !request.waitUntil || !(this.random() < shadow.fraction)) return undefined
    try {
      const resolved = resolveKey(repository, target.name, shadow.version, 'shadow.version')
      return resolved.version === target.version ? undefined : resolved
    } catch {
      // Resolved again after the response, where a failure is counted and logged; the client loses nothing.
      return shadow.version
    }
  }

  /**
   * Copies a shadowed request's inputs and outputs for its shadow run, if the run can happen: fewer
   * than MAX_SHADOWS_PENDING waiting, and the copies' bytes free in the cache's memory budget, where
   * they are held until the run is done — as a served run's activations are, so no served request is
   * refused for them. Otherwise nothing is copied, and the skip is counted and logged.
   */
  capture(
    served: ResolvedVersion,
    shadow: ResolvedVersion | string | number,
    inputs: Record<string, tf.Tensor>,
    outputs: Record<string, tf.Tensor>,
    request: RouteRequest,
  ): Captured | undefined {
    const label = typeof shadow === 'object' ? shadow.version : shadow
    const bytes = tensorBytes(Object.values(inputs)) + tensorBytes(Object.values(outputs))
    const ledger = this.state.cache.admission.ledger
    const room = ledger.fits(bytes) && this.capturedBytes + bytes <= ledger.limit * SHADOW_BUDGET_SHARE
    // Inputs the run moved off the heap for want of room (cache/admission.ts, InputCopies) are gone: no copy.
    const offloaded = Object.values(inputs).some((t) => t.isDisposed)
    const reason = this.shadowsPending >= MAX_SHADOWS_PENDING ? 'backlog' : !room || offloaded ? 'memory' : undefined
    if (reason) {
      this.state.metrics.recordShadow(served.name, served.version, label, 'skipped', false, reason)
      log('info', 'shadow.skipped', {
        requestId: request.requestId,
        model: served.name,
        version: served.version,
        shadowVersion: label,
        reason,
        bytes,
        freeBytes: ledger.limit - ledger.used(),
      })
      return undefined
    }
    const ticket = { shadow: `${served.name}/${served.version}` }
    ledger.hold(ticket, 'run', bytes)
    this.capturedBytes += bytes
    return { inputs: cloneAll(inputs), outputs: cloneAll(outputs), ticket, bytes }
  }

  /** Gives a copy's bytes back to the budget (once); its tensors stay until `dropCaptured`. */
  private unhold(captured: Captured): void {
    if (captured.bytes === 0) return
    this.capturedBytes -= captured.bytes
    captured.bytes = 0
    this.state.cache.admission.ledger.release(captured.ticket)
  }

  /** Frees a captured copy: its tensors and its bytes in the budget. */
  dropCaptured(captured: Captured): void {
    tf.dispose(captured.inputs)
    tf.dispose(captured.outputs)
    this.unhold(captured)
  }

  /** Runs the captured inputs on the shadow version after the response, compares, records. Never throws. */
  startShadow(
    env: Env,
    served: ResolvedVersion,
    shadow: ResolvedVersion | string | number,
    captured: Captured,
    request: RouteRequest,
  ): void {
    const { name, version } = served
    const label = typeof shadow === 'object' ? shadow.version : shadow
    if (this.shadowsPending >= MAX_SHADOWS_PENDING) {
      this.dropCaptured(captured)
      this.state.metrics.recordShadow(name, version, label, 'skipped', false, 'backlog')
      request.record?.shadow('skipped', label)
      return
    }
    this.shadowsPending++
    const run = async () => {
      // A turn of the event loop first: the client's response is handed over before the shadow takes the CPU.
      await new Promise((resolve) => setTimeout(resolve, 0))
      const started = Date.now()
      try {
        const target =
          typeof shadow === 'object'
            ? shadow
            : resolveKey(await this.state.repository(env), name, shadow, 'shadow.version')
        const held = await this.state.leaseVersion(env, target)
        let outputs: Record<string, tf.Tensor> = {}
        try {
          // The run is admitted on its own: the copy it reads must not keep it waiting for room.
          this.unhold(captured)
          outputs = await held.lease.model.run(captured.inputs)
          const result = await compareOutputs(captured.outputs, outputs)
          this.state.metrics.recordShadow(name, version, target.version, 'compared', result.disagreed)
          request.record?.shadow('compared', target.version, result)
          log('info', 'shadow.compared', {
            requestId: request.requestId,
            model: name,
            version,
            shadowVersion: target.version,
            maxAbsDiff: result.maxAbsDiff,
            top1Agreement: result.top1Agreement,
            rows: result.rows,
            disagreed: result.disagreed,
            ...(result.mismatch ? { mismatch: result.mismatch } : {}),
            ms: Date.now() - started,
          })
        } finally {
          held.lease.release()
          tf.dispose(outputs)
        }
      } catch (error) {
        this.state.metrics.recordShadow(name, version, label, 'failed')
        request.record?.shadow('failed', label)
        log('warn', 'shadow.failed', {
          requestId: request.requestId,
          model: name,
          version,
          shadowVersion: label,
          error: (error as Error).message,
        })
      } finally {
        this.dropCaptured(captured)
        this.shadowsPending--
      }
    }
    // `run` never rejects, so one failed shadow run cannot stop the ones behind it.
    const done = this.shadowTail.then(run)
    this.shadowTail = done
    request.waitUntil!(done)
  }
}
