/**
 * The tf.js backend inside workerd: the WebAssembly (SIMD) backend starts from the statically
 * imported module, computes what the cpu backend computes, and when it cannot start the Worker
 * falls back to cpu and says why.
 */
import { env } from 'cloudflare:workers'
// A real module that cannot serve as the backend: the threaded build imports shared memory the
// plain glue does not provide, so instantiating it fails with a LinkError.
import threadedModule from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { storeHandler } from '../src/repository/model-files'
import { buildServable } from '../src/runtime/servable'
import type { Servable } from '../src/runtime/servable'
import { assetsStore } from '../src/repository/stores'
import { isolate } from '../src/isolate'
import { tf } from '../src/runtime/tf'
import { bundledWasmModule, instantiateWasmBackend } from '../src/runtime/wasm'
import digitsHoldout from './fixtures/digits-holdout.json'
import irisHoldout from './fixtures/iris-holdout.json'
import { call } from './support/helpers'

// The isolate's one backend, driven directly.
const backend = () => isolate().backend
const ensureBackend = (preferred?: 'wasm' | 'cpu') => backend().ensure(preferred)
const configureBackend = (name: string) => backend().configure(name)
const resetBackendChoice = () => backend().forget()
const setWasmModule = (module?: WebAssembly.Module) => backend().wasm.useModule(module)

/** Largest |a − b| / max(|a|, |b|) over all elements; elements both below `floor` in size count as equal. */
function maxRelativeError(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-30): number {
  expect(a.length).toBe(b.length)
  let worst = 0
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!
    const y = b[i]!
    const scale = Math.max(Math.abs(x), Math.abs(y))
    if (scale < floor) continue
    worst = Math.max(worst, Math.abs(x - y) / scale)
  }
  return worst
}

/** max |a − b| / max |b|: the error relative to the output's scale, for sums whose terms cancel. */
function scaledError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length)
  let diff = 0
  let scale = 0
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!))
    scale = Math.max(scale, Math.abs(b[i]!))
  }
  return diff / scale
}

/** Runs `f` on `backend`, then returns to the one that was active. */
async function on<T>(backend: 'wasm' | 'cpu', f: () => Promise<T>): Promise<T> {
  const before = tf.getBackend()
  expect(await tf.setBackend(backend)).toBe(true)
  try {
    return await f()
  } finally {
    await tf.setBackend(before)
  }
}

/** Catches rejections nobody handles while a test runs: the package's own wasm path leaves one and hangs. */
const unhandled: unknown[] = []
const onUnhandled = (event: PromiseRejectionEvent) => unhandled.push(event.reason)

beforeAll(() => globalThis.addEventListener('unhandledrejection', onUnhandled))
afterEach(() => {
  vi.restoreAllMocks()
  expect(unhandled).toEqual([])
})
afterAll(async () => {
  globalThis.removeEventListener('unhandledrejection', onUnhandled)
  setWasmModule()
  resetBackendChoice()
  await ensureBackend()
})

describe('wasm backend in workerd', () => {
  it('gets the .wasm import as a compiled module, as wrangler bundles it', async () => {
    // wrangler's default module rule (CompiledWasm for **/*.wasm), which the vitest pool applies too.
    expect(bundledWasmModule).toBeInstanceOf(WebAssembly.Module)
    expect(threadedModule).toBeInstanceOf(WebAssembly.Module)
    // Compiling bytes at run time is what Workers forbid, and why the module must come precompiled.
    const { compile } = WebAssembly as unknown as { compile(bytes: BufferSource): Promise<unknown> }
    await expect(compile(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]))).rejects.toThrow(/disallowed|code generation/i)
  })

  it('initialises from the statically imported SIMD module and is the default', async () => {
    resetBackendChoice()
    await expect(ensureBackend()).resolves.toBe('wasm')
    expect(tf.getBackend()).toBe('wasm')
    expect(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')).toBe(true)
  })

  it('the readiness route reports it', async () => {
    const response = await call('/v2/health/ready')
    expect(response.status).toBe(200)
    expect(await response.json()).toMatchObject({ ready: true, backend: 'wasm' })
  })

  it('computes matMul correctly', async () => {
    await ensureBackend()
    const before = tf.memory().numTensors
    const a = tf.tensor2d([
      [1, 2, 3],
      [4, 5, 6],
    ])
    const b = tf.tensor2d([
      [7, 8],
      [9, 10],
      [11, 12],
    ])
    const c = tf.matMul(a, b)
    expect(tf.getBackend()).toBe('wasm')
    expect(Array.from(await c.data())).toEqual([58, 64, 139, 154])
    // A bigger one against the cpu backend.
    const x = tf.randomUniform([64, 96], -1, 1, 'float32', 7)
    const y = tf.randomUniform([96, 48], -1, 1, 'float32', 8)
    const product = async () => {
      const t = tf.matMul(x, y)
      const values = await t.data()
      t.dispose()
      return values
    }
    const onWasm = await product()
    const onCpu = await on('cpu', product)
    expect(scaledError(onWasm, onCpu)).toBeLessThan(1e-5)
    tf.dispose([a, b, c, x, y])
    expect(tf.memory().numTensors).toBe(before)
  })

  it('computes conv2d and depthwiseConv2d as the cpu backend does', async () => {
    await ensureBackend()
    const x = tf.randomUniform([2, 17, 17, 3], 0, 1, 'float32', 1) as tf.Tensor4D
    const w = tf.randomUniform([3, 3, 3, 8], -1, 1, 'float32', 2) as tf.Tensor4D
    const dw = tf.randomUniform([3, 3, 3, 2], -1, 1, 'float32', 3) as tf.Tensor4D
    const run = () =>
      tf.tidy(() => [
        tf.conv2d(x, w, 2, 'same'),
        tf.depthwiseConv2d(x, dw, 1, 'valid'),
        tf.relu6(tf.conv2d(x, w, 1, 'valid')),
      ])
    const wasm = run()
    const cpu = await on('cpu', async () => run())
    for (const [i, t] of wasm.entries()) {
      expect(t.shape).toEqual(cpu[i]!.shape)
      // Sums of products of terms in [−1, 1], which cancel: compare relative to the output's scale.
      expect(scaledError(await t.data(), await cpu[i]!.data())).toBeLessThan(1e-5)
    }
    tf.dispose([x, w, dw, ...wasm, ...cpu])
  })

  it('rejects, without hanging, a module it cannot instantiate', async () => {
    await expect(instantiateWasmBackend(threadedModule)).rejects.toThrow(/import|LinkError|memory/i)
  })
})

/** Inputs for each bundled model: its held-out examples, plus random rows. */
const bundled: { name: string; inputs: () => tf.Tensor }[] = [
  {
    name: 'iris',
    inputs: () =>
      tf.tidy(() =>
        tf.concat([tf.tensor2d(irisHoldout.features as number[][]), tf.randomUniform([16, 4], 0, 8, 'float32', 11)]),
      ),
  },
  {
    name: 'digits',
    inputs: () =>
      tf.tidy(() =>
        tf.concat([
          tf.div(tf.tensor4d((digitsHoldout.images as number[][]).slice(0, 64).flat(), [64, 28, 28, 1]), 255),
          tf.randomUniform([8, 28, 28, 1], 0, 1, 'float32', 12),
        ]),
      ),
  },
]

describe('wasm and cpu agree on every bundled model', () => {
  beforeAll(async () => {
    resetBackendChoice()
    expect(await ensureBackend()).toBe('wasm')
  })

  for (const { name, inputs } of bundled) {
    it(`${name}: outputs within 1e-4 relative`, async () => {
      const before = tf.memory().numTensors
      const artifacts = await storeHandler(assetsStore(env.ASSETS), `${name}/1`).load()
      const outputsOn = (backend: 'wasm' | 'cpu') =>
        on(backend, async () => {
          const { servable } = await buildServable(artifacts)
          expect(tf.getBackend()).toBe(backend)
          const x = inputs()
          try {
            return await predictAll(servable, x)
          } finally {
            x.dispose()
            servable.dispose()
          }
        })
      const wasm = await outputsOn('wasm')
      const cpu = await outputsOn('cpu')
      expect(Object.keys(wasm)).toEqual(Object.keys(cpu))
      for (const key of Object.keys(wasm)) {
        // Softmax outputs: anything below 1e-12 is zero for every purpose.
        const error = maxRelativeError(wasm[key]!, cpu[key]!, 1e-12)
        expect(error, `${name} output ${key}`).toBeLessThan(1e-4)
      }
      expect(tf.getBackend()).toBe('wasm')
      expect(tf.memory().numTensors).toBe(before)
    })
  }
})

async function predictAll(servable: Servable, x: tf.Tensor): Promise<Record<string, Float32Array>> {
  const input = servable.signature.inputs[0]!
  const outputs = await servable.run({ [input.name]: x })
  try {
    const result: Record<string, Float32Array> = {}
    for (const [key, t] of Object.entries(outputs)) result[key] = (await t.data()) as Float32Array
    return result
  } finally {
    tf.dispose(outputs)
  }
}

describe('configuration and fallback', () => {
  afterEach(async () => {
    setWasmModule()
    resetBackendChoice()
  })

  it('TF_BACKEND=cpu selects the cpu backend; an unknown name is refused', async () => {
    configureBackend('cpu')
    await expect(ensureBackend()).resolves.toBe('cpu')
    expect(tf.getBackend()).toBe('cpu')
    configureBackend('')
    await expect(ensureBackend()).resolves.toBe('wasm')
    expect(() => configureBackend('webgl')).toThrow(/TF_BACKEND must be one of wasm, cpu/)
  })

  /** Sends tf.js to the cpu backend and forgets the wasm one, so the next ensureBackend starts it anew. */
  async function forgetWasm(module?: WebAssembly.Module) {
    expect(await tf.setBackend('cpu')).toBe(true)
    setWasmModule(module)
    resetBackendChoice()
  }

  it('falls back to cpu, logging once why, when the wasm module cannot be instantiated', async () => {
    await forgetWasm(threadedModule)
    const warn = vi.spyOn(console, 'warn')
    await expect(ensureBackend()).resolves.toBe('cpu')
    await expect(ensureBackend()).resolves.toBe('cpu') // decided once per isolate
    expect(tf.getBackend()).toBe('cpu')
    const lines = warn.mock.calls.map((args) => String(args[0]))
    expect(lines).toHaveLength(1)
    const line = JSON.parse(lines[0]!) as Record<string, unknown>
    expect(line).toMatchObject({ level: 'warn', event: 'backend.fallback', wanted: 'wasm' })
    expect(line.reason).toMatch(/import|LinkError|memory/i)

    // The Worker still serves, on cpu.
    const artifacts = await storeHandler(assetsStore(env.ASSETS), 'iris/1').load()
    const { servable } = await buildServable(artifacts)
    const x = tf.tensor2d([[5.1, 3.5, 1.4, 0.2]])
    const out = await servable.run({ features: x })
    expect(Array.from(await Object.values(out)[0]!.data())[0]).toBeGreaterThan(0.9)
    tf.dispose([x, ...Object.values(out)])
    servable.dispose()
  })

  it('falls back to cpu when the runtime reports no WebAssembly SIMD', async () => {
    await forgetWasm()
    const detected = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')
    tf.env().set('WASM_HAS_SIMD_SUPPORT', false)
    try {
      const warn = vi.spyOn(console, 'warn')
      await expect(ensureBackend('wasm')).resolves.toBe('cpu')
      expect(warn).toHaveBeenCalledTimes(1)
      expect(JSON.parse(String(warn.mock.calls[0]![0]))).toMatchObject({
        event: 'backend.fallback',
        wanted: 'wasm',
        reason: expect.stringMatching(/SIMD/),
      })
    } finally {
      tf.env().set('WASM_HAS_SIMD_SUPPORT', detected)
    }
  })

  it('starts wasm again once the module is good', async () => {
    await forgetWasm(threadedModule)
    vi.spyOn(console, 'warn').mockImplementation(() => {})
    await expect(ensureBackend()).resolves.toBe('cpu')
    await forgetWasm()
    await expect(ensureBackend()).resolves.toBe('wasm')
    const y = tf.matMul(
      tf.eye(2),
      tf.tensor2d([
        [1, 2],
        [3, 4],
      ]),
    )
    expect(Array.from(await y.data())).toEqual([1, 2, 3, 4])
    tf.dispose(y)
  })
})
